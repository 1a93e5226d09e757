"""ETH/UCY leave-one-scene-out benchmark: train on train/, stop early on val/, score test/.

`run_eth_ucy` reads `<data>/<scene>/{train,val,test}/*.txt`, cuts 8 -> 12 windows with stride 1
(the shared `make_windows`), scores every model with `score_model` (K=1 and best-of-20 ADE/FDE,
brier-minFDE, miss rate, and NLL with its scale fitted on the fold's val/ windows), and merges
the result into a JSON file per model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trajectory.data import schema as S
from trajectory.data.io import read_tracks
from trajectory.data.windows import Windows, WindowSpec, make_windows
from trajectory.exceptions import ConfigError, InputFileError
from trajectory.files import write_json_atomic
from trajectory.hardware import hardware
from trajectory.training.evaluate import BEST_OF, score_model
from trajectory.training.train import TrainConfig, train

log = logging.getLogger(__name__)

SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
SPLITS = ("train", "val", "test")
SPEC = WindowSpec(obs_len=8, pred_len=12, stride=1)
SCALARS = ("brier_min_fde_20", "nll", "miss_rate_20")  # one number per scene: {scenes, avg}


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
    jobs: int = 1,
    label: str | None = None,
) -> dict[str, Any]:
    """Run the protocol for each model and merge the entries into `output` (JSON), one entry
    per model under its name, or under `label` (one model only: e.g. a second configuration).

    `jobs` > 1 trains that many (seed, scene) folds at once in worker processes, each with the
    config's thread count; the scores do not depend on it.

    `seed` is one seed or several: a learned model is trained once per scene and seed, its
    scores are means over seeds (with `k1_std`/`k20_std` when there are several) and
    `train_seconds` is the mean wall time per scene. `config` overrides the training defaults
    the project's training configuration (`TrainConfig.load()`; its model, seed and device are
    set here; `epochs` overrides its epochs).
    """
    if label is not None and len(models) != 1:
        raise ConfigError("a label names the entry of one model; give one --model with it")
    seeds = [seed] if isinstance(seed, int) else list(seed)
    provenance = None if config else TrainConfig.provenance()
    base = config or TrainConfig.load()
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
        "metrics": (
            "metres; brier_min_fde_20 = minFDE + (1 - p)^2, p the weight of the closest mode "
            "(copies of one track are one mode); miss_rate_20: best final error > 2 m; nll: "
            "nats per predicted point, modes as isotropic Gaussians of std c*t/T, c fitted by "
            "maximum likelihood on the fold's val/ windows"
        ),
        "scenes": scenes,
        "seeds": _as_dict(result["protocol"].get("seeds"))
        | {label or name: seeds for name in models},
        "window_spec": asdict(SPEC),
        "test_windows": {scene: len(f["test"]) for scene, f in folds.items()},
    }
    result["hardware"] = hardware()
    result["date"] = dt.date.today().isoformat()
    for name in models:
        key = label or name
        configs = [replace(base, model=name, seed=s) for s in seeds]
        runs = _run_all(folds, configs, jobs, progress)
        result["models"][key] = _summarise(runs, seeds) | {
            "model": name,
            "date": result["date"],
            "hardware": result["hardware"],
            "load_average": [round(v, 1) for v in os.getloadavg()],
        }
        if runs[0][scenes[0]]["trainable"]:
            fields = asdict(replace(base, model=name))
            result["models"][key]["train_config"] = {
                k: v for k, v in fields.items() if k != "seed"
            }
            if provenance is not None:
                result["models"][key]["config_provenance"] = provenance
        log.info("%s: %s", key, json.dumps(result["models"][key]["k1"]))
    _write(output, result)
    return result


def _run_all(
    folds: dict[str, dict[str, Windows]],
    configs: list[TrainConfig],
    jobs: int,
    progress: bool,
) -> list[dict[str, dict[str, Any]]]:
    """`_run_model` for every config, in this process or spread over `jobs` processes."""
    if jobs <= 1:
        return [_run_model(folds, config, progress) for config in configs]
    runs: list[dict[str, dict[str, Any]]] = [{} for _ in configs]
    context = multiprocessing.get_context("spawn")  # no fork of a process that ran torch
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {
            pool.submit(_run_fold, folds[scene], scene, config): (i, scene)
            for i, config in enumerate(configs)
            for scene in folds
        }
        for future in tqdm(as_completed(futures), total=len(futures), desc="folds",
                           disable=not progress):
            i, scene = futures[future]
            runs[i][scene] = future.result()
    return [{scene: run[scene] for scene in folds} for run in runs]


def _run_fold(fold: dict[str, Windows], scene: str, config: TrainConfig) -> dict[str, Any]:
    """One (scene, seed) fold in a worker process (the windows arrive pickled: read once)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return _run_model({scene: fold}, config, progress=False)[scene]


