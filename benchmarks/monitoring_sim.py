"""Error rates of the evaluation DAG's decision rules, simulated on real ETH/UCY windows.

    .venv/bin/python benchmarks/monitoring_sim.py            # ~2-4 min on 2 cores; writes
                                                             # benchmarks/monitoring.json
    .venv/bin/python benchmarks/monitoring_sim.py --quick --out /tmp/m.json   # seconds

It drives the same functions the job uses (`sequential.sequential_test` with `cuped_sums` and
`unpaired_estimate`, `ab.sample_ratio`, `drift_rule.calibrate/judge/persistent`,
`live_rule.live_ratio`, `decision.*`, the service's `Router` for key assignment) with the
defaults of `MonitoringSettings`, on windows of the ETH/UCY `eth` leave-one-out fold
(`--data`): its train/ split (7 recordings of hotel, zara, univ) is the model's training data,
val/ (the last ~20% in time of the same recordings) is later traffic from the same sites, and
test/ (biwi_eth) is a different, harder site.

Design, stated plainly (no model runs in the loops):
- every window (8 observed -> 12 future, stride 1) gets two ADEs computed once: constant
  velocity (CV), and a second cheap predictor, CV from the mean of the last 3 observed steps
  ("smoothed CV"). A/A compares CV with CV; the "10% better" challenger is smoothed CV rescaled
  so that its pooled mean is 0.9 x CV's (so its per-window errors disagree with CV's as a
  different model's would, and its gain varies by scene);
- traffic: the default is `--keys-per-hour` (50) routing keys an hour, each a run of a
  geometric number of consecutive windows (mean `--windows-per-key`, 10) of one recording, in
  time order, starting at a random window (recordings in proportion to their size): within-key
  and within-site correlation as served traffic has. All of a key's windows arrive in its hour
  and their ground truth is known at the next look (no join lag);
- a key's "pre-experiment" error (CUPED covariate) is CV's mean over the run of windows just
  before its own in the same recording (none at a recording's start);
- A/B and rollback: keys assigned by `Router` at the given weights; the job looks every hour at
  everything since the experiment's start; a false promotion is an A/A experiment promoted at
  any of 48 hourly looks (gate = planned sample size on, as deployed; also reported without the
  gate and for the old rule: Welch p < 0.05 with >= 5 keys at each look); power is measured at
  one look with K keys (the always-valid test can only be more likely to have fired earlier);
- drift: thresholds calibrated by the job's own `calibrate` on the train split (its site-mix
  concentration `drift_site_mix` = 10 was chosen after a first run on this fold showed that
  without it the val/ site mix alone flags 3-4 features; sensitivity to 5 and 20 is reported);
  the hourly
  served sample is n windows in runs of 10, every run continuing in time from the previous hour
  (so consecutive hours are correlated, as a real stream is), from val/ (A/A) or val/ with every
  observed track's speed scaled x1.5 / x2 about its last point; a retrain is `drift_persistence`
  flagged hours in a row; rates are per hour;
- live ADE: served model = smoothed CV, unchanged; reference ratio = its ADE / CV ADE on the
  train split (validation stand-in); hourly streams as for drift at the default traffic from
  val/ (same sites) or test/ (harder site); a false trigger is a day (24 hourly looks) in which
  the retrain rule (bootstrap lower bound > 1.25 x reference, 3 hours in a row) fires.
Rates come with the number of simulated experiments/hours/days and Wilson 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from serving.routing import Router
from trajectory.data.features import motion_features
from trajectory.data.io import read_tracks
from trajectory.data.windows import WindowSpec, make_windows
from trajectory.hardware import hardware
from trajectory.monitoring import ab, drift_rule, live_rule, sequential
from trajectory.monitoring.settings import MonitoringSettings

SPEC = WindowSpec(obs_len=8, pred_len=12, stride=1)
FOLD = "eth"


@dataclass
class Pool:
    """Windows of one split in time order within each recording, with per-window numbers."""

    scene: np.ndarray
    cv: np.ndarray
    alt: np.ndarray
    features: pd.DataFrame
    obs: np.ndarray
    nbr: np.ndarray

    def __len__(self) -> int:
        return len(self.cv)


def load_pool(data: Path, split: str) -> Pool:
    files = sorted((data / FOLD / split).glob("*.txt"))
    tracks = pd.concat([read_tracks(f).tracks for f in files], ignore_index=True)
    w = make_windows(tracks, SPEC)
    order = np.lexsort((w.start_frame, w.scene.astype(str)))
    obs = w.obs[order].astype(np.float64)  # (N, 8, 2)
    fut = w.fut[order].astype(np.float64)  # type: ignore[index]  # (N, 12, 2)
    nbr = w.nbr[order]
    smooth = (obs[:, -1] - obs[:, -4]) / 3  # (N, 2): mean of the last 3 steps
    t = np.arange(1, fut.shape[1] + 1)[None, :, None]
    alt = np.linalg.norm(obs[:, -1, None] + t * smooth[:, None] - fut, axis=-1).mean(1)
    return Pool(w.scene.astype(str)[order], live_rule.cv_ade(obs, fut), alt,
                motion_features(obs, nbr, SPEC.dt), obs, nbr)


def wilson(k: int, n: int) -> list[float]:
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def rate(k: int, n: int, unit: str) -> dict[str, Any]:
    return {"rate": round(k / n, 4), "events": k, unit: n, "ci95": wilson(k, n)}


# --- traffic -------------------------------------------------------------------------------

def scene_bounds(scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window: first and one-past-last index of its recording."""
    change = np.flatnonzero(scene[1:] != scene[:-1]) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(scene)]
    owner = np.repeat(np.arange(len(starts)), ends - starts)
    return starts[owner], ends[owner]


