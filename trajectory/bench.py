"""ETH/UCY leave-one-scene-out benchmark: train on train/, stop early on val/, score test/.

`run_eth_ucy` reads `<data>/<scene>/{train,val,test}/*.txt`, cuts 8 -> 12 windows with stride 1
(the shared `make_windows`), scores Constant Velocity at K=1 and learned models at K=1 and
best-of-20, and merges the result into a JSON file per model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trajectory.data import schema as S
from trajectory.data.io import read_tracks
from trajectory.data.windows import Windows, WindowSpec, make_windows
from trajectory.exceptions import InputFileError
from trajectory.training.evaluate import evaluate
from trajectory.training.train import TrainConfig, train

log = logging.getLogger(__name__)

SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
SPLITS = ("train", "val", "test")
SPEC = WindowSpec(obs_len=8, pred_len=12, stride=1)
BEST_OF = 20
# sized so that the five folds of one seed train in about 10 minutes on one core of the shared
# 2-core box; one intra-op thread, because two threads there ran up to 7x slower under load
BENCH_CONFIG = TrainConfig(epochs=12, batch_size=256, lr=2e-3, patience=5, num_threads=1)


def read_split(data_dir: Path, scene: str, split: str) -> pd.DataFrame:
    """Validated tracks of `<data>/<scene>/<split>/*.txt`, one scene label per file."""
    files = sorted((Path(data_dir) / scene / split).glob("*.txt"))
    if not files:
        raise InputFileError(f"no .txt files in {Path(data_dir) / scene / split}")
    parts = []
    for path in files:
        result = read_tracks(path)
        if len(result.rejects):
            log.warning("%s: %d lines rejected", path, len(result.rejects))
        parts.append(result.tracks)
    tracks = pd.concat(parts, ignore_index=True)
    if tracks[S.SCENE].nunique() != len(files):
        raise InputFileError(f"two files of {Path(data_dir) / scene / split} share a scene name")
    return tracks


def scene_windows(data_dir: Path, scene: str, spec: WindowSpec = SPEC) -> dict[str, Windows]:
    """train/val/test windows of one leave-one-out fold."""
    return {split: make_windows(read_split(data_dir, scene, split), spec) for split in SPLITS}


def hardware() -> str:
    """CPU model and core count, and the GPU when one is visible."""
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line),
            cpu,
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def run_eth_ucy(
    data_dir: Path,
    models: list[str],
    output: Path,
    epochs: int | None = None,
    seed: int | Sequence[int] = 0,
    device: str = "auto",
    progress: bool = True,
    scenes: Sequence[str] = SCENES,
    config: TrainConfig | None = None,
) -> dict[str, Any]:
    """Run the protocol for each model and merge the entries into `output` (JSON).

    `seed` is one seed or several: a learned model is trained once per scene and seed, its
    scores are means over seeds (with `k1_std`/`k20_std` when there are several) and
    `train_seconds` is the mean wall time per scene. `config` overrides the training defaults
    `BENCH_CONFIG` (its model, seed and device are set here; `epochs` overrides its epochs).
    """
    seeds = [seed] if isinstance(seed, int) else list(seed)
    base = config or BENCH_CONFIG
    base = replace(base, epochs=base.epochs if epochs is None else epochs, device=device)
    scenes = list(scenes)
    folds = {scene: scene_windows(data_dir, scene) for scene in scenes}
    result = _load(output)
    result["protocol"] = {
        "obs_len": SPEC.obs_len,
        "pred_len": SPEC.pred_len,
        "stride": SPEC.stride,
        "k": BEST_OF,
        "splits": "leave-one-scene-out; train on train/, early stopping on val/, score test/",
        "scenes": scenes,
        "seeds": _as_dict(result["protocol"].get("seeds")) | {name: seeds for name in models},
        "window_spec": asdict(SPEC),
        "test_windows": {scene: len(f["test"]) for scene, f in folds.items()},
    }
    result["hardware"] = hardware()
    result["date"] = dt.date.today().isoformat()
    for name in models:
        runs = [_run_model(folds, replace(base, model=name, seed=s), progress) for s in seeds]
        result["models"][name] = _summarise(runs, seeds) | {
            "date": result["date"],
            "hardware": result["hardware"],
            "load_average": [round(v, 1) for v in os.getloadavg()],
        }
        if runs[0][scenes[0]]["trainable"]:
            config = asdict(replace(base, model=name))
            result["models"][name]["train_config"] = {
                k: v for k, v in config.items() if k != "seed"
            }
        log.info("%s: %s", name, json.dumps(result["models"][name]["k1"]))
    _write(output, result)
    return result


def _run_model(
    folds: dict[str, dict[str, Windows]], config: TrainConfig, progress: bool
) -> dict[str, dict[str, Any]]:
    """Train and score one model on every fold: {scene: {k1, k20, seconds, best_epoch}}."""
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for scene, fold in folds.items():
            res = train(
                fold["train"],
                fold["val"],
                config,
                Path(tmp) / scene,
                progress=progress,
                spec=SPEC,
                meta={"benchmark": "eth_ucy", "scene": scene},
            )
            k = BEST_OF if res.model.trainable else 1
            scores = evaluate(res.model, fold["test"], k=k, device=res.device)
            out[scene] = {
                "k1": [scores["ade"], scores["fde"]],
                "k20": [scores["min_ade"], scores["min_fde"]],
                "seconds": res.seconds if res.model.trainable else 0.0,
                "best_epoch": res.best_epoch,
                "trainable": res.model.trainable,
                "model_args": res.model.model_args(),
            }
            log.info(
                "%s %s seed %d: K=1 %.3f/%.3f, best-of-%d %.3f/%.3f, %.0fs",
                config.model,
                scene,
                config.seed,
                *out[scene]["k1"],
                k,
                *out[scene]["k20"],
                out[scene]["seconds"],
            )
    return out


def _summarise(runs: list[dict[str, dict[str, Any]]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean over seeds per scene, then the plain mean of the scenes."""
    scenes = list(runs[0])
    trainable = runs[0][scenes[0]]["trainable"]

    def table(key: str) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        per = np.array([[r[s][key] for s in scenes] for r in runs])  # (seeds, scenes, 2)
        mean, std = per.mean(0), per.std(0)
        avg = per.mean(1)  # (seeds, 2): the benchmark average of each seed
        rows = {s: _r(mean[i]) for i, s in enumerate(scenes)} | {"avg": _r(avg.mean(0))}
        spread = {s: _r(std[i]) for i, s in enumerate(scenes)} | {"avg": _r(avg.std(0))}
        return rows, spread

    k1, k1_std = table("k1")
    entry: dict[str, Any] = {"k1": k1}
    if not trainable:
        return entry | {"train_seconds": 0}
    k20, k20_std = table("k20")
    entry |= {
        "k20": k20,
        "train_seconds": {
            s: round(float(np.mean([r[s]["seconds"] for r in runs])), 1) for s in scenes
        },
        "best_epoch": {s: [r[s]["best_epoch"] for r in runs] for s in scenes},
        "model_args": runs[0][scenes[0]]["model_args"],
        "seeds": list(seeds),
    }
    if len(runs) > 1:
        entry |= {"k1_std": k1_std, "k20_std": k20_std}
    return entry


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of ADE/FDE per scene for every model in a benchmark result."""
    cols = [*SCENES, "avg"]
    lines = [f"{'model':<20}" + "".join(f"{c:>12}" for c in cols)]
    for name, entry in result["models"].items():
        for key, label in (("k1", "K=1"), ("k20", f"best-of-{BEST_OF}")):
            if key in entry:
                row = entry[key]
                cells = "".join(
                    f"{row[c][0]:>6.2f}/{row[c][1]:<5.2f}" if c in row else f"{'-':>12}"
                    for c in cols
                )
                lines.append(f"{name + ' ' + label:<20}{cells}")
    return "\n".join(lines)


def _r(pair: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in pair]


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _load(output: Path) -> dict[str, Any]:
    """The existing result file, so entries of models not re-run are kept."""
    empty: dict[str, Any] = {"protocol": {}, "hardware": "", "date": "", "models": {}}
    if not Path(output).exists():
        return empty
    try:
        data = json.loads(Path(output).read_text())
    except json.JSONDecodeError as err:
        raise InputFileError(f"{output}: not a benchmark JSON file: {err}") from err
    if not isinstance(data, dict):
        raise InputFileError(f"{output}: not a benchmark JSON file")
    return empty | data


def _write(output: Path, result: dict[str, Any]) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(output)
