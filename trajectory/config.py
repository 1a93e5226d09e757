"""Settings, read from the environment (prefix TRAJ_) with embedded defaults.

Nothing is created at import time: call `get_settings()`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the ETL, training and tracking need, with defaults that run offline."""

    model_config = SettingsConfigDict(env_prefix="TRAJ_", env_file=".env", extra="ignore")

    # where things go
    work_dir: Path = Path("artifacts")
    data_dir: Path | None = None

    # windowing (the ETH/UCY protocol by default)
    obs_len: int = Field(8, ge=2)
    pred_len: int = Field(12, ge=1)
    stride: int = Field(1, ge=1)
    neighbour_radius: float = Field(5.0, gt=0, description="metres, at the last observed frame")
    max_neighbours: int = Field(8, ge=0)
    frame_seconds: float = Field(
        0.4, gt=0, description="seconds per frame step of raw data with frame ids (per dataset)"
    )
    dt: float = Field(
        0.4, gt=0, description="seconds between a model's steps; other tracks are resampled"
    )
    max_gap_seconds: float = Field(
        1.0, gt=0, description="resampling never interpolates across a longer gap in a track"
    )

    # validation
    max_speed: float = Field(12.0, gt=0, description="m/s; a faster jump is rejected")
    max_abs_coordinate: float = Field(
        1e5, gt=0, allow_inf_nan=False, description="metres; a larger |x| or |y| is rejected"
    )

    # dask
    dask_address: str | None = Field(None, description="existing scheduler, else a LocalCluster")
    dask_workers: int = Field(2, ge=1)
    dask_threads_per_worker: int = Field(1, ge=1)
    dask_memory_limit: str = "4GiB"

    # training
    seed: int = 0
    device: str = Field("auto", description="auto, cpu or cuda")
    optuna_storage: str | None = Field(
        None, description="Optuna RDB URL of `trajectory tune`; default <work_dir>/optuna.db"
    )

    # tracking
    mlflow_tracking_uri: str | None = None
    experiment_name: str = "trajectory"
    model_name: str = "trajectory-forecaster"
    promotion_min_improvement: float = Field(
        0.0, ge=0, description="metres of validation ADE the challenger must gain over champion"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "cuda"} and not value.startswith("cuda:"):
            raise ValueError(f"TRAJ_DEVICE must be auto, cpu or cuda[:N], got {value!r}")
        return value

    @model_validator(mode="after")
    def _resamplable(self) -> Settings:
        if abs(self.frame_seconds - self.dt) > 1e-9 and self.frame_seconds > self.max_gap_seconds:
            raise ValueError(
                f"TRAJ_FRAME_SECONDS={self.frame_seconds:g} differs from TRAJ_DT={self.dt:g} and "
                f"is longer than TRAJ_MAX_GAP_SECONDS={self.max_gap_seconds:g}: every step of "
                "the raw tracks would be a gap, so nothing could be resampled"
            )
        return self

    @property
    def window_len(self) -> int:
        return self.obs_len + self.pred_len

    @property
    def windows_dir(self) -> Path:
        """Where the ETL writes windows unless told otherwise, and training reads them."""
        return self.work_dir / "windows"

    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI wins, then TRAJ_MLFLOW_TRACKING_URI, then embedded SQLite."""
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow_tracking_uri
        if uri:
            return uri
        return f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    def artifact_location(self) -> str:
        return (self.work_dir / "mlruns").resolve().as_uri()


@lru_cache
def get_settings() -> Settings:
    return Settings()
