"""`cv-grid`: 20 constant-velocity rollouts on a speed x heading grid, equal weights; k=1 is
plain Constant Velocity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trajectory.data.windows import Windows
from trajectory.exceptions import ModelError
from trajectory.models import build_model, model_names
from trajectory.models.constant_velocity import ConstantVelocityGrid
from trajectory.training.evaluate import score_model

SPEEDS = {0.6, 0.87, 1.13, 1.4}
ANGLES = {-30.0, -15.0, 0.0, 15.0, 30.0}


def _inputs(b: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Walkers with different headings and speeds; neighbour slots full of NaN."""
    g = torch.Generator().manual_seed(0)
    heading = torch.rand(b, generator=g) * 2 * math.pi  # (B,)
    step = (0.2 + torch.rand(b, generator=g))[:, None] * torch.stack(
        [heading.cos(), heading.sin()], -1
    )  # (B, 2)
    obs = torch.randn(b, 1, 2, generator=g) + torch.arange(8.0)[None, :, None] * step[:, None]
    return obs, torch.full((b, 2, 8, 2), float("nan"))  # (B, 8, 2), (B, M, 8, 2)


def test_cv_grid_is_a_registered_untrained_model() -> None:
    assert "cv-grid" in model_names()
    model = build_model("cv-grid")
    assert isinstance(model, ConstantVelocityGrid) and not model.trainable
    obs, nbr = _inputs()
    with pytest.raises(ModelError):
        model.loss(obs, nbr, torch.zeros(3, 12, 2))
    with pytest.raises(ModelError, match="k must be"):
        model(obs, nbr, 0)


@pytest.mark.parametrize("k", [1, 5, 20, 25])
def test_shapes_and_equal_weights(k: int) -> None:
    obs, nbr = _inputs()
    out = build_model("cv-grid", pred_len=7)(obs, nbr, k)
    assert out.traj.shape == (3, k, 7, 2) and out.weights.shape == (3, k)
    assert torch.isfinite(out.traj).all()
    assert torch.allclose(out.weights, torch.full((3, k), 1.0 / k))
    assert torch.allclose(out.weights.sum(-1), torch.ones(3))


def test_k1_is_plain_constant_velocity() -> None:
    obs, nbr = _inputs()
    grid = build_model("cv-grid")(obs, nbr, 1).traj
    cv = build_model("cv")(obs, nbr, 1).traj
    assert torch.allclose(grid, cv)


def test_the_20_rollouts_are_the_speed_and_heading_grid() -> None:
    obs, nbr = _inputs()
    traj = build_model("cv-grid")(obs, nbr, 20).traj.double()  # (B, 20, T, 2)
    step = (obs[:, -1] - obs[:, -2]).double()  # (B, 2)
    steps = traj[:, :, 0] - obs[:, None, -1].double()  # (B, 20, 2): the first predicted step
    # every rollout is a straight line at a constant step
    t = torch.arange(1, 13, dtype=torch.float64)
    assert torch.allclose(traj, obs[:, None, -1:].double() + t[None, None, :, None] * steps[:, :, None],
                          atol=1e-4)
    speed = steps.norm(dim=-1) / step.norm(dim=-1, keepdim=True)  # (B, 20)
    cross = step[:, None, 0] * steps[..., 1] - step[:, None, 1] * steps[..., 0]
    dot = (step[:, None] * steps).sum(-1)
    angle = torch.rad2deg(torch.atan2(cross, dot))  # (B, 20), counter-clockwise positive
    for b in range(3):
        pairs = {(round(s, 2), round(a, 1)) for s, a in zip(speed[b].tolist(), angle[b].tolist(),
                                                            strict=True)}
        assert pairs == {(s, a) for s in SPEEDS for a in ANGLES}
    # most central first: straight ahead at speed 0.87
    assert speed[:, 0].tolist() == pytest.approx([0.87] * 3, abs=1e-4)
    assert angle[:, 0].abs().max() < 1e-3


def test_the_grid_turns_with_the_walker() -> None:
    obs, nbr = _inputs()
    rot = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # 90 degrees, row-vector convention
    model = build_model("cv-grid")
    turned = model(obs @ rot, nbr, 20).traj
    assert torch.allclose(turned, model(obs, nbr, 20).traj @ rot, atol=1e-4)


def test_best_of_20_beats_k1_on_walkers_that_slow_down() -> None:
    # observed at 1 m per frame, then 0.8 m per frame: the 0.87 rollout is near, plain CV is not
    t_obs, t_pred = np.arange(8.0), 7.0 + 0.8 * np.arange(1.0, 13.0)
    x = np.concatenate([t_obs, t_pred]).astype(np.float32)
    pos = np.stack([x, np.zeros_like(x)], -1)[None].repeat(4, 0)  # (4, 20, 2)
    windows = Windows(
        obs=pos[:, :8], nbr=np.full((4, 1, 8, 2), np.nan, np.float32),
        scene=np.full(4, "s", object), agent_id=np.arange(4), start_frame=np.zeros(4, int),
        fut=pos[:, 8:],
    )
    m = score_model(build_model("cv-grid"), windows)["metrics"]
    assert m["fde"] == pytest.approx(12 * 0.2, abs=1e-4)  # K=1 is plain CV
    assert m["min_fde_20"] == pytest.approx(12 * 0.07, abs=1e-4)  # speed 0.87
    assert m["brier_min_fde_20"] == pytest.approx(12 * 0.07 + 0.95**2, abs=1e-4)
