"""Pure logic of the tracking package: promotion rule, URIs, params, JSON-safe inputs, plots."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from trajectory import plots
from trajectory.config import Settings
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import DataError, ModelError
from trajectory.models import build_model
from trajectory.tracking import decide_promotion, parse_model_uri, serving_payload
from trajectory.tracking.client import is_server_uri
from trajectory.tracking.pyfunc import (
    NBR_MISSING,
    TrajectoryPyfunc,
    decode_nbr,
    encode_nbr,
    input_example,
    model_input,
    model_signature,
)
from trajectory.tracking.registry import ModelRef, spec_from_meta
from trajectory.tracking.runs import epoch_metrics, final_metrics, flatten


@pytest.mark.parametrize(
    ("challenger", "champion", "threshold", "promoted", "words"),
    [
        (0.5, None, 0.0, True, "no champion"),
        (0.5, 0.6, 0.0, True, "better"),
        (0.5, 0.6, 0.05, True, "better"),
        (0.5, 0.6, 0.2, False, "not better enough"),
        (0.6, 0.6, 0.0, False, "not better enough"),  # a tie keeps the champion
        (0.7, 0.6, 0.0, False, "not better enough"),
        (math.nan, 0.6, 0.0, False, "not a finite number"),
        (math.nan, None, 0.0, False, "not a finite number"),
        (0.7, math.inf, 0.0, True, "better"),
    ],
)
def test_decide_promotion(
    challenger: float, champion: float | None, threshold: float, promoted: bool, words: str
) -> None:
    decision, reason = decide_promotion(challenger, champion, threshold)
    assert decision is promoted
    assert words in reason


def test_decide_promotion_reason_carries_the_numbers() -> None:
    _, reason = decide_promotion(0.4321, 0.5, 0.1)
    assert "0.4321" in reason and "0.5000" in reason and "0.1000" in reason


def test_decide_promotion_rejects_a_negative_threshold() -> None:
    with pytest.raises(ValueError, match="min_improvement"):
        decide_promotion(0.5, 0.6, -0.1)


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("models:/forecaster@champion", ModelRef(name="forecaster", alias="champion")),
        ("models:/forecaster/7", ModelRef(name="forecaster", version=7)),
        ("runs:/abc123", ModelRef(run_id="abc123")),
        ("runs:/abc123/model", ModelRef(run_id="abc123")),
    ],
)
def test_parse_model_uri(uri: str, ref: ModelRef) -> None:
    assert parse_model_uri(uri) == ref


@pytest.mark.parametrize("uri", ["models:/forecaster", "models:/f/Production", "s3://x", ""])
def test_parse_model_uri_rejects_others(uri: str) -> None:
    with pytest.raises(ModelError, match="unsupported model URI"):
        parse_model_uri(uri)


def test_server_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert is_server_uri("http://127.0.0.1:5000")
    assert not is_server_uri(Settings(work_dir="w").tracking_uri())


def test_flatten_nests_with_dots_and_cuts_long_values() -> None:
    flat = flatten({"config": {"lr": 0.01, "model_args": {"modes": 20}, "empty": {}},
                    "layers": [1, 2], "none": None, "long": "x" * 7000})
    assert flat["config.lr"] == "0.01" and flat["config.model_args.modes"] == "20"
    assert flat["config.empty"] == "{}" and flat["layers"] == "[1, 2]"
    assert flat["none"] == "None" and len(flat["long"]) == 6000


def test_epoch_metrics_keep_train_loss_and_prefix_the_rest() -> None:
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_ade": 0.5, "seconds": 2.0} for e in (1, 2)]
    metrics = epoch_metrics(history)
    assert {(m.key, m.step) for m in metrics} == {
        (key, step) for key in ("train_loss", "epoch_val_ade", "epoch_seconds") for step in (1, 2)
    }
    assert epoch_metrics([]) == []


def test_final_metrics_prefix_splits() -> None:
    out = final_metrics({"ade": 1.0, "min_ade": 0.5}, {"fde": 2.0}, seconds=3.0, best_epoch=4)
    assert out == {"val_ade": 1.0, "val_min_ade": 0.5, "test_fde": 2.0, "train_seconds": 3.0,
                   "best_epoch": 4.0}


def test_nbr_encoding_round_trips_and_is_strict_json() -> None:
    nbr = np.array([[[[1.0, 2.0], [np.nan, np.nan]]]], np.float32)  # (1, 1, 2, 2)
    encoded = encode_nbr(nbr)
    assert not np.isnan(encoded).any() and encoded[0, 0, 1, 0] == NBR_MISSING
    np.testing.assert_array_equal(decode_nbr(encoded), nbr)
    np.testing.assert_array_equal(decode_nbr(nbr), nbr)  # NaN is accepted as is
    obs = np.zeros((1, 2, 2), np.float32)
    body = serving_payload(obs, nbr, k=5)
    assert json.loads(json.dumps(body, allow_nan=False))["params"] == {"k": 5}


def test_model_input_gives_agents_without_neighbours_one_empty_slot() -> None:
    inputs = model_input(np.zeros((3, 8, 2)), np.zeros((3, 0, 8, 2)))
    assert inputs["nbr"].shape == (3, 1, 8, 2) and (inputs["nbr"] == NBR_MISSING).all()
    assert inputs["obs"].dtype == np.float32


def test_signature_and_example_follow_the_spec() -> None:
    spec = WindowSpec(obs_len=5, pred_len=7, max_neighbours=0)
    signature = model_signature(spec)
    shapes = {s.name: s.shape for s in signature.inputs.inputs}
    assert shapes == {"obs": (-1, 5, 2), "nbr": (-1, -1, 5, 2)}
    assert {s.name: s.shape for s in signature.outputs.inputs}["traj"] == (-1, -1, 7, 2)
    assert signature.params.params[0].name == "k" and signature.params.params[0].default == 1
    example = input_example(spec)
    assert example["obs"].shape == (1, 5, 2) and example["nbr"].shape == (1, 1, 5, 2)


def test_pyfunc_predicts_k_futures_from_sentinel_neighbours() -> None:
    wrapper = TrajectoryPyfunc()
    wrapper._model = build_model("cv", obs_len=3, pred_len=4)  # what load_context sets
    wrapper._device = torch.device("cpu")
    obs = np.array([[[0, 0], [1, 0], [2, 0]]], np.float32)  # (1, 3, 2)
    nbr = np.full((1, 2, 3, 2), NBR_MISSING, np.float32)
    out = wrapper.predict(None, {"obs": obs, "nbr": nbr}, params={"k": 2})
    assert out["traj"].shape == (1, 2, 4, 2) and out["weights"].shape == (1, 2)
    np.testing.assert_allclose(out["traj"][0, 0, :, 0], [3, 4, 5, 6])
    with pytest.raises(ModelError, match="obs"):
        wrapper.predict(None, {"obs": obs}, params=None)
    with pytest.raises(ModelError, match="k must be"):
        wrapper.predict(None, {"obs": obs, "nbr": nbr}, params={"k": 0})


def test_spec_from_meta_falls_back_to_the_model() -> None:
    model = build_model("cv", obs_len=6, pred_len=9)
    assert spec_from_meta({}, model) == WindowSpec(obs_len=6, pred_len=9)
    meta = {"window_spec": {"obs_len": 6, "pred_len": 9, "max_neighbours": 3, "other": 1}}
    assert spec_from_meta(meta, model) == WindowSpec(obs_len=6, pred_len=9, max_neighbours=3)


def test_sample_figure_renders_png() -> None:
    rng = np.random.default_rng(0)
    obs, fut = rng.normal(size=(4, 8, 2)), rng.normal(size=(4, 12, 2))
    traj, weights = rng.normal(size=(4, 3, 12, 2)), np.full((4, 3), 1 / 3)
    nbr = np.full((4, 2, 8, 2), np.nan)
    nbr[:, 0] = obs + 1
    buf = io.BytesIO()
    plots.sample_figure(obs, fut, traj, weights, nbr, title="t").savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError):
        plots.sample_figure(obs, fut[:2], traj)


def test_history_figure_renders_png() -> None:
    history = [{"epoch": e, "train_loss": 1 / e, "val_ade": 0.5, "val_fde": 1.0} for e in (1, 2)]
    buf = io.BytesIO()
    plots.history_figure(history).savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(DataError):
        plots.history_figure([])
