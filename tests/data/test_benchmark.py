"""ETH/UCY: the protocol reproduces the published Constant Velocity numbers, window counts
match, the benchmark JSON merges per model, and a short CPU training run learns something."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trajectory.bench import SCENES, read_split, run_eth_ucy, scene_windows
from trajectory.data.windows import WindowSpec, make_windows
from trajectory.exceptions import ConfigError
from trajectory.models import build_model
from trajectory.training import TrainConfig, evaluate, train

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "eth_ucy"

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"ETH/UCY copy not found at {DATA}"),
]

# Schöller et al. 2020, reproduced on this copy (see the data README)
CV_PUBLISHED = {
    "eth": (1.08, 2.28),
    "hotel": (0.32, 0.61),
    "univ": (0.52, 1.17),
    "zara1": (0.43, 0.95),
    "zara2": (0.32, 0.72),
}
TEST_WINDOWS = {"eth": 364, "hotel": 1197, "univ": 24334, "zara1": 2356, "zara2": 5910}


@pytest.fixture(scope="module")
def test_windows() -> dict[str, object]:
    spec = WindowSpec(obs_len=8, pred_len=12, stride=1)
    return {s: make_windows(read_split(DATA, s, "test"), spec) for s in SCENES}


def test_test_window_counts(test_windows: dict) -> None:
    assert {s: len(w) for s, w in test_windows.items()} == TEST_WINDOWS


def test_constant_velocity_reproduces_published_numbers(test_windows: dict) -> None:
    cv = build_model("cv")
    got = {s: evaluate(cv, w, k=1) for s, w in test_windows.items()}
    for scene, (ade, fde) in CV_PUBLISHED.items():
        assert got[scene]["ade"] == pytest.approx(ade, abs=0.02), scene
        assert got[scene]["fde"] == pytest.approx(fde, abs=0.02), scene
    assert np.mean([g["ade"] for g in got.values()]) == pytest.approx(0.53, abs=0.02)
    assert np.mean([g["fde"] for g in got.values()]) == pytest.approx(1.15, abs=0.02)


def test_benchmark_json_merges_per_model(tmp_path: Path) -> None:
    out = tmp_path / "eth_ucy.json"
    out.write_text(json.dumps({"models": {"mixture": {"k1": {"avg": [0.4, 0.8]}}}}))
    result = run_eth_ucy(DATA, ["cv"], out, progress=False)
    saved = json.loads(out.read_text())
    assert saved == result
    assert saved["models"]["mixture"] == {"k1": {"avg": [0.4, 0.8]}}
    cv = saved["models"]["cv"]
    assert cv["train_seconds"] == 0
    assert set(cv["k1"]) == {*SCENES, "avg"}
    assert cv["k1"]["avg"][0] == pytest.approx(0.53, abs=0.02)
    # one distinct track per window, weight 1, always the closest: all in the top bin
    top = cv["reliability"][-1]
    assert top["count"] == sum(TEST_WINDOWS.values()) and top["closest_rate"] == 1.0
    assert sum(row["count"] for row in cv["reliability"]) == top["count"]
    assert saved["protocol"]["obs_len"] == 8 and saved["protocol"]["pred_len"] == 12
    assert saved["hardware"] and saved["date"]


@pytest.mark.slow
def test_short_cpu_training_learns(tmp_path: Path) -> None:
    fold = scene_windows(DATA, "zara1")
    rng = np.random.default_rng(0)
    train_w = fold["train"].take(rng.choice(len(fold["train"]), 3000, replace=False))
    val_w = fold["val"].take(rng.choice(len(fold["val"]), 1000, replace=False))
    config = TrainConfig(
        epochs=2, batch_size=128, device="cpu", num_threads=1, model_args={"hidden": 32}
    )
    res = train(train_w, val_w, config, tmp_path, progress=False)
    assert all(np.isfinite(row["train_loss"]) for row in res.history)
    scores = evaluate(res.model, fold["test"], k=20)
    standing = float(np.linalg.norm(fold["test"].fut - fold["test"].obs[:, -1:], axis=-1).mean())
    assert scores["ade"] < 0.5 * standing, "K=1 must beat standing still by far"
    assert scores["min_ade"] < scores["ade"]


def test_parallel_folds_and_a_label_keep_the_same_scores(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    serial = run_eth_ucy(DATA, ["cv"], one, progress=False, scenes=["hotel", "zara1"])
    parallel = run_eth_ucy(DATA, ["cv"], two, progress=False, scenes=["hotel", "zara1"],
                           jobs=2, label="cv-again")
    assert "cv" not in parallel["models"]
    assert parallel["models"]["cv-again"]["model"] == "cv"
    assert parallel["models"]["cv-again"]["k1"] == serial["models"]["cv"]["k1"]
    with pytest.raises(ConfigError):
        run_eth_ucy(DATA, ["cv", "cv-grid"], two, progress=False, label="both")
