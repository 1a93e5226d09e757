"""The MLflow pyfunc flavour of a trajectory model: JSON-servable tensors in, K futures out.

Input (`mlflow models serve` body, or a dict of arrays in process)::

    {"inputs": {"obs": [[[x, y] * T_obs] * B],            # (B, T_obs, 2) float32, metres
                "nbr": [[[[x, y] * T_obs] * M] * B]},     # (B, M, T_obs, 2) float32
     "params": {"k": 20}}                                 # optional, default 1

JSON has no NaN, so a missing neighbour slot or frame is sent as `NBR_MISSING` (1e9): every
coordinate with magnitude >= 1e6 m is read as missing. NaN is accepted too (in process). M may
be any number >= 1; send one all-missing slot when an agent has no neighbours.

Output: {"traj": (B, K, T_pred, 2) absolute positions, most likely first, "weights": (B, K)};
the server wraps it as {"predictions": {"traj": [...], "weights": [...]}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import ModelError
from trajectory.models.base import TrajectoryModel, predict

if TYPE_CHECKING:
    # Seen by mypy only: MLflow derives a schema from a resolvable predict() input hint and
    # knows list[...] inputs only; ours is validated against the explicit TensorSpec signature.
    PyfuncInput = Mapping[str, np.ndarray]

NBR_MISSING = 1.0e9  # what a missing neighbour coordinate is sent as
MISSING_ABOVE = 1.0e6  # coordinates of this magnitude or more are read as missing
CHECKPOINT_KEY = "checkpoint"  # the pyfunc artifact holding the training checkpoint

# Models-from-code entry point written next to the logged model: MLflow runs this file to get
# the model object, so nothing is pickled and the class is always the installed one.
ENTRY_SCRIPT = '''"""MLflow models-from-code entry: the class is in the `trajectory` package."""
from mlflow.models import set_model

from trajectory.tracking.pyfunc import TrajectoryPyfunc

set_model(TrajectoryPyfunc())
'''


def encode_nbr(nbr: np.ndarray) -> np.ndarray:
    """NaN -> NBR_MISSING, so the array can travel as JSON."""
    nbr = np.asarray(nbr, np.float32)
    return np.where(np.isnan(nbr), np.float32(NBR_MISSING), nbr)


def decode_nbr(nbr: np.ndarray) -> np.ndarray:
    """Coordinates at or above MISSING_ABOVE in magnitude -> NaN (what the models expect)."""
    nbr = np.asarray(nbr, np.float32)
    return np.where(np.abs(nbr) >= MISSING_ABOVE, np.float32(np.nan), nbr)


def model_input(obs: np.ndarray, nbr: np.ndarray) -> dict[str, np.ndarray]:
    """The pyfunc input for windows: obs (B, T_obs, 2), nbr (B, M, T_obs, 2) NaN-padded."""
    nbr = np.asarray(nbr, np.float32)
    if nbr.ndim == 4 and nbr.shape[1] == 0:  # JSON cannot carry an empty axis before others
        nbr = np.full((len(nbr), 1, *nbr.shape[2:]), np.nan, np.float32)
    return {"obs": np.asarray(obs, np.float32), "nbr": encode_nbr(nbr)}


def serving_payload(obs: np.ndarray, nbr: np.ndarray, k: int = 1) -> dict[str, Any]:
    """The JSON body for `mlflow models serve` /invocations."""
    inputs = model_input(obs, nbr)
    return {"inputs": {n: a.tolist() for n, a in inputs.items()}, "params": {"k": int(k)}}


def input_example(spec: WindowSpec, windows: Windows | None = None) -> dict[str, np.ndarray]:
    """Two windows from `windows`, or one agent walking along x with no neighbours."""
    if windows is not None and len(windows):
        return model_input(windows.obs[:2], windows.nbr[:2])
    obs = np.zeros((1, spec.obs_len, 2), np.float32)  # (1, T_obs, 2)
    obs[0, :, 0] = np.arange(spec.obs_len, dtype=np.float32) * 0.5
    nbr = np.full((1, max(spec.max_neighbours, 1), spec.obs_len, 2), np.nan, np.float32)
    return model_input(obs, nbr)


def model_signature(spec: WindowSpec) -> ModelSignature:
    """Tensor signature: batch and neighbour count free, window lengths fixed; param k."""
    f32 = np.dtype(np.float32)
    t_obs, t_pred = spec.obs_len, spec.pred_len
    inputs = Schema(
        [
            TensorSpec(f32, (-1, t_obs, 2), "obs"),
            TensorSpec(f32, (-1, -1, t_obs, 2), "nbr"),
        ]
    )
    outputs = Schema(
        [TensorSpec(f32, (-1, -1, t_pred, 2), "traj"), TensorSpec(f32, (-1, -1), "weights")]
    )
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("k", "long", 1)]))


class TrajectoryPyfunc(PythonModel):
    """Rebuilds the model from the `checkpoint` artifact; predicts K futures per window."""

    # Inputs are checked against the TensorSpec signature, not the predict() type hint (as
    # MLflow does for its own ChatModel); this also stops its warning about the hint.
    _skip_type_hint_validation = True
    _model: TrajectoryModel
    _device: torch.device

    def load_context(self, context: PythonModelContext) -> None:
        from trajectory.training.checkpoint import load_checkpoint

        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        path = Path(context.artifacts[CHECKPOINT_KEY])
        self._model, _ = load_checkpoint(path, self._device)

    def predict(
        self,
        context: PythonModelContext,
        model_input: PyfuncInput,
        params: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        if not isinstance(model_input, Mapping) or not {"obs", "nbr"} <= set(model_input):
            raise ModelError('input must be a mapping with tensors "obs" and "nbr"')
        k = int((params or {}).get("k", 1))
        if k < 1:
            raise ModelError(f"k must be >= 1, got {k}")
        obs = np.asarray(model_input["obs"], np.float32)  # (B, T_obs, 2)
        nbr = decode_nbr(model_input["nbr"])  # (B, M, T_obs, 2), NaN where missing
        traj, weights = predict(self._model, obs, nbr, k=k, device=self._device)
        return {"traj": traj, "weights": weights}
