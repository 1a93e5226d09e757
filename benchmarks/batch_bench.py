"""Batch scoring benchmark: `serving.batch.score_csv` on Dask against the model's raw forward.

    .venv/bin/python benchmarks/batch_bench.py                      # full run (quiet machine!)
    .venv/bin/python benchmarks/batch_bench.py --quick              # smoke check, small sizes
    .venv/bin/python benchmarks/batch_bench.py --profile            # where the forward's time goes

The learned champion is the `calibrated` model of trajectory/models with the architecture of
trajectory/training/config.json, trained here for --train-epochs on simulated windows with the
project's own loop (`trajectory.training.loop.train_epoch`), or loaded from --checkpoint (a
`trajectory.training.checkpoint` file); batch.json says which. Inputs are simulated crowd CSVs
(`serving_bench.write_crowd_csv`: 40 scenes, about 23 agents per frame, sorted by frame).

Measured in one run, alternating cases per round (BENCHMARKING.md):
  raw_forward     the model's own forward (`model(obs, nbr, 1)` under inference_mode, batches
                  of serving.engine.BATCH_WINDOWS) on windows cut beforehand, at 1 thread
  engine_forward  the same windows through `serving.engine` (the path batch scoring and the
                  API use)
  runs            `score_csv` in a child process per case (workers 1 and 2 of a LocalCluster,
                  1 torch thread each, Parquet output), --sizes rows; peak RSS of every
                  worker process (psutil, every 0.1 s), agent-windows/s end to end

Profile (--profile, torch.profiler, 4096 windows, 1 thread) of the champion's forward: the
table is printed; see serving/engine.py for what it showed and what the engine does about it
(K=1 of the calibrated model skips the offset decoder, with identical outputs).

Writes --output (benchmarks/batch.json) with hardware, date and os.getloadavg().
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from trajectory.hardware import hardware


def champion(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """A checkpoint of the learned champion: --checkpoint, else trained here (cached)."""
    if args.checkpoint is not None:
        return args.checkpoint, f"loaded from {args.checkpoint}"
    path = work / f"calibrated-e{args.train_epochs}.pt"
    how = (f"calibrated (trajectory/training/config.json architecture) trained here for "
           f"{args.train_epochs} epoch(s) on simulated windows")
    if path.is_file():
        return path, how
    import torch
    from serving_bench import simulate_tracks

    from trajectory.data.windows import WindowSpec, make_windows
    from trajectory.models import build_model
    from trajectory.training.checkpoint import save_checkpoint
    from trajectory.training.loop import batches, seed_everything, to_tensors, train_epoch

    config = json.loads((REPO / "trajectory/training/config.json").read_text())
    spec = WindowSpec(max_neighbours=8)
    windows = make_windows(simulate_tracks(work / "sim-train", 4, 24, 400), spec)
    model = build_model("calibrated", obs_len=spec.obs_len, pred_len=spec.pred_len,
                        **config["model_args"])
    generator = seed_everything(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    tensors = to_tensors(windows)
    torch.set_num_threads(2)
    for _ in range(args.train_epochs):
        train_epoch(model, batches(tensors, config["batch_size"], generator), optimizer,
                    scheduler, torch.device("cpu"), None, None, config["grad_clip"])
    model.eval()
    obs, nbr, fut = tensors
    model.calibrate(obs[:4096], nbr[:4096], fut[:4096])
    save_checkpoint(path, model, {"window_spec": spec.__dict__, "bench": how})
    return path, how


def forward_rates(ckpt: Path, csv_path: Path, rounds: int) -> dict[str, Any]:
    """Raw forward vs engine forward, alternated, 1 thread, on windows of the input."""
    import pandas as pd
    import torch

    from serving.engine import BATCH_WINDOWS, Engine, engine_for
    from trajectory.data.windows import WindowSpec, make_windows
    from trajectory.training.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(ckpt)
    rows = pd.read_csv(csv_path, nrows=300_000).astype({"scene": "string"})
    w = make_windows(rows, WindowSpec(max_neighbours=8), with_future=False)
    obs, nbr = w.obs[:20_000], w.nbr[:20_000]
    raw, fast = Engine(model, "eager", False), engine_for(model, kind="auto")
    rates: dict[str, list[float]] = {"raw": [], "engine": []}
    raw.predict(obs[:1000], nbr[:1000]), fast.predict(obs[:1000], nbr[:1000])  # warm-up
    for _ in range(rounds):
        for name, eng in (("raw", raw), ("engine", fast)):
            start = time.perf_counter()
            eng.predict(obs, nbr, 1, BATCH_WINDOWS)
            rates[name].append(len(obs) / (time.perf_counter() - start))
    diff = float(np.abs(raw.predict(obs[:2000], nbr[:2000])[0]
                        - fast.predict(obs[:2000], nbr[:2000])[0]).max())
    return {
        "threads": 1,
        "batch_windows": BATCH_WINDOWS,
        "windows_per_s": round(float(np.median(rates["raw"]))),
        "engine_kind": fast.kind,
        "engine_windows_per_s": round(float(np.median(rates["engine"]))),
        "engine_max_abs_diff_m": diff,
        "rounds": rates,
    }


def batch_sizes(ckpt: Path, sizes: list[int]) -> dict[int, float]:
    """Engine windows/s per batch size (1 thread): how BATCH_WINDOWS was chosen."""
    import torch

    from serving.engine import check_windows, engine_for
    from trajectory.training.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(ckpt)
    obs, nbr = check_windows(model, 16_384)
    eng = engine_for(model)
    out = {}
    for size in sizes:
        eng.predict(obs[:size], nbr[:size], 1, size)
        start = time.perf_counter()
        eng.predict(obs, nbr, 1, size)
        out[size] = round(len(obs) / (time.perf_counter() - start))
    return out


def profile(ckpt: Path) -> str:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from serving.engine import check_windows
    from trajectory.training.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(ckpt)
    obs, nbr = (torch.as_tensor(a) for a in check_windows(model, 4096))
    with torch.inference_mode():
        model(obs, nbr, 1)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            model(obs, nbr, 1)
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


_CHILD = """
import json, sys, time
from pathlib import Path
from serving.batch import score_csv
from serving.config import ServingSettings
from serving.registry import ServedModel
from trajectory.data.windows import WindowSpec
from trajectory.training.checkpoint import load_checkpoint
ckpt, src, out, workers, threads = sys.argv[1:6]
model, meta = load_checkpoint(Path(ckpt))
spec = WindowSpec(**meta["window_spec"])
served = ServedModel("bench-calibrated", "1", None, spec, model, "bench")
settings = ServingSettings(auth_required=False, work_dir=out)
r = score_csv(Path(src), None, served, settings, parquet_dir=Path(out) / "scored",
              workers=int(workers), threads_per_worker=int(threads))
