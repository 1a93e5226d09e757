"""Model selection on validation windows only: train on a fold's train/, report its val/ scores.

    python benchmarks/val_select.py zara1 calibrated '{"epochs": 24, "patience": 8}' >> benchmarks/val_select.jsonl

Arguments: the fold, a model name, and JSON overrides of trajectory/training/config.json
(`model_args` merged into the configured ones when the model is the configured one). Prints one
JSON line: K=1 and best-of-20 ADE/FDE, brier-minFDE, mean top weight and how often the top
mode is the closest, on the fold's val/ windows. The test scene is never read.
`val_select.jsonl` is the log of the runs that chose the benchmarked configuration; its
"transformer" lines are a variant removed from the code since.
"""

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from trajectory import metrics
from trajectory.bench import read_split
from trajectory.data.windows import WindowSpec, make_windows
from trajectory.models.base import predict
from trajectory.training.train import TrainConfig, train

DATA = Path(os.environ.get("ETH_UCY", Path(__file__).parents[1] / "../shared/data/eth_ucy"))

scene, model = sys.argv[1], sys.argv[2]
over = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
margs = over.pop("model_args", {})
torch.set_num_threads(1)
spec = WindowSpec(obs_len=8, pred_len=12, stride=1)
fold = {s: make_windows(read_split(DATA, scene, s), spec) for s in ("train", "val")}
cfg = TrainConfig.load(model=model, num_threads=1, device="cpu", **over)
cfg = replace(cfg, model_args=(cfg.model_args if model == cfg.model else {}) | margs)
out_dir = Path(f"/tmp/val_select/ck-{scene}-{model}-{time.time():.0f}")
res = train(fold["train"], fold["val"], cfg, out_dir, progress=False)
val = fold["val"]
t1, _ = predict(res.model, val.obs, val.nbr, k=1)
tk, w = predict(res.model, val.obs, val.nbr, k=20)
err = np.linalg.norm(tk - val.fut[:, None], axis=-1)  # (N, K, T)
fe = err[..., -1]  # (N, K)
p = w[np.arange(len(w)), fe.argmin(1)]
out = {
    "scene": scene, "model": model, "over": over, "margs": margs,
    "ade": metrics.ade(t1[:, 0], val.fut).mean(), "fde": metrics.fde(t1[:, 0], val.fut).mean(),
    "min_ade": err.mean(-1).min(1).mean(), "min_fde": fe.min(1).mean(),
    "brier": (fe.min(1) + (1 - p) ** 2).mean(), "top_w": w[:, 0].mean(),
    "top_is_best": (fe.argmin(1) == 0).mean(), "secs": res.seconds,
    "best_epoch": res.best_epoch, "epochs": len(res.history), "checkpoint": str(res.checkpoint),
}
print(json.dumps({k: round(float(v), 4) if isinstance(v, float | np.floating) else v
                  for k, v in out.items()}))