def draw_keys(pool: Pool, n_keys: int, mean_windows: float, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive windows: (start, length, pre_start) per key; pre_start -1 if none."""
    lo, hi = scene_bounds(pool.scene)
    start = rng.integers(0, len(pool), n_keys)
    length = np.minimum(rng.geometric(1 / mean_windows, n_keys), hi[start] - start)
    pre = start - length
    pre = np.where(pre >= lo[start], pre, -1)
    return start, length, pre


def run_sums(values: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    cs = np.r_[0.0, np.cumsum(values)]
    return cs[start + length] - cs[start]


def assign(n_keys: int, weights: dict[str, float], tag: str) -> np.ndarray:
    """Variant index per key by the service's hash router (0 = first of `weights`)."""
    router = Router.from_weights("trajectory-ab-v1", list(weights), weights)
    names = list(weights)
    return np.array([names.index(router.assign(f"{tag}-{i}")) for i in range(n_keys)])


# --- A/B -----------------------------------------------------------------------------------

def experiment_looks(pool: Pool, b_values: np.ndarray, policy: MonitoringSettings, hours: int,
                     keys_per_hour: int, mean_windows: float, rng: np.random.Generator,
                     tag: str) -> dict[str, bool]:
    """One experiment (champion = CV, challenger = `b_values`) looked at every hour."""
    n = hours * keys_per_hour
    start, length, pre = draw_keys(pool, n, mean_windows, rng)
    arm = assign(n, {"champion": 0.5, "challenger": 0.5}, tag)
    values = np.where(arm == 1, run_sums(b_values, start, length), run_sums(pool.cv, start, length))
    pre_mean = np.where(pre >= 0, run_sums(pool.cv, np.maximum(pre, 0), length) / length, np.nan)
    out = {"promote": False, "promote_no_gate": False, "rollback": False, "old_rule": False}
    for h in range(1, hours + 1):
        m = h * keys_per_hour
        a, b = arm[:m] == 0, arm[:m] == 1
        if a.sum() < 2 or b.sum() < 2:
            continue
        counts = length[:m].astype(float)
        adj = sequential.cuped_sums(values[:m], counts, pre_mean[:m])
        est = sequential.unpaired_estimate(adj[a], counts[a], adj[b], counts[b], "cuped")
        test = sequential.sequential_test(est, policy.ab_alpha, policy.ab_min_improvement,
                                          policy.ab_effect, policy.ab_power, policy.ab_min_keys)
        srm = ab.sample_ratio({"champion": int(a.sum()), "challenger": int(b.sum())},
                              {"champion": 0.5, "challenger": 0.5}, policy.srm_alpha)
        out["promote"] |= test.b_better and not srm.mismatch
        out["promote_no_gate"] |= test.high < -test.margin
        out["rollback"] |= test.b_worse
        if min(a.sum(), b.sum()) >= 5:
            old = ab.compare(values[:m][a] / counts[a], values[:m][b] / counts[b], "ade",
                             ("champion", "challenger"))
            out["old_rule"] |= old.b_better
    return out


def power_at(pool: Pool, b_values: np.ndarray, policy: MonitoringSettings, keys: int, reps: int,
             mean_windows: float, rng: np.random.Generator) -> float:
    hits = 0
    for r in range(reps):
        start, length, pre = draw_keys(pool, keys, mean_windows, rng)
        arm = assign(keys, {"champion": 0.5, "challenger": 0.5}, f"power{keys}-{r}")
        values = np.where(arm == 1, run_sums(b_values, start, length),
                          run_sums(pool.cv, start, length))
        pre_mean = np.where(pre >= 0, run_sums(pool.cv, np.maximum(pre, 0), length) / length,
                            np.nan)
        counts = length.astype(float)
        adj = sequential.cuped_sums(values, counts, pre_mean)
        a, b = arm == 0, arm == 1
        est = sequential.unpaired_estimate(adj[a], counts[a], adj[b], counts[b], "cuped")
        hits += sequential.sequential_test(est, policy.ab_alpha, policy.ab_min_improvement,
                                           policy.ab_effect, policy.ab_power,
                                           policy.ab_min_keys).b_better
    return hits / reps


def power_keys(curve: dict[int, float], target: float = 0.8) -> int | None:
    """Smallest K of the grid (log-interpolated) with power >= target."""
    ks = sorted(curve)
    for k0, k1 in pairwise(ks):
        p0, p1 = curve[k0], curve[k1]
        if p0 < target <= p1:
            frac = (target - p0) / (p1 - p0)
            return round(np.exp(np.log(k0) + frac * (np.log(k1) - np.log(k0))))
    return ks[0] if curve[ks[0]] >= target else None


# --- streams (drift, live) -----------------------------------------------------------------

def stream(n_rows: int, runs: int, run_windows: int, hours: int, rng: np.random.Generator
           ) -> list[np.ndarray]:
    """Hourly row indices: `runs` runs that each continue in time from the previous hour."""
    starts = rng.integers(0, n_rows, runs)
    out = []
    for h in range(hours):
        idx = (starts[:, None] + h * run_windows + np.arange(run_windows)[None]) % n_rows
        out.append(idx.ravel())
    return out


def drift_rates(reference: pd.DataFrame, ref_scenes: np.ndarray, current: pd.DataFrame,
                n: int, policy: MonitoringSettings, streams: int, hours: int,
                rng: np.random.Generator, thresholds: dict[str, float]) -> dict[str, Any]:
    columns = list(thresholds)
    ref = {c: np.sort(reference[c].to_numpy(float)) for c in columns}
    cur = {c: current[c].to_numpy(float) for c in columns}
    retrain = flagged = looks = 0
    for _ in range(streams):
        flags: list[bool] = []
        for idx in stream(len(current), max(1, n // policy.drift_run_windows),
                          policy.drift_run_windows, hours, rng):
            found = {c: drift_rule.score(ref[c], cur[c][idx]) for c in columns}
            verdict = drift_rule.judge(found, thresholds, len(idx), policy.drift_key_features,
                                       policy.drift_share_retrain)
            flags.append(verdict.flagged)
            if len(flags) >= policy.drift_persistence:
                looks += 1
                retrain += drift_rule.persistent(flags, policy.drift_persistence)
        flagged += sum(flags)
    return rate(retrain, looks, "hours") | {"flagged_hours": flagged}


def scaled_features(pool: Pool, factor: float) -> pd.DataFrame:
    """Features of the pool with every observed track's speed scaled about its last point."""
    last = pool.obs[:, -1:]
    return motion_features(last + factor * (pool.obs - last), pool.nbr, SPEC.dt)


def live_days(pool: Pool, reference: float, policy: MonitoringSettings, days: int,
              keys_per_hour: int, rng: np.random.Generator) -> dict[str, Any]:
    fired = 0
    for d in range(days):
        degraded: list[bool] = []
        day_fired = False
        for h, idx in enumerate(stream(len(pool), keys_per_hour, 10, 24, rng)):
            keys = np.repeat(np.arange(keys_per_hour), 10)
            r = live_rule.live_ratio("v", pool.alt[idx], pool.cv[idx], keys, reference,
                                     policy.ade_degradation_retrain, alpha=policy.live_alpha,
                                     resamples=policy.live_resamples, seed=d * 100 + h)
            degraded.append(r.degraded)
            day_fired |= drift_rule.persistent(degraded, policy.live_persistence)
        fired += day_fired
    return rate(fired, days, "days")


# --- main ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/eth_ucy"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/monitoring.json"))
    parser.add_argument("--quick", action="store_true", help="few repetitions (a smoke test)")
    parser.add_argument("--keys-per-hour", type=int, default=50)
    parser.add_argument("--windows-per-key", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reps = {"aa": 40, "power": 30, "drift": 10, "live": 20} if args.quick else \
        {"aa": 400, "power": 200, "drift": 100, "live": 200}
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    policy = MonitoringSettings(_env_file=None)  # type: ignore[call-arg]
    train, val, test = (load_pool(args.data, s) for s in ("train", "val", "test"))
    b10 = val.alt * (0.9 * val.cv.mean() / val.alt.mean())  # a real 10% improvement
    out: dict[str, Any] = {
        "hardware": hardware(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"fold": FOLD, "train_windows": len(train), "val_windows": len(val),
                 "test_windows": len(test), "cv_ade_val": float(val.cv.mean()),
                 "smoothed_cv_ade_val": float(val.alt.mean())},
        "traffic": {"keys_per_hour": args.keys_per_hour, "windows_per_key": args.windows_per_key,
                    "looks": "hourly"},
        "policy": policy.model_dump(exclude={"database_url", "pseudonym_key"}),
        "quick": args.quick,
    }

    # A/A and false rollback: 48 hourly looks from the experiment's start
    looks = [experiment_looks(val, val.cv, policy, 48, args.keys_per_hour, args.windows_per_key,
                              rng, f"aa{e}") for e in range(reps["aa"])]
    n = len(looks)
    out["aa_false_promote_48h"] = rate(sum(x["promote"] for x in looks), n, "experiments")
    out["aa_false_promote_48h_without_planned_sample_gate"] = rate(
        sum(x["promote_no_gate"] for x in looks), n, "experiments")
    out["aa_false_promote_48h_old_rule"] = rate(sum(x["old_rule"] for x in looks), n,
                                                "experiments")
    out["false_rollback"] = rate(sum(x["rollback"] for x in looks), n, "experiments") | {
        "design": "same model as both versions on a randomised split, 48 hourly looks; "
                  "with shadow scores of both versions the paired difference is exactly 0"}

    grid = [250, 500, 1000, 2000, 4000, 8000] if not args.quick else [500, 2000, 8000]
    curve = {k: power_at(val, b10, policy, k, reps["power"], args.windows_per_key, rng)
             for k in grid}
    out["power_10pct_keys"] = power_keys(curve)
    out["power_10pct_curve"] = {"keys": list(curve), "power": list(curve.values()),
                                "reps_per_point": reps["power"], "design": "randomised + CUPED"}

    ref_features = train.features.reset_index(drop=True)
    drift: dict[str, Any] = {}
    for n_cur in (100, 300, 1000):
        thresholds = drift_rule.calibrate(
            ref_features, train.scene, n_cur, list(ref_features.columns),
            quantile=policy.drift_quantile, blocks=policy.drift_calibration_samples,
            run_windows=policy.drift_run_windows, mix=policy.drift_site_mix, seed=args.seed)
        row: dict[str, Any] = {"thresholds": thresholds}
        for name, factor in (("aa", 1.0), ("speed_x1_5", 1.5), ("speed_x2", 2.0)):
            current = val.features if factor == 1.0 else scaled_features(val, factor)
            row[name] = drift_rates(ref_features, train.scene, current, n_cur, policy,
                                    reps["drift"], 24, rng, thresholds)
        drift[str(n_cur)] = row
    out["drift"] = drift
    sensitivity = {}  # the site-mix concentration was chosen on this fold: how much it matters
    for mix in (5.0, 20.0):
        thresholds = drift_rule.calibrate(
            ref_features, train.scene, 1000, list(ref_features.columns),
            quantile=policy.drift_quantile, blocks=policy.drift_calibration_samples,
            run_windows=policy.drift_run_windows, mix=mix, seed=args.seed)
        sensitivity[str(mix)] = {
            name: drift_rates(ref_features, train.scene, current, 1000, policy, reps["drift"] // 2,
                              24, rng, thresholds)["rate"]
            for name, current in (("aa", val.features), ("speed_x1_5", scaled_features(val, 1.5)))}
    out["drift_site_mix_sensitivity_n1000"] = sensitivity
    out["drift_false_retrain_time_ordered"] = drift["1000"]["aa"]
    out["drift_detect_speed_x1_5"] = drift["1000"]["speed_x1_5"]

    reference = float(train.alt.mean() / train.cv.mean())
    out["live_reference_ratio"] = reference
    out["live_false_trigger_same_sites"] = live_days(val, reference, policy, reps["live"],
                                                     args.keys_per_hour, rng)
    out["live_false_trigger_harder_site"] = live_days(test, reference, policy, reps["live"],
                                                      args.keys_per_hour, rng)
    out["live_ratio_by_split"] = {s: float(p.alt.mean() / p.cv.mean())
                                  for s, p in (("train", train), ("val", val), ("test", test))}
    out["live_raw_ade_by_split"] = {s: float(p.alt.mean())
                                    for s, p in (("train", train), ("val", val), ("test", test))}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("policy", "drift")}, indent=2))


if __name__ == "__main__":
    main()