def _run_model(
    folds: dict[str, dict[str, Windows]], config: TrainConfig, progress: bool
) -> dict[str, dict[str, Any]]:
    """Train and score one model on every fold: {scene: {k1, k20, SCALARS, nll_scale,
    seconds, best_epoch...}}."""
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
            scores = score_model(res.model, fold["test"], val=fold["val"], device=res.device)
            m = scores["metrics"]
            out[scene] = {
                "k1": [m["ade"], m["fde"]],
                "k20": [m["min_ade_20"], m["min_fde_20"]],
                **{key: m[key] for key in SCALARS},
                "nll_scale": scores["nll_scale"]["c"],
                "reliability": scores["reliability"],
                "seconds": res.seconds if res.model.trainable else 0.0,
                "best_epoch": res.best_epoch,
                "trainable": res.model.trainable,
                "model_args": res.model.model_args(),
            }
            log.info(
                "%s %s seed %d: K=1 %.3f/%.3f, best-of-%d %.3f/%.3f, brier-minFDE %.3f, "
                "NLL %.3f, %.0fs",
                config.model,
                scene,
                config.seed,
                *out[scene]["k1"],
                BEST_OF,
                *out[scene]["k20"],
                m["brier_min_fde_20"],
                m["nll"],
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

    def scalar(key: str) -> dict[str, Any]:
        per = np.array([[r[s][key] for s in scenes] for r in runs])  # (seeds, scenes)
        return {"scenes": {s: _r1(per[:, i].mean()) for i, s in enumerate(scenes)},
                "avg": _r1(per.mean(1).mean())}

    k1, k1_std = table("k1")
    k20, k20_std = table("k20")
    entry: dict[str, Any] = {"k1": k1, "k20": k20} | {key: scalar(key) for key in SCALARS}
    entry["nll_scale"] = scalar("nll_scale") | {"fitted_on": "val"}
    entry["reliability"] = _pool_reliability([r[s]["reliability"] for r in runs for s in scenes])
    if not trainable:
        return entry | {"train_seconds": 0}
    entry |= {
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


def _pool_reliability(tables: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Reliability tables of several scenes and seeds as one, each mode counted once: per weight
    bin the mode count, mean weight and closest rate over all of them."""
    pooled = []
    for rows in zip(*tables, strict=True):
        count = sum(r["count"] for r in rows)
        mean_w = sum(r["count"] * (r["mean_weight"] or 0.0) for r in rows) / max(count, 1)
        rate = sum(r["count"] * (r["closest_rate"] or 0.0) for r in rows) / max(count, 1)
        pooled.append({"lo": rows[0]["lo"], "hi": rows[0]["hi"], "count": count,
                       "mean_weight": round(mean_w, 4) if count else None,
                       "closest_rate": round(rate, 4) if count else None})
    return pooled


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table per scene for every model in a benchmark result: ADE/FDE at K=1 and
    best-of-20, brier-minFDE (m) and NLL (nats per point) where the entry has them."""
    cols = [*SCENES, "avg"]
    lines = [f"{'model':<26}" + "".join(f"{c:>12}" for c in cols)]
    for name, entry in result["models"].items():
        for key, label in (("k1", "K=1"), ("k20", f"best-of-{BEST_OF}")):
            if key in entry:
                row = entry[key]
                cells = "".join(
                    f"{row[c][0]:>6.2f}/{row[c][1]:<5.2f}" if c in row else f"{'-':>12}"
                    for c in cols
                )
                lines.append(f"{name + ' ' + label:<26}{cells}")
        for key, label in (("brier_min_fde_20", "brier-minFDE"), ("nll", "NLL")):
            if key in entry:
                values = entry[key]["scenes"] | {"avg": entry[key]["avg"]}
                cells = "".join(
                    f"{values[c]:>9.2f}   " if c in values else f"{'-':>12}" for c in cols
                )
                lines.append(f"{name + ' ' + label:<26}{cells}")
    return "\n".join(lines)


def _r(pair: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in pair]


def _r1(value: float) -> float:
    return round(float(value), 4)


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
    write_json_atomic(output, result)
