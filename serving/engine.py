"""The inference path of batch scoring and the real-time API: one `Engine` per model version.

Where the time of the learned champion (`calibrated`, hidden 128, 20 modes) goes: see
`benchmarks/batch_bench.py --profile` (torch.profiler, one thread, 4096 windows). A first look
(untrained weights, a busy machine; to be re-run quiet) had GELU ~43%, Linear (addmm) ~30%,
copies ~14%. Most of it is the offset decoder, which runs every one of the 19 offset modes:
(B, 19, H) rows through dec_ctx, GELU and the two dec_out layers. For K=1 the calibrated
model answers its central track only, so the engine skips the offset decoder
(`_central_track`: the layers of `MixtureModel._modes` that lead to that track, in the same
order, so outputs are identical; a test checks it); K>1 runs the model as it is. Everything
runs under `torch.inference_mode` in batches of `BATCH_WINDOWS` windows (batch_bench.py
--batch-sizes measures 256..4096; 512 was fastest in the runs made so far).

Dynamic int8 quantization of the Linear layers is offered (`SERVING_ENGINE=int8`), but only
kept when every output of a check batch stays within `TOLERANCE_M` of the eager model;
otherwise the engine says so and runs float32. TorchScript, torch.compile and ONNX Runtime
were not tried yet.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from trajectory.exceptions import ConfigError
from trajectory.models.base import TrajectoryModel, to_local, to_world

log = logging.getLogger(__name__)

BATCH_WINDOWS = 512  # windows per forward call (batch_bench.py --batch-sizes)
TOLERANCE_M = 1e-3  # an optimised path must keep every output this close to the eager model
_CACHE_SIZE = 4
_cache: OrderedDict[tuple[int, str], tuple[TrajectoryModel, Engine]] = OrderedDict()
ENGINE_KINDS = ("auto", "int8", "eager")
_lock = threading.Lock()


@dataclass(frozen=True)
class Engine:
    """A model ready to answer numpy windows; `kind` says which path it runs."""

    model: TrajectoryModel
    kind: str  # "eager", "central" (K=1 of calibrated without the offset decoder) or "int8"
    central: bool  # K=1 runs `_central_track`

    def predict(
        self, obs: np.ndarray, nbr: np.ndarray, k: int = 1, batch_size: int = BATCH_WINDOWS
    ) -> tuple[np.ndarray, np.ndarray]:
        """obs (N, T_obs, 2), nbr (N, M, T_obs, 2) -> traj (N, K, T_pred, 2), weights (N, K)."""
        n, t_pred = len(obs), self.model.pred_len
        traj = np.empty((n, k, t_pred, 2), np.float32)
        weights = np.empty((n, k), np.float32)
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                o = torch.as_tensor(obs[i : i + batch_size], dtype=torch.float32)
                m = torch.as_tensor(nbr[i : i + batch_size], dtype=torch.float32)
                if k == 1 and self.central:
                    tr = _central_track(self.model, o, m)  # (b, 1, T, 2)
                    traj[i : i + len(o)] = tr.numpy()
                    weights[i : i + len(o)] = 1.0
                else:
                    out = self.model(o, m, k)
                    traj[i : i + len(o)] = out.traj.float().numpy()
                    weights[i : i + len(o)] = out.weights.float().numpy()
        return traj, weights


def engine_for(model: TrajectoryModel, *, kind: str | None = None) -> Engine:
    """The engine of a loaded model, built once per model object (a worker keeps the model
    of each version it was sent, so this is once per worker and version).

    `kind` (default: SERVING_ENGINE, else "auto"): "auto" (the fastest exact path), "int8"
    (quantized if within TOLERANCE_M, else "auto"), "eager" (the model's forward as it is,
    for comparison).
    """
    kind = kind or os.environ.get("SERVING_ENGINE", "auto")
    if kind not in ENGINE_KINDS:
        raise ConfigError(f"SERVING_ENGINE must be one of {ENGINE_KINDS}, got {kind!r}")
    key = (id(model), kind)
    with _lock:
        found = _cache.get(key)
        if found is not None and found[0] is model:
            _cache.move_to_end(key)
            return found[1]
    model.eval()
    if kind == "eager":
        engine = Engine(model, "eager", False)
    else:
        engine = build_engine(model, quantize=kind == "int8")
    with _lock:
        _cache[key] = (model, engine)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return engine


def build_engine(model: TrajectoryModel, *, quantize: bool = False) -> Engine:
    """Eager float32, with the K=1 central-track path for the calibrated model; with
    `quantize`, int8 Linear layers if they keep outputs within TOLERANCE_M (checked here)."""
    model.eval()
    central = _has_central_track(model)
    engine = Engine(model, "central" if central else "eager", central)
    if not quantize or not any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        return engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notes
        q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    candidate = Engine(q, "int8", central)
    error = max_difference(engine, candidate, check_windows(model))
    if error > TOLERANCE_M:
        log.warning("int8 engine off: outputs differ by %.2g m (> %g m)", error, TOLERANCE_M)
        return engine
    return candidate


def max_difference(a: Engine, b: Engine, windows: tuple[np.ndarray, np.ndarray]) -> float:
    """Largest |difference| (metres) of two engines' K=1 and K=3 outputs on `windows`."""
    obs, nbr = windows
    worst = 0.0
    for k in (1, 3):
        ta, _ = a.predict(obs, nbr, k)
        tb, _ = b.predict(obs, nbr, k)
        worst = max(worst, float(np.abs(ta - tb).max()))
    return worst


