"""A multimodal mixture of M trajectories with mode weights, learned in the agent-centred frame.

Encoder: the agent's observed steps and its neighbours (attention over slots, with a learned
"nobody" slot so an empty neighbourhood is well defined) give one context vector. Inputs are
divided by the agent's mean observed step length (at least `min_scale` metres), and outputs
multiplied by it, so the model is scale-free: a scene recorded at another frame rate or walking
speed (ETH) looks like the others.

Decoder: mode 0 is a central track, every other mode is the central track plus an offset; all
are offsets from the constant-velocity extrapolation. Logits give the mode weights.

Loss: the mean L2 distance (what ADE measures) of the central track on every window, so K=1
is a good single guess; winner-takes-all on the best mode, so the modes spread out; and a
cross-entropy of the logits against soft targets softmax(-ADE_m / tau), so a weight says how
close a mode tends to be. The central mode ends up the most likely one in most windows.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trajectory.exceptions import ModelError
from trajectory.models.base import (
    Prediction,
    TrajectoryModel,
    random_mirror,
    to_local,
    to_world,
    top_k_modes,
)


def _mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)] if dropout else [nn.GELU()]
    return nn.Sequential(*layers)


class NeighbourAttention(nn.Module):
    """Attention of the agent over its neighbours' relative tracks; NaN slots are masked."""

    def __init__(self, obs_len: int, hidden: int, heads: int) -> None:
        super().__init__()
        assert hidden % heads == 0, "hidden must be divisible by heads"
        self.heads = heads
        # per frame: position relative to the agent (2), own step (2), present flag (1)
        self.embed = _mlp([obs_len * 5, hidden, hidden])
        self.null = nn.Parameter(torch.zeros(1, 1, hidden))  # the "nobody" slot
        self.query = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(
        self, agent: torch.Tensor, obs_l: torch.Tensor, nbr_l: torch.Tensor
    ) -> torch.Tensor:
        """agent (B, H), obs_l (B, T, 2), nbr_l (B, M, T, 2) with NaN gaps -> (B, H)."""
        present = ~torch.isnan(nbr_l).any(-1)  # (B, M, T)
        nbr = torch.nan_to_num(nbr_l)  # (B, M, T, 2)
        rel = (nbr - obs_l[:, None]) * present[..., None]  # (B, M, T, 2)
        step = torch.diff(nbr, dim=2, prepend=nbr[:, :, :1])  # (B, M, T, 2)
        step_ok = present & torch.cat([present[:, :, :1], present[:, :, :-1]], 2)  # (B, M, T)
        step = step * step_ok[..., None]  # (B, M, T, 2)
        feats = torch.cat([rel, step, present[..., None].to(rel.dtype)], -1)  # (B, M, T, 5)
        emb = self.embed(feats.flatten(2))  # (B, M, H)
        b, m, h = emb.shape
        emb = torch.cat([self.null.expand(b, 1, h), emb], 1)  # (B, 1+M, H)
        valid = torch.cat([present.new_ones(b, 1), present.any(-1)], 1)  # (B, 1+M)

        d = h // self.heads
        q = self.query(agent).view(b, self.heads, 1, d)  # (B, nh, 1, d)
        k, v = self.kv(emb).view(b, 1 + m, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # (B,nh,1+M,d)
        mask = valid[:, None, None, :]  # (B, 1, 1, 1+M)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, 1, d)
        return self.out(att.reshape(b, h))  # (B, H)


class MixtureModel(TrajectoryModel):
    """M weighted future tracks per agent; forward returns the k most likely, best first."""

    name = "mixture"

    def __init__(
        self,
        obs_len: int = 8,
        pred_len: int = 12,
        modes: int = 20,
        hidden: int = 128,
        heads: int = 4,
        dropout: float = 0.0,
        central_weight: float = 1.0,
        flip_prob: float = 0.5,
        min_scale: float | None = 0.2,
        tau: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(obs_len=obs_len, pred_len=pred_len, **kwargs)
        if obs_len < 2 or modes < 1:
            raise ModelError("mixture needs obs_len >= 2 and modes >= 1")
        self.modes, self.hidden, self.heads, self.dropout = modes, hidden, heads, dropout
        self.central_weight, self.flip_prob, self.min_scale = central_weight, flip_prob, min_scale
        self.tau = tau
        self.agent_enc = _mlp([(obs_len - 1) * 2, hidden, hidden], dropout)
        self.social = NeighbourAttention(obs_len, hidden, heads)
        self.trunk = _mlp([2 * hidden, 2 * hidden, 2 * hidden], dropout)
        self.central = _mlp([2 * hidden, hidden, pred_len * 2])
        # the offsets' first layer on [ctx, mode embedding], split so ctx is projected once
        self.dec_ctx = nn.Linear(2 * hidden, hidden)
        self.dec_mode = nn.Parameter(torch.randn(modes - 1, hidden) * 0.1)
        self.dec_out = _mlp([hidden, hidden, pred_len * 2])
        self.logit_head = nn.Linear(2 * hidden, modes)

    def model_args(self) -> dict[str, Any]:
        return super().model_args() | {
            "modes": self.modes,
            "hidden": self.hidden,
            "heads": self.heads,
            "dropout": self.dropout,
            "central_weight": self.central_weight,
            "flip_prob": self.flip_prob,
            "min_scale": self.min_scale,
            "tau": self.tau,
        }

    def _modes(
        self, obs_l: torch.Tensor, nbr_l: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Local-frame inputs -> all modes (B, M, T_pred, 2), their logits (B, M) and the
        context vector (B, 2H) they were decoded from."""
        steps = torch.diff(obs_l, dim=1)  # (B, T_obs-1, 2)
        if self.min_scale is None:
            scale = torch.ones_like(steps[:, 0, :1])  # (B, 1)
        else:
            scale = steps.norm(dim=-1).mean(-1, keepdim=True).clamp_min(self.min_scale)  # (B, 1)
        agent = self.agent_enc(steps.flatten(1) / scale)  # (B, H)
        social = self.social(agent, obs_l / scale[:, :, None], nbr_l / scale[:, :, None, None])
        ctx = self.trunk(torch.cat([agent, social], -1))  # (B, 2H)
        b = len(ctx)
        per_mode = F.gelu(self.dec_ctx(ctx)[:, None] + self.dec_mode)  # (B, M-1, H)
        offset = self.dec_out(per_mode).view(b, self.modes - 1, self.pred_len, 2)  # (B,M-1,T,2)
        central = self.central(ctx).view(b, 1, self.pred_len, 2)  # (B, 1, T, 2)
        offset = torch.cat([central, central + offset], 1) * scale[:, :, None, None]  # (B,M,T,2)
        t = torch.arange(1, self.pred_len + 1, dtype=obs_l.dtype, device=obs_l.device)  # (T,)
        cv = t[:, None] * steps[:, -1][:, None, None]  # (B, 1, T, 2)
        return cv + offset, self.logit_head(ctx), ctx  # (B, M, T, 2), (B, M), (B, 2H)

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        """Top-k modes by weight, renormalised (see `top_k_modes`)."""
        self.check_input(obs, nbr)
        obs_l, nbr_l, origin, rot = to_local(obs, nbr)
        traj_l, logits, _ = self._modes(obs_l, nbr_l)  # (B, M, T, 2), (B, M)
        traj_l, weights = top_k_modes(traj_l, torch.softmax(logits.float(), -1), k)
        traj = to_world(traj_l.to(obs.dtype), origin, rot)  # (B, K, T, 2)
        return Prediction(traj=traj, weights=weights.to(obs.dtype))

    def loss(self, obs: torch.Tensor, nbr: torch.Tensor, fut: torch.Tensor) -> torch.Tensor:
        """WTA mean-L2 of the best mode + soft-target cross-entropy + mean-L2 of mode 0."""
        return self._loss(obs, nbr, fut)[0]

    def _loss(
        self, obs: torch.Tensor, nbr: torch.Tensor, fut: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> the loss, the errors of every mode (B, M, T) and the context (B, 2H)."""
        self.check_input(obs, nbr)
        obs_l, nbr_l, origin, rot = to_local(obs, nbr)
        fut_l = (fut - origin[:, None]) @ rot.transpose(1, 2)  # (B, T_pred, 2)
        if self.training and self.flip_prob > 0:
            obs_l, nbr_l, fut_l = random_mirror(self.flip_prob, obs_l, nbr_l, fut_l)
        traj_l, logits, ctx = self._modes(obs_l, nbr_l)  # (B, M, T, 2), (B, M), (B, 2H)
        err = (traj_l.float() - fut_l[:, None].float()).norm(dim=-1)  # (B, M, T)
        ade = err.mean(-1)  # (B, M)
        best = ade.argmin(-1)  # (B,)
        rows = torch.arange(len(obs), device=obs.device)
        wta = ade[rows, best].mean()
        target = torch.softmax(-ade.detach() / self.tau, -1)  # (B, M)
        ce = F.cross_entropy(logits.float(), target)
        return wta + ce + self.central_weight * ade[:, 0].mean(), err, ctx
