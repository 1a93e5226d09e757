"""The model interface: observed window (+ neighbours) -> K future trajectories with weights.

Every model takes absolute positions and returns absolute positions; the shared helpers below
move inputs into an agent-centred frame (origin at the last observed point, x axis along the
last observed heading) and back, so models can learn in a frame where the scene does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trajectory.exceptions import ModelError

_REGISTRY: dict[str, type[TrajectoryModel]] = {}


@dataclass
class Prediction:
    traj: torch.Tensor  # (B, K, T_pred, 2) absolute positions
    weights: torch.Tensor  # (B, K), non-negative, sums to 1 over K; sorted descending


class TrajectoryModel(nn.Module):
    """Base class. Subclasses set `name`, take keyword args only, and implement `forward`."""

    name: ClassVar[str]
    trainable: ClassVar[bool] = True

    def __init__(self, obs_len: int = 8, pred_len: int = 12, **_: Any) -> None:
        super().__init__()
        self.obs_len, self.pred_len = obs_len, pred_len

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    def model_args(self) -> dict[str, Any]:
        """The keyword args that rebuild this model (saved with every checkpoint)."""
        return {"obs_len": self.obs_len, "pred_len": self.pred_len}

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        """obs (B, T_obs, 2), nbr (B, M, T_obs, 2) with NaN gaps -> K futures, best first."""
        raise NotImplementedError

    def loss(self, obs: torch.Tensor, nbr: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """Training loss for a batch; only trainable models implement it."""
        raise ModelError(f"model {self.name!r} has no parameters to train")

    def calibrate(self, obs: torch.Tensor, nbr: torch.Tensor, fut: torch.Tensor) -> dict[str, float]:
        """Fit post-training parameters (e.g. a weight temperature) on validation windows;
        returns what was fitted. Most models have nothing to fit."""
        return {}

    def check_input(self, obs: torch.Tensor, nbr: torch.Tensor) -> None:
        if obs.ndim != 3 or obs.shape[1:] != (self.obs_len, 2):
            raise ModelError(f"obs must be (B, {self.obs_len}, 2), got {tuple(obs.shape)}")
        if nbr.ndim != 4 or nbr.shape[0] != obs.shape[0] or nbr.shape[2:] != (self.obs_len, 2):
            raise ModelError(f"nbr must be (B, M, {self.obs_len}, 2), got {tuple(nbr.shape)}")


_BUILTIN = (
    "trajectory.models.constant_velocity",
    "trajectory.models.mixture",
    "trajectory.models.calibrated",
)


def _register_builtin() -> None:
    import importlib

    for module in _BUILTIN:
        importlib.import_module(module)


def build_model(name: str, **args: Any) -> TrajectoryModel:
    _register_builtin()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**args)


def model_names() -> list[str]:
    _register_builtin()
    return sorted(_REGISTRY)


def to_local(
    obs: torch.Tensor, nbr: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Agent-centred frame: returns obs_l (B,T,2), nbr_l (B,M,T,2), origin (B,2), rot (B,2,2).

    The x axis follows the last observed step; a standing agent keeps the world axes.
    world = local @ rot + origin.
    """
    origin = obs[:, -1]  # (B, 2)
    step = obs[:, -1] - obs[:, -2]  # (B, 2)
    norm = step.norm(dim=-1, keepdim=True)  # (B, 1)
    unit = torch.where(norm > 1e-6, step / norm.clamp_min(1e-6), torch.tensor([1.0, 0.0]).to(obs))
    cos, sin = unit[:, 0], unit[:, 1]
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1)  # (B,2,2)
    obs_l = (obs - origin[:, None]) @ rot.transpose(1, 2)  # (B, T, 2)
    nbr_l = (nbr - origin[:, None, None]) @ rot.transpose(1, 2)[:, None]  # (B, M, T, 2)
    return obs_l, nbr_l, origin, rot


def random_mirror(
    prob: float, obs_l: torch.Tensor, nbr_l: torch.Tensor, fut_l: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmentation: mirror y -> -y in the local frame for a random share `prob` of windows."""
    flip = torch.rand(len(obs_l), device=obs_l.device) < prob  # (B,)
    sign = torch.where(flip, -1.0, 1.0).to(obs_l.dtype)  # (B,)
    mirror = torch.stack([torch.ones_like(sign), sign], -1)  # (B, 2)
    return obs_l * mirror[:, None], nbr_l * mirror[:, None, None], fut_l * mirror[:, None]


def top_k_modes(
    traj_l: torch.Tensor, probs: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """traj_l (B, M, T, 2), probs (B, M) -> the k most likely modes (B, K, T, 2) and their
    weights (B, K), renormalised, best first. For k > M, modes repeat in weight order and each
    copy carries an equal share of its mode's weight (so weights still sum to 1)."""
    if k < 1:
        raise ModelError(f"k must be >= 1, got {k}")
    modes = probs.shape[1]
    weights, order = probs.sort(-1, descending=True)  # (B, M)
    if k <= modes:
        order, weights = order[:, :k], weights[:, :k] / weights[:, :k].sum(-1, keepdim=True)
    else:
        rank = torch.arange(k, device=probs.device) % modes  # (K,)
        copies = torch.bincount(rank, minlength=modes).to(weights)  # (M,)
        weights, pos = (weights / copies)[:, rank].sort(dim=-1, descending=True, stable=True)
        order = order[:, rank].gather(1, pos)  # (B, K)
    idx = order[..., None, None].expand(-1, -1, *traj_l.shape[2:])  # (B, K, T, 2)
    return traj_l.gather(1, idx), weights


def to_world(traj_l: torch.Tensor, origin: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """traj_l (B, K, T, 2) in the local frame -> absolute positions."""
    return traj_l @ rot[:, None] + origin[:, None, None]


@torch.no_grad()
def predict(
    model: TrajectoryModel,
    obs: np.ndarray,
    nbr: np.ndarray,
    k: int = 1,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy in, numpy out, in batches: -> traj (N, K, T_pred, 2), weights (N, K)."""
    model.eval()
    trajs, weights = [], []
    for i in range(0, max(len(obs), 1), batch_size):
        o = torch.as_tensor(obs[i : i + batch_size], dtype=torch.float32, device=device)
        n = torch.as_tensor(nbr[i : i + batch_size], dtype=torch.float32, device=device)
        if len(o) == 0:
            break
        out = model(o, n, k)
        trajs.append(out.traj.float().cpu().numpy())
        weights.append(out.weights.float().cpu().numpy())
    if not trajs:
        return np.zeros((0, k, model.pred_len, 2), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(trajs), np.concatenate(weights)
