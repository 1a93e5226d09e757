"""Monitoring settings, read from the environment (prefix TRAJ_MONITOR_); nothing at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitoringSettings(BaseSettings):
    """Methods and thresholds of the evaluation job; every decision records the values used."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJ_MONITOR_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # the prediction log and the A/B configuration: the service's own settings are read too
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("TRAJ_MONITOR_DATABASE_URL", "SERVING_DATABASE_URL"),
        description="prediction log; default the service's SQLite file under work_dir",
    )
    ab_weights: dict[str, float] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("TRAJ_MONITOR_AB_WEIGHTS", "SERVING_AB_WEIGHTS"),
        description="variant -> configured share of routing keys, for the sample-ratio check",
    )

    # drift (Evidently): the method is always set explicitly, never Evidently's size-based switch
    drift_method: str = Field("wasserstein", description="Evidently stat test for every feature")
    # Normalised Wasserstein (W1 / reference std). Evidently's 0.1 flags the ordinary change
    # between time slices of the same ETH/UCY scenes (0.1-0.5 measured on speed, acceleration,
    # heading change); doubled speeds score about 2. 0.5 = mass moved by half a std.
    drift_threshold: float = Field(
        0.5, gt=0, description="per feature; a distance at or above it (or a p-value below) drifts"
    )
    drift_share_retrain: float = Field(
        0.5, gt=0, le=1, description="share of drifted features that triggers retraining"
    )
    min_drift_rows: int = Field(30, ge=1, description="served windows needed to judge drift")

    # live accuracy
    ade_degradation_retrain: float = Field(
        0.25, gt=0, description="relative live ADE increase over the reference that retrains"
    )
    min_live_windows: int = Field(20, ge=1, description="joined windows needed to judge ADE")

    # A/B
    ab_metric: str = Field("ade", description="ade or fde: what the A/B comparison tests")
    ab_alpha: float = Field(0.05, gt=0, lt=1)
    ab_min_keys: int = Field(5, ge=2, description="routing keys per variant needed to test")
    srm_alpha: float = Field(
        0.001, gt=0, lt=1, description="p-value of the sample-ratio chi-square that flags SRM"
    )

    # what the decision may do beyond recommending
    auto_promote: bool = Field(False, description="promote a challenger that wins the A/B test")
    auto_rollback: bool = Field(
        False, description="roll back a champion version that loses to the version it replaced"
    )
    challenger_variant: str = "challenger"
    champion_variant: str = "champion"

    def resolved_database_url(self, work_dir: Path) -> str:
        """The log's URL; the default is the service's (SQLite `serving.db` in the work dir)."""
        return self.database_url or f"sqlite:///{(work_dir / 'serving.db').resolve()}"


def get_monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings()