def check_windows(
    model: TrajectoryModel, n: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Plausible pedestrian windows (walks of 0-2 m/step, neighbours within 5 m, some
    missing): what the optimised paths are checked on."""
    rng = np.random.default_rng(seed)
    t = model.obs_len
    m = max(int(getattr(model, "max_neighbours", 8)), 1)
    speed = rng.uniform(0.0, 0.8, (n, 1, 1))  # (n, 1, 1) metres per step
    heading = rng.uniform(-np.pi, np.pi, (n, 1))
    step = np.concatenate([np.cos(heading), np.sin(heading)], -1)[:, None] * speed  # (n,1,2)
    noise = rng.normal(0, 0.03, (n, t, 2))
    obs = rng.uniform(-20, 20, (n, 1, 2)) + np.cumsum(step + noise, 1)  # (n, T, 2)
    nbr = obs[:, None] + rng.normal(0, 2.5, (n, m, 1, 2))  # (n, M, T, 2)
    nbr[rng.random((n, m)) < 0.4] = np.nan
    return obs.astype(np.float32), nbr.astype(np.float32)


def _has_central_track(model: TrajectoryModel) -> bool:
    from trajectory.models.calibrated import CalibratedMixture

    return type(model) is CalibratedMixture


def _central_track(model: TrajectoryModel, obs: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """K=1 of `CalibratedMixture`: its central track, computed by the layers of
    `MixtureModel._modes` that lead to it (the offsets and weights are never used at K=1).
    obs (B, T_obs, 2), nbr (B, M, T_obs, 2) -> (B, 1, T_pred, 2)."""
    from trajectory.models.calibrated import CalibratedMixture

    m = cast("CalibratedMixture", model)
    m.check_input(obs, nbr)
    obs_l, nbr_l, origin, rot = to_local(obs, nbr)
    steps = torch.diff(obs_l, dim=1)  # (B, T_obs-1, 2)
    if m.min_scale is None:
        scale = torch.ones_like(steps[:, 0, :1])  # (B, 1)
    else:
        scale = steps.norm(dim=-1).mean(-1, keepdim=True).clamp_min(m.min_scale)
    agent = m.agent_enc(steps.flatten(1) / scale)  # (B, H)
    social = m.social(agent, obs_l / scale[:, :, None], nbr_l / scale[:, :, None, None])
    ctx = m.trunk(torch.cat([agent, social], -1))  # (B, 2H)
    b = len(ctx)
    central = m.central(ctx).view(b, 1, m.pred_len, 2) * scale[:, :, None, None]
    t = torch.arange(1, m.pred_len + 1, dtype=obs_l.dtype, device=obs_l.device)  # (T,)
    cv = t[:, None] * steps[:, -1][:, None, None]  # (B, 1, T, 2)
    return to_world((cv + central).to(obs.dtype), origin, rot)  # (B, 1, T, 2)
