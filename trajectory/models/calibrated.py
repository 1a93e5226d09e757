"""The mixture, with a single best guess for K=1 and mode weights that mean what they say.

Tracks: exactly the `mixture` model's encoder, decoder and training loss (a central track
trained on mean L2, 19 offsets from it trained winner-takes-all, soft-target logits).

What changes is what the model answers:
- **K=1** is always the central track, the head trained on mean L2 (what ADE measures) on
  every window, not whichever mode happens to have the top weight.
- **Weights** come from a separate head on the (detached) context, trained with cross-entropy
  on which mode ends closest to the truth (lowest final error, the mode Argoverse's
  brier-minFDE asks about). Detached, so the tracks train exactly as in `mixture`. After
  training, `calibrate` fits one temperature on validation windows, so a weight of 0.3 means
  "this mode ends closest about 30% of the time".
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trajectory.models.base import Prediction, to_local, to_world, top_k_modes
from trajectory.models.mixture import MixtureModel

TEMPERATURES = torch.logspace(-1, 1, 81)  # the grid `calibrate` searches, 0.1 .. 10


class CalibratedMixture(MixtureModel):
    """K=1: the central track. K>1: the k most likely modes by calibrated weight, best first."""

    log_temperature: torch.Tensor  # buffer: () log of the fitted softmax temperature

    name = "calibrated"

    def __init__(self, weight_loss: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight_loss = weight_loss
        self.weight_head = nn.Sequential(
            nn.Linear(2 * self.hidden, self.hidden), nn.GELU(), nn.Linear(self.hidden, self.modes)
        )
        # fitted by `calibrate`, saved with the weights
        self.register_buffer("log_temperature", torch.tensor(0.0))

    def model_args(self) -> dict[str, Any]:
        return super().model_args() | {"weight_loss": self.weight_loss}

    def _weights(self, ctx: torch.Tensor) -> torch.Tensor:
        """Calibrated mode probabilities (B, M)."""
        logits = self.weight_head(ctx).float()  # (B, M)
        return torch.softmax(logits / self.log_temperature.exp(), -1)

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        self.check_input(obs, nbr)
        obs_l, nbr_l, origin, rot = to_local(obs, nbr)
        traj_l, _, ctx = self._modes(obs_l, nbr_l)  # (B, M, T, 2), _, (B, 2H)
        if k == 1:
            traj_l, weights = traj_l[:, :1], torch.ones(len(obs), 1, device=obs.device)
        else:
            traj_l, weights = top_k_modes(traj_l, self._weights(ctx), k)  # (B,K,T,2), (B,K)
        traj = to_world(traj_l.to(obs.dtype), origin, rot)  # (B, K, T, 2)
        return Prediction(traj=traj, weights=weights.to(obs.dtype))

    def loss(self, obs: torch.Tensor, nbr: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """The mixture's loss + cross-entropy of the weight head on the closest final point."""
        loss, err, ctx = self._loss(obs, nbr, fut)  # _, (B, M, T), (B, 2H)
        closest = err[..., -1].argmin(-1)  # (B,)
        ce = F.cross_entropy(self.weight_head(ctx.detach()).float(), closest)
        return loss + self.weight_loss * ce

    @torch.no_grad()
    def calibrate(self, obs: torch.Tensor, nbr: torch.Tensor, fut: torch.Tensor) -> dict[str, float]:
        """The temperature of the weights that minimises the cross-entropy of "which mode ends
        closest" on these (validation) windows; a grid search, so it cannot diverge."""
        was_training = self.training
        self.eval()
        logits, labels = [], []
        for i in range(0, len(obs), 4096):
            o, n, f = obs[i : i + 4096], nbr[i : i + 4096], fut[i : i + 4096]
            obs_l, nbr_l, origin, rot = to_local(o, n)
            fut_l = (f - origin[:, None]) @ rot.transpose(1, 2)  # (b, T_pred, 2)
            traj_l, _, ctx = self._modes(obs_l, nbr_l)
            logits.append(self.weight_head(ctx).float())
            labels.append((traj_l[:, :, -1] - fut_l[:, None, -1]).norm(dim=-1).argmin(-1))
        lg, lab = torch.cat(logits), torch.cat(labels)  # (N, M), (N,)
        temps = TEMPERATURES.to(lg.device)
        ce = torch.stack([F.cross_entropy(lg / t, lab) for t in temps])  # (n_temps,)
        best = int(ce.argmin())
        before = float(F.cross_entropy(lg / self.log_temperature.exp(), lab))
        self.log_temperature.fill_(math.log(float(temps[best])))
        self.train(was_training)
        return {"temperature": float(temps[best]), "ce_before": before, "ce_after": float(ce[best])}