print(json.dumps({"rows": r.rows, "windows": r.windows, "seconds": r.seconds,
                  "partitions": r.partitions, "workers": r.workers,
                  "cluster_seconds": r.cluster_seconds}))
"""


def run_case(ckpt: Path, src: Path, size: int, work: Path, workers: int, threads: int,
             engine: str) -> dict[str, Any]:
    """score_csv in a child process; peak RSS of the driver and of each worker."""
    out = Path(tempfile.mkdtemp(dir=work, prefix="out-"))
    env = os.environ | {"SERVING_ENGINE": engine, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", _CHILD, str(ckpt), str(src), str(out), str(workers), str(threads)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE)
    parent = psutil.Process(proc.pid)
    peak: dict[int, float] = {}
    while proc.poll() is None:
        try:
            for p in [parent, *parent.children(recursive=True)]:
                peak[p.pid] = max(peak.get(p.pid, 0.0), p.memory_info().rss / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout = proc.stdout.read() if proc.stdout else b""
    if proc.returncode:
        raise SystemExit(f"score_csv failed ({proc.returncode}) for {workers} worker(s)")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    subprocess.run(["rm", "-rf", str(out)], check=False)
    driver = peak.pop(proc.pid, 0.0)
    helpers = sorted(peak.values(), reverse=True)  # workers, nanny, the resource tracker
    return {
        "model": "calibrated",
        "engine": engine,
        "workers": workers,
        "threads_per_worker": threads,
        "input_size": size,
        "rows": result["rows"],
        "agent_windows": result["windows"],
        "partitions": result["partitions"],
        "seconds": round(result["seconds"], 2),
        "agent_windows_per_s": round(result["windows"] / result["seconds"]),
        "cluster_start_seconds": round(result["cluster_seconds"], 2),
        "agent_windows_per_s_after_start": round(
            result["windows"] / (result["seconds"] - result["cluster_seconds"])),
        "peak_rss_mb_per_worker": round(helpers[0], 1) if workers and helpers else round(driver, 1),
        "peak_rss_mb_driver": round(driver, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 20_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engines", nargs="+", default=["auto"],
                        help="SERVING_ENGINE values to run (auto, int8, eager)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=REPO / "artifacts" / "batch_bench")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "batch.json")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[256, 512, 1024, 4096])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round: a smoke check")
    parser.add_argument("--profile", action="store_true", help="print the forward's profile")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.train_epochs = [100_000, 300_000], 1, 1
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    ckpt, how = champion(args, args.work_dir)
    if args.profile:
        print(profile(ckpt))
    from serving_bench import write_crowd_csv

    inputs = {}
    for rows in args.sizes:
        path = args.work_dir / f"crowd-{rows}.csv"
        if not path.is_file():
            write_crowd_csv(path, rows)
        inputs[rows] = path
    forward = forward_rates(ckpt, inputs[args.sizes[0]], args.rounds)
    sizes = batch_sizes(ckpt, args.batch_sizes) if args.batch_sizes else {}
    runs: list[dict[str, Any]] = []
    for _ in range(args.rounds):  # alternate the cases each round
        for rows in args.sizes:
            for engine in args.engines:
                for workers in args.workers:
                    runs.append(run_case(ckpt, inputs[rows], rows, args.work_dir, workers, 1, engine))
                    print(json.dumps(runs[-1]), flush=True)
    report = summarise(args, how, forward, sizes, runs)
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ratios", "targets")}, indent=2))


def summarise(args: argparse.Namespace, how: str, forward: dict[str, Any],
              sizes: dict[int, float], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per case over the rounds, the ratios of the issue's targets."""
    cases: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        cases.setdefault((r["input_size"], r["engine"], r["workers"]), []).append(r)
    medians = []
    for group in cases.values():
        row = dict(group[len(group) // 2])
        for key in ("seconds", "agent_windows_per_s", "agent_windows_per_s_after_start",
                    "peak_rss_mb_per_worker"):
            row[key] = float(np.median([g[key] for g in group]))
        row["rounds"] = len(group)
        medians.append(row)
    big = max(args.sizes)
    by = {(r["input_size"], r["engine"], r["workers"]): r for r in medians}
    one, two = by.get((big, "auto", 1)), by.get((big, "auto", 2))
    ratios: dict[str, Any] = {}
    if one:
        ratios["one_worker_vs_raw_forward"] = round(one["agent_windows_per_s"]
                                                    / forward["windows_per_s"], 3)
    if one and two:
        ratios["two_workers_vs_one"] = round(two["agent_windows_per_s"]
                                             / one["agent_windows_per_s"], 3)
    rss = [r["peak_rss_mb_per_worker"] for r in medians]
    small = [r for r in medians if r["input_size"] == min(args.sizes) and r["workers"] == 2]
    large = [r for r in medians if r["input_size"] == big and r["workers"] == 2]
    best = max((r["agent_windows_per_s"] for r in medians), default=0)
    quick = " (--quick: a smoke check, not a measurement)" if args.quick else ""
    return {
        "hardware": hardware(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "champion": how,
        "raw_forward": {k: forward[k] for k in ("threads", "windows_per_s", "batch_windows")},
        "engine_forward": {k: forward[k] for k in
                           ("engine_kind", "engine_windows_per_s", "engine_max_abs_diff_m")},
        "engine_batch_sizes": sizes,
        "runs": medians,
        "ratios": ratios,
        "targets": {
            "e2e 1 worker >= 0.8 x raw forward" + quick: ratios.get("one_worker_vs_raw_forward"),
            "2 workers >= 1.7 x 1 worker" + quick: ratios.get("two_workers_vs_one"),
            ">= 30k agent-windows/s" + quick: best,
            "peak RSS <= 1 GB per worker" + quick: max(rss, default=None),
            "flat memory (largest/smallest input, 2 workers)" + quick: (
                round(large[0]["peak_rss_mb_per_worker"] / small[0]["peak_rss_mb_per_worker"], 2)
                if small and large else None),
        },
    }


if __name__ == "__main__":
    main()
