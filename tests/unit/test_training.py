"""Training, evaluation and checkpoints on tiny in-memory windows (no files but tmp_path)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trajectory.data.windows import Windows
from trajectory.exceptions import ConfigError, DataError, ModelError
from trajectory.models import build_model, predict
from trajectory.training import TrainConfig, evaluate, load_checkpoint, save_checkpoint, train
from trajectory.training.loop import lr_factor, resolve_device

T_OBS, T_PRED = 8, 12
SMALL = {"modes": 20, "hidden": 16, "heads": 2}


def _windows(n: int, seed: int) -> Windows:
    """Walkers on gentle curves, two neighbour slots (the second empty)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T_OBS + T_PRED)
    ang = rng.uniform(0, 2 * np.pi, (n, 1)) + rng.uniform(-0.05, 0.05, (n, 1)) * t  # (N, T)
    steps = rng.uniform(0.3, 0.6, (n, 1, 1)) * np.stack([np.cos(ang), np.sin(ang)], -1)
    pos = (rng.normal(0, 5, (n, 1, 2)) + steps.cumsum(1)).astype(np.float32)  # (N, T, 2)
    nbr = np.full((n, 2, T_OBS, 2), np.nan, np.float32)
    nbr[:, 0] = pos[:, :T_OBS] + rng.normal(0, 2, (n, 1, 2))
    return Windows(
        obs=pos[:, :T_OBS],
        nbr=nbr,
        scene=np.full(n, "synthetic", object),
        agent_id=np.arange(n),
        start_frame=np.zeros(n, np.int64),
        fut=pos[:, T_OBS:],
    )


def _config(**overrides: object) -> TrainConfig:
    base = {
        "model_args": SMALL,
        "epochs": 2,
        "batch_size": 32,
        "device": "cpu",
        "num_threads": 1,
        "seed": 3,
    }
    return TrainConfig(**(base | overrides))  # type: ignore[arg-type]


def test_train_returns_best_model_and_history(tmp_path: Path) -> None:
    seen: list[dict[str, float]] = []
    res = train(
        _windows(128, 0), _windows(32, 1), _config(), tmp_path, on_epoch=seen.append, progress=False
    )
    assert [row["epoch"] for row in res.history] == [1, 2]
    assert seen == res.history
    assert set(res.history[0]) == {
        "epoch",
        "train_loss",
        "val_ade",
        "val_fde",
        "val_min_ade",
        "val_min_fde",
        "seconds",
    }
    assert all(math.isfinite(row["train_loss"]) for row in res.history)
    best = min(res.history, key=lambda row: row["val_ade"])
    assert res.best_epoch == best["epoch"]
    assert res.device == "cpu" and res.checkpoint.exists()
    assert not res.model.training


def test_seeded_training_is_reproducible(tmp_path: Path) -> None:
    data = _windows(96, 0), _windows(32, 1)
    a = train(*data, _config(), tmp_path / "a", progress=False)
    b = train(*data, _config(), tmp_path / "b", progress=False)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_checkpoint_round_trip_predicts_the_same(tmp_path: Path) -> None:
    res = train(
        _windows(64, 0),
        _windows(16, 1),
        _config(epochs=1),
        tmp_path,
        progress=False,
        meta={"data_version": "abc"},
    )
    model, meta = load_checkpoint(res.checkpoint)
    val = _windows(16, 2)
    before = predict(res.model, val.obs, val.nbr, k=20)
    after = predict(model, val.obs, val.nbr, k=20)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert meta["data_version"] == "abc"
    assert meta["train_config"]["model_args"] == SMALL
    assert meta["window_spec"]["obs_len"] == T_OBS
    assert model.model_args() == res.model.model_args()

    again = save_checkpoint(tmp_path / "copy.pt", model, meta)
    assert load_checkpoint(again)[1] == meta


def test_untrainable_model_returns_at_once(tmp_path: Path) -> None:
    res = train(
        _windows(32, 0),
        _windows(8, 1),
        _config(model="cv", model_args={}),
        tmp_path,
        progress=False,
    )
    assert res.history == [] and res.best_epoch == 0
    model, _ = load_checkpoint(res.checkpoint)
    assert model.name == "cv"


def test_evaluate_reports_k1_and_best_of_k() -> None:
    val = _windows(20, 0)
    torch.manual_seed(0)
    scores = evaluate(build_model("mixture", **SMALL), val, k=20)
    assert scores["min_ade"] <= scores["ade"] and scores["min_fde"] <= scores["fde"]
    cv = evaluate(build_model("cv"), val, k=1)
    assert cv["ade"] == cv["min_ade"] and cv["n"] == 20


def test_errors_are_project_errors(tmp_path: Path) -> None:
    val = _windows(8, 0)
    no_future = Windows(val.obs, val.nbr, val.scene, val.agent_id, val.start_frame)
    with pytest.raises(DataError):
        train(no_future, val, _config(), tmp_path, progress=False)
    with pytest.raises(ConfigError):
        TrainConfig(epochs=-1)
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            resolve_device("cuda")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "bad.pt")


def test_lr_schedule_warms_up_then_decays() -> None:
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.05)
    assert lr_factor(50, 100, 10) > lr_factor(80, 100, 10)


def test_the_training_configuration_file_loads_with_overrides(tmp_path: Path) -> None:
    shipped = TrainConfig.load()
    assert shipped.model and shipped.epochs >= 1  # the one configuration in the repo loads
    assert TrainConfig.load(epochs=3, seed=7).epochs == 3
    path = tmp_path / "config.json"
    path.write_text('{"model": "cv", "epochs": 5, "provenance": {"study": "s", "trials": 4}}')
    assert TrainConfig.load(path) == TrainConfig(model="cv", epochs=5)
    assert TrainConfig.provenance(path) == {"study": "s", "trials": 4}
    with pytest.raises(ConfigError, match="no_such_field"):
        TrainConfig.load(path, no_such_field=1)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        TrainConfig.load(path)


def test_calibrating_models_record_what_they_fitted(tmp_path: Path) -> None:
    res = train(_windows(128, 0), _windows(64, 1), _config(model="calibrated"), tmp_path,
                progress=False)
    assert res.calibration["temperature"] > 0
    assert res.calibration["ce_after"] <= res.calibration["ce_before"] + 1e-6
    _, meta = load_checkpoint(res.checkpoint)
    assert meta["calibration"] == res.calibration
    mixture = train(_windows(64, 0), _windows(32, 1), _config(), tmp_path / "m", progress=False)
    assert mixture.calibration == {}
