"""Serving settings, read from the environment (prefix SERVING_); nothing is read at import.

Variants map a name to a model URI: `models:/<name>@<alias>` (the MLflow registry, through
`trajectory.tracking`), `models:/<name>/<version>`, or `builtin:<model>` (an untrained model
such as Constant Velocity, built in-process). A/B weights share traffic between variants;
shadow variants are scored and logged but never returned.

API keys are stored as the SHA-256 hex digest of the key, never the key itself:
    SERVING_API_KEYS='{"<sha256 hex of key>": "predict", "<sha256 hex>": "admin"}'
"""

from __future__ import annotations

import hashlib
import math
import re
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trajectory.config import Settings
from trajectory.exceptions import ConfigError

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class Role(StrEnum):
    """What an API key may do; admin implies predict."""

    predict = "predict"
    admin = "admin"


def hash_api_key(key: str) -> str:
    """The form in which keys are stored and compared: SHA-256 hex of the UTF-8 key."""
    return hashlib.sha256(key.encode()).hexdigest()


class ServingSettings(BaseSettings):
    """Everything the HTTP service and batch scoring need; defaults run offline."""

    model_config = SettingsConfigDict(
        env_prefix="SERVING_", env_file=".env", extra="ignore", populate_by_name=True
    )

    work_dir: Path = Path("artifacts")

    # models and A/B routing
    mlflow_tracking_uri: str | None = Field(None, description="else TRAJ_/MLFLOW_ settings")
    variants: dict[str, str] = {"champion": "models:/trajectory-forecaster@champion"}
    ab_weights: dict[str, float] = Field(
        default_factory=dict, description="variant -> share of traffic; default all to the first"
    )
    shadow_variants: list[str] = []
    ab_salt: str = "trajectory-ab-v1"
    model_poll_s: float = Field(30.0, gt=0, description="how often registry aliases are checked")
    torch_threads: int = Field(1, ge=1)
    gil_switch_s: float = Field(
        0.001, gt=0, description="GIL hand-off interval: the event loop waits at most this long "
        "for the inference and log-writer threads (Python's default is 5 ms)"
    )
    max_batch_windows: int = Field(2048, ge=1, description="micro-batch size cap, in windows")

    # cache
    redis_url: str | None = None
    cache_ttl_s: int = Field(3600, ge=1)
    cache_decimals: int = Field(3, ge=0, le=9, description="coordinates rounded to this many")
    cache_memory_items: int = Field(10_000, ge=1)
    redis_timeout_s: float = Field(0.05, gt=0)
    breaker_failures: int = Field(3, ge=1, description="consecutive Redis errors that open it")
    breaker_reset_s: float = Field(2.0, gt=0, description="open time before one probe")

    # prediction log
    database_url: str | None = Field(None, description="default: SQLite file under work_dir")
    log_batch_size: int = Field(100, ge=1, description="rows per insert (short GIL holds)")
    log_flush_s: float = Field(0.5, gt=0)
    log_queue_max: int = Field(200_000, ge=1)

    # security
    api_keys: dict[str, Role] = Field(default_factory=dict, description="sha256 hex -> role")
    auth_required: bool = True

    # limits
    max_agents: int = Field(64, ge=1)
    max_points: int = Field(200, ge=2)
    max_k: int = Field(20, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_csv_bytes: int = Field(
        256_000_000, ge=1024, description="largest batch upload; split bigger files"
    )
    max_abs_coordinate: float = Field(
        1e5, gt=0, allow_inf_nan=False, description="|x|, |y| above this (metres) are rejected"
    )
    output_decimals: int = Field(4, ge=0, le=9)

    # batch scoring
    batch_dir: Path | None = Field(None, description="default: work_dir/batch")
    batch_chunk_rows: int = Field(100_000, ge=100, description="input lines per chunk")
    batch_k: int = Field(1, ge=1)
    batch_max_listed_errors: int = Field(1000, ge=0)
    batch_retention_s: float = Field(86_400, gt=0, description="finished jobs kept this long")
    replica_name: str | None = Field(
        None, max_length=64, description="this replica in batch_jobs (default: the host name)"
    )
    batch_max_queued_per_key: int = Field(
        4, ge=1, description="queued or running batch jobs one API key may hold"
    )

    # privacy (docs/privacy.md)
    pseudonym_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SERVING_PSEUDONYM_KEY", "TRAJ_PSEUDONYM_KEY"),
        description="HMAC key for identifiers; default: a key file under work_dir",
    )
    log_retention_days: float = Field(
        30, gt=0, description="prediction log and quarantine rows older than this are purged"
    )
    position_decimals: int | None = Field(
        None, ge=0, le=9, description="round logged positions to this many decimals (1 = 0.1 m)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ServingSettings:
        if not self.variants:
            raise ValueError("SERVING_VARIANTS must name at least one variant")
        weights = self.ab_weights or {next(iter(self.variants)): 1.0}
        unknown = set(weights) | set(self.shadow_variants)
        unknown -= set(self.variants)
        if unknown:
            raise ValueError(f"SERVING_AB_WEIGHTS/SHADOW_VARIANTS name unknown {sorted(unknown)}")
        check_weights(weights)
        self.ab_weights = weights
        bad = [k for k in self.api_keys if not _SHA256_HEX.match(k)]
        if bad:
            raise ValueError(
                "SERVING_API_KEYS keys must be SHA-256 hex digests of the keys, never plain keys"
            )
        if self.auth_required and not self.api_keys:
            raise ValueError(
                "SERVING_API_KEYS is empty: set hashed keys, or SERVING_AUTH_REQUIRED=false"
            )
        return self

    @property
    def default_variant(self) -> str:
        return next(iter(self.variants))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.work_dir / 'serving.db').resolve()}"

    def resolved_batch_dir(self) -> Path:
        return self.batch_dir or self.work_dir / "batch"

    def trajectory_settings(self) -> Settings:
        """The core settings (windowing of builtin models, MLflow URI) for this service."""
        overrides: dict[str, object] = {"work_dir": self.work_dir}
        if self.mlflow_tracking_uri:
            overrides["mlflow_tracking_uri"] = self.mlflow_tracking_uri
        return Settings(**overrides)  # type: ignore[arg-type]


def check_weights(weights: dict[str, float]) -> None:
    """A/B weights are finite, non-negative and sum to 1."""
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError(f"A/B weights must be finite and >= 0, got {weights}")
    if abs(sum(weights.values()) - 1.0) > 1e-6:
        raise ValueError(f"A/B weights must sum to 1, got {sum(weights.values())}")


def load_serving_settings(**overrides: object) -> ServingSettings:
    """Read the settings, turning a validation failure into a ConfigError naming the variable."""
    try:
        return ServingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        first = err.errors()[0]
        where = "SERVING_" + "_".join(str(p) for p in first["loc"]).upper() if first["loc"] else ""
        raise ConfigError(f"{where} {first['msg']}".strip()) from None
