"""Request -> model inputs: padding, trimming, and the shared make_windows over a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.inference import CanonicalRequest, batch_windows, canonicalize, full_track
from serving.schemas import PredictRequest
from trajectory.data.windows import WindowSpec, make_windows

SPEC = WindowSpec(obs_len=4, pred_len=3, neighbour_radius=2.0, max_neighbours=2)


def request(agents: list[dict[str, object]], **extra: object) -> CanonicalRequest:
    return canonicalize(PredictRequest.model_validate({"agents": agents, **extra}), 3)


def test_short_track_is_padded_back_at_constant_velocity_and_long_one_trimmed() -> None:
    short = np.array([[1.0, 1.0], [1.5, 1.25]])
    np.testing.assert_allclose(
        full_track(short, 4), [[0.0, 0.5], [0.5, 0.75], [1.0, 1.0], [1.5, 1.25]]
    )
    long = np.arange(12, dtype=float).reshape(6, 2)
    np.testing.assert_array_equal(full_track(long, 4), long[-4:])


def test_windows_match_make_windows_on_the_same_tracks() -> None:
    agents = [
        {"agent_id": 7, "points": [[0, 0], [1, 0], [2, 0], [3, 0]]},
        {"agent_id": 3, "points": [[0, 1], [1, 1], [2, 1], [3, 1.5]]},
        {"agent_id": 9, "points": [[0, 9], [1, 9], [2, 9], [3, 9]]},  # beyond the radius
    ]
    (obs, nbr), = batch_windows([request(agents, frame=30, frame_step=10)], SPEC)
    rows = [("s", 30 - 10 * (3 - i), a["agent_id"], *p) for a in agents
            for i, p in enumerate(a["points"])]  # type: ignore[arg-type]
    ref = make_windows(pd.DataFrame(rows, columns=["scene", "frame", "agent_id", "x", "y"]),
                       SPEC, with_future=False)
    order = [list(ref.agent_id).index(a["agent_id"]) for a in agents]
    np.testing.assert_array_equal(obs, ref.obs[order])
    np.testing.assert_array_equal(nbr, ref.nbr[order])
    assert not np.isnan(nbr[0, 0]).any() and np.isnan(nbr[2]).all()


def test_requests_in_one_batch_never_see_each_other() -> None:
    one = request([{"agent_id": 1, "points": [[0, 0], [1, 0], [2, 0], [3, 0]]}])
    two = request([{"agent_id": 1, "points": [[0, 0.5], [1, 0.5], [2, 0.5], [3, 0.5]]}])
    alone = [batch_windows([r], SPEC)[0] for r in (one, two)]
    together = batch_windows([one, two, one], SPEC)
    for (o1, n1), (o2, n2) in zip(alone + alone[:1], together, strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(n1, n2)
    assert np.isnan(together[1][1]).all()  # same place and frame, other request: no neighbour


def test_padded_points_are_hidden_from_neighbours() -> None:
    agents = [
        {"agent_id": 1, "points": [[0, 0], [1, 0], [2, 0], [3, 0]]},
        {"agent_id": 2, "points": [[2, 1], [3, 1]]},  # seen for two frames only
    ]
    (obs, nbr), = batch_windows([request(agents)], SPEC)
    np.testing.assert_allclose(obs[1], [[0, 1], [1, 1], [2, 1], [3, 1]])  # padded itself
    assert np.isnan(nbr[0, 0, :2]).all()  # agent 1 does not see agent 2's made-up past
    np.testing.assert_allclose(nbr[0, 0, 2:], [[2, 1], [3, 1]])
    np.testing.assert_allclose(nbr[1, 0], obs[0])  # agent 2 sees all of agent 1


def test_agents_at_other_frames_and_misaligned_requests() -> None:
    agents = [
        {"agent_id": 1, "points": [[0, 0], [1, 0], [2, 0], [3, 0]], "last_frame": 3},
        {"agent_id": 2, "points": [[0, 1], [1, 1], [2, 1], [3, 1]], "last_frame": 103},
    ]
    (_, nbr), = batch_windows([request(agents)], SPEC)
    assert np.isnan(nbr).all()  # never at the same frame: no neighbours
    odd = [{**agents[0], "last_frame": 3}, {**agents[1], "last_frame": 4}]
    (obs, nbr), = batch_windows([request(odd, frame_step=2)], SPEC)  # alone, own frame units
    assert obs.shape == (2, 4, 2) and np.isnan(nbr).all()


def test_huge_agent_ids_and_canonical_key() -> None:
    big = request([{"agent_id": 2**62, "points": [[0, 0], [1, 0]]},
                   {"agent_id": -(2**62), "points": [[0, 1], [1, 1]]}])
    (obs, _), = batch_windows([big], SPEC)
    assert obs.shape == (2, 4, 2)
    a = request([{"agent_id": 1, "points": [[0.00049, 0], [1, 0]]}])
    b = request([{"agent_id": 1, "points": [[0.0001, 0], [1, 0]]}])
    c = request([{"agent_id": 1, "points": [[0.0001, 0], [1, 0]]}], k=2)
    assert a.key_bytes() == b.key_bytes() != c.key_bytes()  # rounded to 3 decimals; K counts


def test_engine_central_track_is_the_calibrated_models_k1_answer() -> None:
    import torch

    from serving.engine import Engine, build_engine, check_windows
    from trajectory.models import build_model

    torch.manual_seed(0)
    model = build_model("calibrated", obs_len=8, pred_len=12, hidden=32, modes=5).eval()
    obs, nbr = check_windows(model, n=300)
    fast = build_engine(model)
    assert fast.kind == "central"
    got, weights = fast.predict(obs, nbr, 1, batch_size=128)
    ref, ref_weights = Engine(model, "eager", False).predict(obs, nbr, 1)
    # float32 sums may round differently with another batch size: equal to 1e-5 m, not bitwise
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(weights, ref_weights)
    three, _ = fast.predict(obs, nbr, 3)  # K > 1: the model as it is
    np.testing.assert_allclose(three[:, :1], ref, rtol=0, atol=1e-5)


def test_int8_engine_is_kept_only_within_the_tolerance(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    from serving import engine
    from trajectory.models import build_model

    torch.manual_seed(0)
    model = build_model("calibrated", obs_len=8, pred_len=12, hidden=32, modes=5).eval()
    monkeypatch.setattr(engine, "TOLERANCE_M", 0.0)
    assert engine.build_engine(model, quantize=True).kind == "central"
    monkeypatch.setattr(engine, "TOLERANCE_M", float("inf"))
    quantized = engine.build_engine(model, quantize=True)
    assert quantized.kind == "int8" and quantized.model is not model
    assert engine.engine_for(model) is engine.engine_for(model)  # built once per model
