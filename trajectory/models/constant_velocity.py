"""Constant Velocity: the last observed step, repeated. The honest baseline (Schöller 2020)."""

from __future__ import annotations

import torch

from trajectory.models.base import Prediction, TrajectoryModel


class ConstantVelocity(TrajectoryModel):
    name = "cv"
    trainable = False

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        self.check_input(obs, nbr)
        step = obs[:, -1] - obs[:, -2]  # (B, 2)
        t = torch.arange(1, self.pred_len + 1, dtype=obs.dtype, device=obs.device)  # (T,)
        traj = obs[:, -1, None] + t[None, :, None] * step[:, None]  # (B, T, 2)
        traj = traj[:, None].expand(-1, k, -1, -1)  # (B, K, T, 2): one mode, K copies
        weights = torch.full((len(obs), k), 1.0 / k, dtype=obs.dtype, device=obs.device)
        return Prediction(traj=traj, weights=weights)
