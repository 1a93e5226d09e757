"""Helpers of the serving tests: keys, a fake model registry, settings, request bodies."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from serving.config import ServingSettings, hash_api_key
from serving.registry import ServedModel
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import TrackingError
from trajectory.models.base import Prediction
from trajectory.models.constant_velocity import ConstantVelocity
from trajectory.privacy.pseudonym import Pseudonymiser

with warnings.catch_warnings():  # starlette's note about httpx2, irrelevant here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["ADMIN", "PREDICT", "SPEC", "FakeRegistry", "ShiftedCV", "TestClient", "make_settings",
           "walk"]

PREDICT_KEY, ADMIN_KEY = "predict-key-for-tests", "admin-key-for-tests"
PREDICT = {"X-API-Key": PREDICT_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
SPEC = WindowSpec(obs_len=8, pred_len=12, neighbour_radius=5.0, max_neighbours=4)


class ShiftedCV(ConstantVelocity):
    """Constant velocity plus `shift` metres in x: tells model versions apart in outputs."""

    def __init__(self, shift: float = 0.0, **args: object) -> None:
        super().__init__(**args)  # type: ignore[arg-type]
        self.shift = shift

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        out = super().forward(obs, nbr, k)
        traj = out.traj.clone()
        traj[..., 0] += self.shift
        return Prediction(traj=traj, weights=out.weights)


class FakeRegistry:
    """A ModelSource: aliases -> versions in a dict; version v predicts CV shifted by v."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {"champion": "1", "challenger": "2"}
        self.down = False
        self.loads: list[str] = []

    def resolve(self, uri: str) -> str | None:
        if self.down:
            raise TrackingError("MLflow at http://mlflow.invalid is unreachable")
        match = re.match(r"^models:/[^@/]+@(\w+)$", uri)
        return self.versions.get(match[1]) if match else None

    def load(self, uri: str) -> ServedModel:
        if self.down:
            raise TrackingError("MLflow at http://mlflow.invalid is unreachable")
        self.loads.append(uri)
        version = uri.rsplit("/", 1)[-1]
        model = ShiftedCV(shift=float(version), obs_len=SPEC.obs_len, pred_len=SPEC.pred_len)
        return ServedModel("fake", version, f"run{version}", SPEC, model.eval(), uri)


PSEUDONYM_KEY = "test-pseudonym-key-of-at-least-32-chars"
PSEUDONYMS = Pseudonymiser(PSEUDONYM_KEY.encode())


def make_settings(tmp_path: Path, **overrides: object) -> ServingSettings:
    values: dict[str, object] = {
        "work_dir": tmp_path,
        "variants": {"champion": "models:/fake@champion", "challenger": "models:/fake@challenger"},
        "ab_weights": {"champion": 1.0},
        "api_keys": {hash_api_key(PREDICT_KEY): "predict", hash_api_key(ADMIN_KEY): "admin"},
        "model_poll_s": 3600,
        "log_flush_s": 0.05,
        "pseudonym_key": PSEUDONYM_KEY,
    }
    return ServingSettings(**(values | overrides))  # type: ignore[arg-type]


def walk(agent_id: int, n: int = 8, y: float = 0.0, vx: float = 0.5) -> dict[str, object]:
    """An agent walking along x at vx metres per step."""
    return {"agent_id": agent_id, "points": [[vx * i, y] for i in range(n)]}
