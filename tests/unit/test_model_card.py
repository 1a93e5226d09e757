"""Model card rendering from plain dicts: what the run says, what the benchmark says, caveats."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trajectory import fairness
from trajectory.exceptions import InputFileError
from trajectory.model_card import (
    DEFAULT_BENCHMARK,
    CardSource,
    load_benchmark,
    render_card,
)

PARAMS = {
    "data_version": "8173859f8297",
    "device": "cpu",
    "code_version": "0.1.0",
    "git_commit": "00c8a24deadbeef",
    "config.model": "mixture",
    "config.epochs": "40",
    "config.seed": "7",
    "config.batch_size": "128",
    "config.lr": "0.002",
    "model.name": "mixture",
    "model.args.modes": "20",
    "model.args.hidden": "128",
    "spec.obs_len": "8",
    "spec.pred_len": "12",
    "spec.stride": "1",
    "spec.neighbour_radius": "5.0",
    "spec.max_neighbours": "8",
}
METRICS = {
    "val_ade": 0.4412,
    "val_fde": 0.9701,
    "val_min_ade": 0.1891,
    "val_min_fde": 0.3442,
    "test_ade": 0.3905,
    "test_fde": 0.8633,
    "test_min_ade": 0.1702,
    "test_min_fde": 0.3071,
    "best_epoch": 17.0,
    "train_seconds": 512.4,
}
BENCHMARK = {
    "date": "2026-11-23",
    "hardware": "AMD EPYC, 2 cores",
    "protocol": {"seeds": {"mixture": [0, 1, 2]}},
    "models": {
        "cv": {"k1": {"eth": [1.0755, 2.2819], "avg": [0.534, 1.1476]}},
        "mixture": {
            "k1": {"eth": [1.0535, 2.1869], "avg": [0.5119, 1.0842]},
            "k20": {"eth": [0.4432, 0.6841], "avg": [0.216, 0.3603]},
            "seeds": [0, 1, 2],
            "date": "2026-11-23",
            "hardware": "AMD EPYC, 2 cores",
            "train_config": {"epochs": 12},
        },
    },
}


def source(**changes: object) -> CardSource:
    values: dict[str, object] = {
        "name": "trajectory-forecaster",
        "version": 3,
        "run_id": "abc123",
        "params": dict(PARAMS),
        "tags": {"model": "mixture", "data_version": "8173859f8297"},
        "metrics": dict(METRICS),
        "version_tags": {"promotion.decision": "promoted", "promotion.reason": "no champion yet"},
        "aliases": ["challenger", "champion"],
        "registered_at": "2026-12-01T13:50:00+00:00",
        "tracking_uri": "sqlite:////tmp/card-run/mlflow.db",
    }
    return CardSource(**(values | changes))  # type: ignore[arg-type]


def render(**kwargs: object) -> str:
    kwargs.setdefault("generated_at", "2026-12-01T14:00:00+00:00")
    src = kwargs.pop("src", None) or source()
    return render_card(src, **kwargs)  # type: ignore[arg-type]


def test_card_has_every_section_in_order() -> None:
    text = render(benchmark=BENCHMARK)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h.split(":")[0].split(" (")[0] for h in headings] == [
        "## Overview",
        "## Data",
        "## Training set-up",
        "## Metrics of this run",
        "## Per scene",
        "## Bias",
        "## Intended use",
        "## Limitations",
        "## Ethical considerations",
        "## How to reproduce",
    ]
    assert text.startswith("# Model card: `trajectory-forecaster` version 3\n")
    assert "2026-12-01T14:00:00+00:00" in text and "`abc123`" in text


def test_run_values_reach_the_card() -> None:
    text = render()
    assert "`8173859f8297`" in text  # data version
    assert "| device | `cpu` |" in text
    assert "| epochs (maximum) | 40 |" in text and "| seed | 7 |" in text
    assert "| best epoch (weights kept) | 17 |" in text and "512 s" in text
    assert "hidden=128, modes=20" in text
    assert "| val | 0.441 | 0.970 | 0.189 | 0.344 |" in text
    assert "| test | 0.391 | 0.863 | 0.170 | 0.307 |" in text
    assert "`@challenger`, `@champion`" in text
    assert "promoted: no champion yet" in text


def test_per_scene_numbers_are_labelled_as_the_benchmark_s() -> None:
    text = render(benchmark=BENCHMARK)
    assert "Not this version's weights" in text
    assert "2026-11-23" in text and "AMD EPYC, 2 cores" in text
    assert "| scene | CV K=1 | mixture K=1 | mixture best-of-20 |" in text
    assert "| eth | 1.08/2.28 | 1.05/2.19 | 0.44/0.68 |" in text
    assert "| avg | 0.53/1.15 | 0.51/1.08 | 0.22/0.36 |" in text
    assert "| hotel | - | - | - |" in text  # missing entries are shown as missing, not zero


def test_per_scene_is_left_out_when_the_model_type_is_not_benchmarked() -> None:
    other = source(tags={"model": "transformer"}, params=PARAMS | {"model.name": "transformer"})
    text = render(src=other, benchmark=BENCHMARK)
    assert "no `transformer` entry" in text and "| eth |" not in text
    assert "no benchmark file" in render(benchmark=None)


def test_limitations_and_ethics_carry_the_known_caveats() -> None:
    text = render(benchmark=BENCHMARK)
    assert "0.67 s" in text and "2.45 m/s" in text  # ETH frame rate
    assert "Pedestrians only" in text and "vehicles" in text
    assert "density" in text and "not computed" in text
    dense = render_card(source(), BENCHMARK, density={"univ": (13, 34, 75)})
    assert "univ 13-75 (median 34)" in dense
    assert "CPU-trained" in text
    assert "did not choose" in text and "identif" in text
    gpu = render(src=source(params=PARAMS | {"device": "cuda:0"}))
    assert "CPU-trained" not in gpu and "`cuda:0`" in gpu


def test_reproduce_uses_commands_that_exist_with_the_run_s_values() -> None:
    text = render(data_dir="data/eth_ucy/zara1", note="trained by the test")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "git worktree add ../trajectory-repro 00c8a24deadbeef" in block
    assert (
        "TRAJ_SEED=7 .venv/bin/trajectory run --data data/eth_ucy/zara1 --model mixture "
        "--epochs 40 --device cpu" in block
    )
    assert ".venv/bin/trajectory model-card --model trajectory-forecaster --version 1" in block
    assert "> **How this model was produced:** trained by the test" in text
    assert "`data/eth_ucy/zara1`" in text


def test_a_password_in_the_tracking_uri_is_hidden() -> None:
    text = render(src=source(tracking_uri="http://ops:s3cret@mlflow:5000"))
    assert "s3cret" not in text and "http://ops:***@mlflow:5000" in text


def test_missing_metrics_do_not_break_the_card() -> None:
    text = render(src=source(metrics={}, params={}, tags={}, version_tags={}, aliases=[]))
    assert "logged no validation or test metrics" in text
    assert "| aliases now | none |" in text


def test_the_checked_in_benchmark_loads(tmp_path: Path) -> None:
    data = load_benchmark(DEFAULT_BENCHMARK)
    assert data is not None and {"cv", "mixture"} <= set(data["models"])
    assert load_benchmark(tmp_path / "absent.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json"):
        load_benchmark(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(InputFileError):
        load_benchmark(bad)


def test_bias_section_shows_each_slice_with_its_count_and_flags() -> None:
    frame = pd.DataFrame({
        "scene": ["eth"] * 12 + ["zara1"] * 12 + ["hotel"] * 3,
        "speed": [2.0] * 12 + [1.2] * 15,
        "heading_change": [5.0] * 27,
        "neighbours": [0] * 27,
        "ade": [1.5] * 12 + [0.4] * 12 + [3.0] * 3,
        "fde": [2.0] * 27,
    })
    table = fairness.slice_errors(fairness.add_bands(frame))
    text = render(bias=table, bias_source="the test split of `artifacts/windows`")
    section = text.split("## Bias", 1)[1].split("\n## ", 1)[0]
    assert "the test split of `artifacts/windows`" in section
    assert "| overall | all | 27 |" in section
    overall = (12 * 1.5 + 12 * 0.4 + 3 * 3.0) / 27  # eth: 1.27 x overall
    assert f"| scene | eth | 12 | 1.500 | 2.000 | {1.5 / overall:.2f} | **flagged** |" in section
    assert "| scene | zara1 | 12 | 0.400 |" in section and "| scene | hotel | 3 |" in section
    assert "too few windows" in section  # hotel: 3 windows are shown, not judged
    assert "Flagged: scene eth" in section and "walking_speed fast >=1.6" in section
    assert "time_of_day" not in section  # offline windows have no time of day


def test_bias_section_says_why_it_is_missing() -> None:
    assert "Not computed: no ETL windows" in render()
