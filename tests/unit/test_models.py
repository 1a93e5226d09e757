"""Behavioural tests of the models on tiny in-memory data: shapes, weights, NaN neighbours,
equivariance, Constant Velocity exactness, that the learned models can learn, and that the
calibrated model's temperature fit does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from trajectory.exceptions import ModelError
from trajectory.models import build_model, model_names
from trajectory.models.base import TrajectoryModel, to_local, to_world
from trajectory.models.calibrated import CalibratedMixture
from trajectory.models.mixture import MixtureModel

T_OBS, T_PRED, M_NBR = 8, 12, 4
SMALL = {"modes": 20, "hidden": 16, "heads": 2}
LEARNED = ["mixture", "calibrated"]


def _tracks(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Curving walkers with neighbours; slot 3 is always empty, slot 2 misses early frames."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T_OBS + T_PRED, dtype=torch.float32)  # (T,)
    heading = torch.rand(b, 1, generator=g) * 2 * math.pi  # (B, 1)
    turn = (torch.rand(b, 1, generator=g) - 0.5) * 0.1  # (B, 1)
    speed = 0.3 + 0.3 * torch.rand(b, 1, generator=g)  # (B, 1)
    ang = heading + turn * t  # (B, T)
    steps = speed[..., None] * torch.stack([ang.cos(), ang.sin()], -1)  # (B, T, 2)
    start = torch.randn(b, 1, 2, generator=g) * 5  # (B, 1, 2)
    pos = start + steps.cumsum(1)  # (B, T, 2)
    obs, fut = pos[:, :T_OBS], pos[:, T_OBS:]
    nbr = obs[:, None] + torch.randn(b, M_NBR, 1, 2, generator=g) * 2  # (B, M, T_obs, 2)
    nbr[:, 3] = float("nan")
    nbr[:, 2, :3] = float("nan")
    return obs, nbr, fut


@pytest.fixture(params=LEARNED)
def learned(request: pytest.FixtureRequest) -> TrajectoryModel:
    torch.manual_seed(0)
    return build_model(request.param, **SMALL).eval()


@pytest.fixture
def mixture() -> MixtureModel:
    torch.manual_seed(0)
    return MixtureModel(**SMALL).eval()


def test_registry_has_builtin_models() -> None:
    assert {"cv", "mixture", "calibrated"} <= set(model_names())
    with pytest.raises(ModelError):
        build_model("no-such-model")


@pytest.mark.parametrize("k", [1, 5, 20, 25])
def test_shapes_and_sorted_weights(learned: TrajectoryModel, k: int) -> None:
    obs, nbr, _ = _tracks(6)
    out = learned(obs, nbr, k)
    assert out.traj.shape == (6, k, T_PRED, 2)
    assert out.weights.shape == (6, k)
    assert torch.isfinite(out.traj).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(6))
    assert (out.weights >= 0).all()
    assert (out.weights[:, :-1] >= out.weights[:, 1:]).all(), "weights must be sorted"


def test_k1_is_the_most_likely_mode(mixture: MixtureModel) -> None:
    obs, nbr, _ = _tracks(5)
    top1, all20 = mixture(obs, nbr, 1), mixture(obs, nbr, 20)
    torch.testing.assert_close(top1.traj[:, 0], all20.traj[:, 0])
    torch.testing.assert_close(top1.weights, torch.ones(5, 1))


def test_calibrated_k1_is_the_central_track_whatever_the_weights() -> None:
    torch.manual_seed(0)
    model = CalibratedMixture(**SMALL).eval()
    with torch.no_grad():
        model.weight_head[-1].bias[5] = 100.0  # mode 5 gets all the weight
    obs, nbr, _ = _tracks(5)
    obs_l, nbr_l, origin, rot = to_local(obs, nbr)
    modes = to_world(model._modes(obs_l, nbr_l)[0], origin, rot)  # (B, M, T, 2)
    top1, top3 = model(obs, nbr, 1), model(obs, nbr, 3)
    torch.testing.assert_close(top1.traj[:, 0], modes[:, 0])
    torch.testing.assert_close(top1.weights, torch.ones(5, 1))
    torch.testing.assert_close(top3.traj[:, 0], modes[:, 5])


def test_more_samples_than_modes_repeats_modes(learned: TrajectoryModel) -> None:
    obs, nbr, _ = _tracks(3)
    out = learned(obs, nbr, 45)  # 20 modes: each mode 2 or 3 times
    distinct = torch.unique(out.traj[0].reshape(45, -1), dim=0)
    assert len(distinct) == 20


def test_empty_neighbour_slots_change_nothing(learned: TrajectoryModel) -> None:
    obs, nbr, _ = _tracks(4)
    more = torch.cat([nbr, torch.full_like(nbr, float("nan"))], 1)  # (B, 2M, T, 2)
    none = torch.full_like(nbr, float("nan"))
    base = learned(obs, nbr, 20).traj
    torch.testing.assert_close(learned(obs, more, 20).traj, base)
    assert torch.isfinite(learned(obs, none, 20).traj).all()
    assert torch.isfinite(learned.loss(obs, none, _tracks(4)[2]))


@pytest.mark.parametrize("name", ["cv", *LEARNED])
def test_rotation_translation_equivariance(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **(SMALL if name in LEARNED else {})).eval()
    obs, nbr, _ = _tracks(5)
    a = 0.7
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # row vectors
    shift = torch.tensor([12.0, -3.0])
    moved = model(obs @ rot + shift, nbr @ rot + shift, 20)
    base = model(obs, nbr, 20)
    torch.testing.assert_close(moved.traj, base.traj @ rot + shift, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(moved.weights, base.weights, atol=1e-5, rtol=1e-5)


def test_constant_velocity_is_exact_on_a_straight_line() -> None:
    t = torch.arange(T_OBS + T_PRED, dtype=torch.float32)[:, None]  # (T, 1)
    line = torch.tensor([1.0, 2.0]) + t * torch.tensor([0.3, -0.4])  # (T, 2)
    obs, fut = line[None, :T_OBS], line[None, T_OBS:]
    nbr = torch.full((1, 2, T_OBS, 2), float("nan"))
    out = build_model("cv")(obs, nbr, 3)
    assert out.traj.shape == (1, 3, T_PRED, 2)
    torch.testing.assert_close(out.traj[0, 0], fut[0])
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(1))


def test_bad_input_shapes_raise(learned: TrajectoryModel) -> None:
    obs, nbr, _ = _tracks(2)
    with pytest.raises(ModelError):
        learned(obs[:, :5], nbr, 1)
    with pytest.raises(ModelError):
        learned(obs, nbr[:1], 1)
    with pytest.raises(ModelError):
        learned(obs, nbr, 0)


def test_model_args_rebuild_the_model(learned: TrajectoryModel) -> None:
    if isinstance(learned, CalibratedMixture):
        learned.log_temperature.fill_(0.4)  # a fitted buffer travels with the weights
    clone = build_model(learned.name, **learned.model_args())
    clone.load_state_dict(learned.state_dict())
    obs, nbr, _ = _tracks(3)
    a, b = clone.eval()(obs, nbr, 20), learned(obs, nbr, 20)
    torch.testing.assert_close(a.traj, b.traj)
    torch.testing.assert_close(a.weights, b.weights)


def test_calibration_fits_a_temperature_that_lowers_the_cross_entropy() -> None:
    torch.manual_seed(0)
    model = CalibratedMixture(**SMALL).eval()
    with torch.no_grad():
        model.weight_head[-1].weight.mul_(200.0)  # wildly over-confident weights
    obs, nbr, fut = _tracks(256)
    fitted = model.calibrate(obs, nbr, fut)
    assert fitted["ce_after"] < fitted["ce_before"]
    assert fitted["temperature"] > 1.0, "over-confident logits need softening"
    assert math.isclose(model.log_temperature.exp().item(), fitted["temperature"], rel_tol=1e-5)
    assert not model.training


@pytest.mark.parametrize("name", LEARNED)
def test_loss_decreases_on_a_tiny_set(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **SMALL)
    obs, nbr, fut = _tracks(64)

    def k1_ade() -> float:
        with torch.no_grad():
            return (model.eval()(obs, nbr, 1).traj[:, 0] - fut).norm(dim=-1).mean().item()

    before = k1_ade()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(160):
        loss = model.train().loss(obs, nbr, fut)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert k1_ade() < 0.8 * before
