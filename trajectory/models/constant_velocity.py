"""Constant Velocity: the last observed step, repeated. The honest baseline (Schöller 2020).

`cv` gives that one track. `cv-grid` fans it out into 20 rollouts with no learning, which is
what best-of-20 alone rewards (the data README's point): a calibration-aware metric beside
best-of-K tells the fan from a forecast.
"""

from __future__ import annotations

import math

import torch

from trajectory.exceptions import ModelError
from trajectory.models.base import Prediction, TrajectoryModel


def _rollout(obs: torch.Tensor, steps: torch.Tensor, pred_len: int) -> torch.Tensor:
    """steps (B, K, 2) per frame from the last observed point -> tracks (B, K, T, 2)."""
    t = torch.arange(1, pred_len + 1, dtype=obs.dtype, device=obs.device)  # (T,)
    return obs[:, -1, None, None] + t[None, None, :, None] * steps[:, :, None]  # (B, K, T, 2)


class ConstantVelocity(TrajectoryModel):
    name = "cv"
    trainable = False

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        self.check_input(obs, nbr)
        step = obs[:, -1] - obs[:, -2]  # (B, 2)
        traj = _rollout(obs, step[:, None], self.pred_len)  # (B, 1, T, 2)
        traj = traj.expand(-1, k, -1, -1)  # (B, K, T, 2): one mode, K copies
        weights = torch.full((len(obs), k), 1.0 / k, dtype=obs.dtype, device=obs.device)
        return Prediction(traj=traj, weights=weights)


class ConstantVelocityGrid(TrajectoryModel):
    """20 constant-velocity rollouts: the last observed step times a speed factor in SPEEDS,
    turned by an angle in ANGLES (degrees, counter-clockwise), all with weight 1/20.

    Outputs, most central first: heading change 0, then ±15, then ±30 degrees (the left turn
    first); within one heading the speed factors nearest 1 first (0.87, 1.13, 0.6, 1.4). For
    k < 20 the first k, each weighted 1/k; for k > 20 the 20 repeat in that order, 1/k each.
    k = 1 is the plain constant-velocity track: speed 1 is not in the grid, and the one best
    guess of a fan centred on constant velocity is its centre (the service's k=1 answer).
    """

    name = "cv-grid"
    trainable = False
    SPEEDS = (0.87, 1.13, 0.6, 1.4)
    ANGLES = (0.0, 15.0, -15.0, 30.0, -30.0)

    def grid(self) -> torch.Tensor:
        """(20, 2, 2) matrices, one per rollout in output order: a turn times a speed factor;
        a row vector step @ matrix is the rollout's step."""
        mats = []
        for angle in self.ANGLES:
            cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            for speed in self.SPEEDS:
                mats.append([[speed * cos, speed * sin], [-speed * sin, speed * cos]])
        return torch.tensor(mats)  # (G, 2, 2)

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        self.check_input(obs, nbr)
        if k < 1:
            raise ModelError(f"k must be >= 1, got {k}")
        step = obs[:, -1] - obs[:, -2]  # (B, 2)
        if k == 1:
            steps = step[:, None]  # (B, 1, 2)
        else:
            mats = self.grid().to(obs)  # (G, 2, 2)
            order = torch.arange(k, device=obs.device) % len(mats)  # (K,)
            steps = torch.einsum("bi,kij->bkj", step, mats[order])  # (B, K, 2)
        traj = _rollout(obs, steps, self.pred_len)  # (B, K, T, 2)
        weights = torch.full((len(obs), k), 1.0 / k, dtype=obs.dtype, device=obs.device)
        return Prediction(traj=traj, weights=weights)
