"""Privacy settings (env prefix TRAJ_PRIVACY_); the service's own variables are read too.

The purge and erasure jobs run beside the service, not in it: they need the prediction log's
database, the pseudonym key, the service's retention periods and where its files are. Each is
read from a TRAJ_PRIVACY_ variable first, else from the variable the service itself reads, so
one environment configures both. Nothing is read at import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from trajectory.exceptions import ConfigError
from trajectory.privacy.pseudonym import KEY_ENV, KEY_FILE, Pseudonymiser, load_pseudonymiser


def _alias(name: str, *others: str) -> AliasChoices:
    return AliasChoices(f"TRAJ_PRIVACY_{name}", *others)


class PrivacySettings(BaseSettings):
    """Where personal data is kept and for how long (docs/privacy.md)."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJ_PRIVACY_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        None,
        validation_alias=_alias("DATABASE_URL", "TRAJ_MONITOR_DATABASE_URL", "SERVING_DATABASE_URL"),
        description="prediction log; default the service's SQLite file under work_dir",
    )
    pseudonym_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SERVING_PSEUDONYM_KEY", "TRAJ_PSEUDONYM_KEY"),
        description="HMAC key of identifiers; default the key file under work_dir",
    )
    serving_work_dirs: list[Path] = Field(
        default_factory=list,
        validation_alias=_alias("SERVING_WORK_DIRS"),
        description="work dirs of the serving replicas (spill files, batch/); default "
        "SERVING_WORK_DIR, else work_dir",
    )
    serving_work_dir: Path | None = Field(
        None, validation_alias=AliasChoices("SERVING_WORK_DIR"),
        description="the one replica's work dir when serving_work_dirs is not set",
    )
    serving_batch_dir: Path | None = Field(
        None, validation_alias=AliasChoices("SERVING_BATCH_DIR"),
        description="the service's batch dir when batch_dirs is not set",
    )
    batch_dirs: list[Path] = Field(
        default_factory=list,
        validation_alias=_alias("BATCH_DIRS"),
        description="batch job folders; default SERVING_BATCH_DIR, else <serving work dir>/batch",
    )
    log_retention_days: float = Field(
        30,
        gt=0,
        validation_alias=_alias("LOG_RETENTION_DAYS", "SERVING_LOG_RETENTION_DAYS"),
        description="prediction log, quarantine and spill rows older than this are purged",
    )
    batch_retention_s: float = Field(
        86_400,
        gt=0,
        validation_alias=_alias("BATCH_RETENTION_S", "SERVING_BATCH_RETENTION_S"),
        description="finished batch jobs (rows and folders) older than this are purged",
    )
    monitoring_retention_days: float = Field(
        90,
        gt=0,
        validation_alias=_alias("MONITORING_RETENTION_DAYS", "TRAJ_MONITOR_RETENTION_DAYS"),
        description="evaluation folders (decision, drift report) older than this are purged",
    )
    batch_size: int = Field(5000, ge=1, description="rows deleted per statement")

    def resolved_database_url(self, work_dir: Path) -> str:
        """The log's URL; the default is the service's (SQLite `serving.db` in the work dir)."""
        return self.database_url or f"sqlite:///{(work_dir / 'serving.db').resolve()}"

    def resolved_serving_dirs(self, work_dir: Path) -> list[Path]:
        return self.serving_work_dirs or [self.serving_work_dir or work_dir]

    def resolved_batch_dirs(self, work_dir: Path) -> list[Path]:
        if self.batch_dirs:
            return self.batch_dirs
        if self.serving_batch_dir:
            return [self.serving_batch_dir]
        return [d / "batch" for d in self.resolved_serving_dirs(work_dir)]

    def pseudonymiser(self, work_dir: Path) -> Pseudonymiser:
        """The service's key: the same variable, else its key file (in the first serving dir).
        Never a new key: pseudonyms of a key nobody used match nothing, silently."""
        key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else None
        home = self.resolved_serving_dirs(work_dir)[0]
        if key is None and not (home / KEY_FILE).is_file():
            raise ConfigError(f"no pseudonym key: set {KEY_ENV} (the service's key) or run where "
                              f"{home / KEY_FILE} is")
        return load_pseudonymiser(key, home)


def get_privacy_settings() -> PrivacySettings:
    return PrivacySettings()
