"""Monitoring settings, read from the environment (prefix TRAJ_MONITOR_); nothing at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from trajectory.privacy.pseudonym import Pseudonymiser, load_pseudonymiser


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
    pseudonym_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SERVING_PSEUDONYM_KEY", "TRAJ_PSEUDONYM_KEY"),
        description="the service's HMAC key of identifiers (the live join pseudonymises ground "
        "truth with it); default the key file under work_dir",
    )
    retention_days: float = Field(
        90, gt=0, description="evaluation folders (decision, drift report) are purged after this"
    )
    ab_weights: dict[str, float] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("TRAJ_MONITOR_AB_WEIGHTS", "SERVING_AB_WEIGHTS"),
        description="variant -> configured share of routing keys, for the sample-ratio check",
    )

    # drift: Evidently writes the report (method and threshold below); the decision is
    # drift_rule's, with per-feature thresholds calibrated on the training data at the current n
    drift_method: str = Field("wasserstein", description="Evidently stat test (report only)")
    drift_threshold: float = Field(
        0.5, gt=0, description="Evidently's per-feature threshold in the report (not the rule)"
    )
    drift_quantile: float = Field(
        0.99, gt=0.5, lt=1, description="quantile of time-ordered A/A training scores: threshold"
    )
    drift_calibration_samples: int = Field(200, ge=20, description="A/A samples per calibration")
    drift_run_windows: int = Field(
        10, ge=1, description="consecutive windows per A/A run (a routing key's requests)"
    )
    drift_site_mix: float = Field(
        10.0, gt=0, description="Dirichlet concentration of each A/A sample's site mix: how much "
        "the share of each scene in an hour's traffic varies (smaller: more)"
    )
    drift_key_features: list[str] = Field(
        default_factory=lambda: ["speed"], description="one of these over threshold is enough"
    )
    drift_share_retrain: float = Field(
        0.5, gt=0, le=1, description="else this share of features over threshold is needed"
    )
    drift_persistence: int = Field(2, ge=1, description="consecutive drifted evaluations")
    min_drift_rows: int = Field(300, ge=30, description="served windows needed to judge drift")

    # live accuracy: model ADE / constant-velocity ADE on the same windows vs validation
    ade_degradation_retrain: float = Field(
        0.25, gt=0, description="relative rise of the ADE/CV-ADE ratio over validation's"
    )
    live_alpha: float = Field(0.05, gt=0, lt=1, description="two-sided bootstrap interval")
    live_resamples: int = Field(500, ge=100, description="cluster-bootstrap resamples")
    live_persistence: int = Field(3, ge=1, description="consecutive degraded evaluations")
    min_live_windows: int = Field(100, ge=1, description="joined windows needed to judge ADE")

    # A/B: one pre-registered one-sided always-valid test per experiment
    ab_metric: str = Field("ade", description="ade or fde: what the A/B comparison tests")
    ab_alpha: float = Field(0.05, gt=0, lt=1, description="of the confidence sequence")
    ab_min_improvement: float = Field(
        0.02, ge=0, lt=1, description="relative to the champion: the upper bound must clear it"
    )
    ab_effect: float = Field(
        0.10, gt=0, lt=1, description="relative improvement the planned sample should detect"
    )
    ab_power: float = Field(0.8, gt=0.5, lt=1, description="planned power for ab_effect")
    ab_min_keys: int = Field(100, ge=2, description="floor of the planned keys (both arms)")
    ab_max_days: float = Field(14, gt=0, description="log read back from experiment start")
    ab_pre_days: float = Field(1, ge=0, description="pre-experiment log for CUPED covariates")
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

    def pseudonymiser(self, work_dir: Path) -> Pseudonymiser:
        """The service's key: TRAJ_PSEUDONYM_KEY, else the key file in the work dir."""
        key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else None
        return load_pseudonymiser(key, work_dir)


def get_monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings()
