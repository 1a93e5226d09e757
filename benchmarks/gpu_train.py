"""Training epoch time of the configured model on CPU and, when one is present, on a CUDA GPU.

    .venv/bin/python benchmarks/gpu_train.py --help

The model, its args and the batch size come from trajectory/training/config.json
(`TrainConfig.load()`), the configuration every training uses. The data is a fixed slice of
ETH/UCY: --windows training windows drawn with seed 0 from the train split of the zara1 fold
(../shared/data/eth_ucy/zara1/train) and the first --val-windows of its val split; a synthetic
crowd (`trajectory.data.simulate`) when that folder is missing. Each device trains --epochs
epochs through `trajectory.training.train`, the same code path as every training: on CUDA the
loop's mixed precision (bf16 autocast where supported, else fp16 with a GradScaler), float32
on CPU. An epoch's seconds are the training pass plus the validation pass over the val slice,
as the training loop times them; the first epoch (warm-up: allocations, CUDA kernels) is
reported apart from the median of the others.

Writes --json (benchmarks/gpu_train.json). Without a GPU the file says so in place of a figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajectory import __version__
from trajectory.bench import hardware, read_split
from trajectory.data.windows import Windows, WindowSpec, make_windows
from trajectory.training import loop
from trajectory.training.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "eth_ucy"
SCENE = "zara1"
SPEC = WindowSpec(obs_len=8, pred_len=12, stride=1)
NO_GPU = {"status": "no GPU on this machine"}

log = logging.getLogger("gpu_train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="ETH/UCY root (default: %(default)s)")
    p.add_argument("--windows", type=int, default=16384, help="training windows per epoch")
    p.add_argument("--val-windows", type=int, default=1024, help="validation windows per epoch")
    p.add_argument("--epochs", type=int, default=4, help="epochs per device (>= 2)")
    p.add_argument("--cpu-threads", type=int, default=None,
                   help="torch threads on CPU (default: the configuration's num_threads)")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "gpu_train.json")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first is reported apart as warm-up")
    return args


def load_slice(data: Path, n_val: int) -> tuple[Windows, Windows, str]:
    """Train and val windows of the zara1 fold, or of a synthetic crowd; -> (train, val, what)."""
    if (data / SCENE / "train").is_dir():
        train_w = make_windows(read_split(data, SCENE, "train"), SPEC)
        val_w = make_windows(read_split(data, SCENE, "val"), SPEC)
        what = f"ETH/UCY {SCENE} fold: {_shown(data / SCENE)}/train and /val"
    else:
        from trajectory.data.io import read_tracks
        from trajectory.data.simulate import simulate_crowd

        with tempfile.TemporaryDirectory() as tmp:
            paths = simulate_crowd(tmp, n_scenes=2, agents_per_scene=24, n_frames=2000, seed=0)
            train_w, val_w = (make_windows(read_tracks(p).tracks, SPEC) for p in paths)
        what = f"synthetic crowd (no {_shown(data / SCENE)}): scene 0 train, scene 1 val"
    return train_w, val_w.take(np.arange(min(n_val, len(val_w)))), what


def _shown(path: Path) -> str:
    """A path as seen from the repository root, so the JSON does not name this machine."""
    return os.path.relpath(path.resolve(), REPO)


def time_device(
    device: str, train_w: Windows, val_w: Windows, config: TrainConfig
) -> dict[str, Any]:
    """Train `config.epochs` epochs on `device`; -> seconds per epoch and what ran."""
    with tempfile.TemporaryDirectory() as tmp:
        result = train(train_w, val_w, replace(config, device=device), Path(tmp), progress=False)
    seconds = [row["seconds"] for row in result.history]
    steady = statistics.median(seconds[1:])
    n_train = min(len(train_w), config.max_train_windows or len(train_w))
    precision = loop.amp_dtype(torch.device(device))
    out: dict[str, Any] = {
        "device": device,
        "precision": str(precision).removeprefix("torch.") if precision else "float32",
        "epoch_seconds": [round(s, 3) for s in seconds],
        "first_epoch_seconds": round(seconds[0], 3),
        "median_epoch_seconds": round(steady, 3),
        "train_windows_per_second": round(n_train / steady, 1),
    }
    if device == "cpu":
        out["threads"] = config.num_threads or torch.get_num_threads()
    else:
        out["device_name"] = torch.cuda.get_device_name(0)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = TrainConfig.load()
    config = replace(base, epochs=args.epochs, patience=args.epochs + 1, seed=0,
                     max_train_windows=args.windows,
                     num_threads=args.cpu_threads or base.num_threads)
    train_w, val_w, what = load_slice(args.data, args.val_windows)
    log.info("%s: %d train windows (using %d), %d val", what, len(train_w),
             min(args.windows, len(train_w)), len(val_w))

    devices: dict[str, Any] = {"cpu": time_device("cpu", train_w, val_w, config)}
    log.info("cpu: %s", devices["cpu"])
    if torch.cuda.is_available():
        devices["cuda"] = time_device("cuda", train_w, val_w, replace(config, num_threads=None))
        log.info("cuda: %s", devices["cuda"])
    else:
        devices["cuda"] = NO_GPU
        log.info("cuda: no GPU on this machine")
    cuda_s = devices["cuda"].get("median_epoch_seconds")
    result = {
        "benchmark": "seconds per training epoch of the configured model, CPU vs CUDA",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "trajectory": __version__},
        "data": {"source": what, "train_windows": min(args.windows, len(train_w)),
                 "val_windows": len(val_w), "window_spec": asdict(SPEC)},
        "config": {"source": "trajectory/training/config.json", "model": config.model,
                   "model_args": config.model_args, "batch_size": config.batch_size,
                   "epochs_timed": args.epochs, "val_k": config.val_k},
        "devices": devices,
        "speedup_cuda_vs_cpu": (round(devices["cpu"]["median_epoch_seconds"] / cuda_s, 1)
                                if cuda_s else None),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
