"""Dashboard settings (prefix DASHBOARD_), with the service's and the job's own as fallbacks.

Embedded defaults read what `make demo` and an embedded `trajectory serve` leave under
`artifacts/`: the SQLite prediction log `serving.db`, the MLflow store and the evaluation
folders `monitoring/<time>/`. In compose every value comes from the environment.

Access: admin keys of SERVING_API_KEYS (the service's SHA-256 digests), and viewer keys that
only the dashboard knows (DASHBOARD_VIEWER_KEYS, digests too): the service has never heard of
a viewer key, so it cannot predict or call an admin route with one.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trajectory.exceptions import ConfigError

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
ADMIN, VIEWER = "admin", "viewer"


class DashboardSettings(BaseSettings):
    """Where the data is, who may look, and the thresholds the pages use."""

    model_config = SettingsConfigDict(
        env_prefix="DASHBOARD_", env_file=".env", extra="ignore", populate_by_name=True
    )

    work_dir: Path = Field(
        Path("artifacts"),
        validation_alias=AliasChoices("DASHBOARD_WORK_DIR", "TRAJ_WORK_DIR", "SERVING_WORK_DIR"),
        description="evaluation folders under monitoring/; the embedded log and MLflow store",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DASHBOARD_DATABASE_URL", "TRAJ_MONITOR_DATABASE_URL",
                                      "SERVING_DATABASE_URL"),
        description="prediction log; default the SQLite serving.db under work_dir",
    )
    variants: dict[str, str] = Field(
        default_factory=lambda: {"champion": "models:/trajectory-forecaster@champion"},
        validation_alias=AliasChoices("DASHBOARD_VARIANTS", "SERVING_VARIANTS"),
    )
    ab_weights: dict[str, float] = Field(
        default_factory=dict, validation_alias=AliasChoices("DASHBOARD_AB_WEIGHTS",
                                                            "SERVING_AB_WEIGHTS"),
    )
    api_keys: dict[str, str] = Field(
        default_factory=dict, validation_alias=AliasChoices("DASHBOARD_API_KEYS",
                                                            "SERVING_API_KEYS"),
        description="sha256 hex -> role; only admin keys open the dashboard",
    )
    viewer_keys: list[str] = Field(default_factory=list, description="sha256 hex digests")
    auth_required: bool = True
    secret_key: SecretStr | None = Field(
        None, description="signs the session cookie; default a random one per start"
    )
    session_hours: float = Field(8.0, gt=0)

    replicas: dict[str, str] = Field(
        default_factory=lambda: {"serving": "http://127.0.0.1:8000"},
        description="name -> base URL of each serving replica (/metrics, /ready)",
    )
    prometheus_url: str | None = None
    mlflow_ui_url: str | None = Field(
        None, validation_alias=AliasChoices("DASHBOARD_MLFLOW_UI_URL", "TRAJ_MLFLOW_UI_URL"))
    airflow_ui_url: str | None = Field(
        None, validation_alias=AliasChoices("DASHBOARD_AIRFLOW_UI_URL", "AIRFLOW_BASE_URL"))

    dt: float = Field(0.4, gt=0, validation_alias=AliasChoices("DASHBOARD_DT", "TRAJ_DT"),
                      description="seconds between logged points (the model's step)")
    neighbour_radius: float = Field(
        5.0, gt=0, validation_alias=AliasChoices("DASHBOARD_NEIGHBOUR_RADIUS",
                                                 "TRAJ_NEIGHBOUR_RADIUS"))
    lookback_hours: float = Field(
        168.0, gt=0, description="the pages read the log this far back from its newest row")
    max_rows: int = Field(50_000, ge=100, description="log rows read at most per page view")
    flag_share: float = Field(0.2, gt=0, description="a group this much above overall is flagged")
    min_windows: int = Field(10, ge=1, description="windows a group needs to be judged")
    refresh_s: float = Field(30.0, gt=0, description="how long a read of the log is reused")

    @model_validator(mode="after")
    def _keys(self) -> DashboardSettings:
        bad = [k for k in [*self.api_keys, *self.viewer_keys] if not _SHA256_HEX.match(k)]
        if bad:
            raise ValueError("API and viewer keys must be SHA-256 hex digests, never plain keys")
        if self.auth_required and not self.roles():
            raise ValueError("no admin key in SERVING_API_KEYS and no DASHBOARD_VIEWER_KEYS: "
                             "set one, or DASHBOARD_AUTH_REQUIRED=false")
        return self

    def roles(self) -> dict[str, str]:
        """Digest -> role of every key that may open the dashboard."""
        out = {k: ADMIN for k, role in self.api_keys.items() if role == ADMIN}
        return out | {k: VIEWER for k in self.viewer_keys if k not in out}

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.work_dir / 'serving.db').resolve()}"

    def signing_key(self) -> str:
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        return key or secrets.token_hex(32)  # unset or empty: sessions end at a restart


def load_dashboard_settings(**overrides: object) -> DashboardSettings:
    """Read the settings; a validation failure becomes a ConfigError naming the variable."""
    try:
        return DashboardSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        first = err.errors()[0]
        where = "DASHBOARD_" + "_".join(str(p) for p in first["loc"]).upper() \
            if first["loc"] else ""
        raise ConfigError(f"{where} {first['msg']}".strip()) from None
