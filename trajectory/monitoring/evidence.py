"""From log frames to the rules' inputs: the A/B and rollback tests, balance checks, live
ratios, the calibrated drift verdict and the history of earlier evaluations."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajectory.data.features import motion_features
from trajectory.data.schema import FEATURE_COLUMNS
from trajectory.data.windows import Windows
from trajectory.exceptions import DataError
from trajectory.monitoring import ab, drift_rule, live_rule
from trajectory.monitoring.experiment import Experiment, estimate
from trajectory.monitoring.sequential import SequentialTest, sequential_test
from trajectory.monitoring.settings import MonitoringSettings

log = logging.getLogger(__name__)

FOLDER_FORMAT = "%Y%m%dT%H%M%S"  # evaluation folders under <work_dir>/monitoring


def _test(errors: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], pre: pd.DataFrame,
          monitor: MonitoringSettings) -> SequentialTest | None:
    found = estimate(errors, a, b, monitor.ab_metric, pre)
    if found is None:
        return None
    return sequential_test(found, monitor.ab_alpha, monitor.ab_min_improvement, monitor.ab_effect,
                           monitor.ab_power, monitor.ab_min_keys)


def comparisons(errors: pd.DataFrame, pre: pd.DataFrame, experiment: Experiment,
                monitor: MonitoringSettings) -> dict[str, Any]:
    """The experiment's A/B test (champion vs challenger) and the rollback test (the champion's
    version vs the registry version before it, when the log holds both on the same requests
    or on a randomised split)."""
    out: dict[str, Any] = {}
    if errors.empty:
        return out
    champion, challenger = monitor.champion_variant, monitor.challenger_variant
    out["ab"] = _test(errors, ("variant", champion), ("variant", challenger), pre, monitor)
    version = experiment.versions.get(challenger, "")
    out["challenger_version"] = int(version) if version.isdigit() else None
    current = experiment.versions.get(champion, "")
    seen = {int(v) for v in errors["model_version"].astype(str) if v.isdigit()}
    older = sorted(v for v in seen if current.isdigit() and v < int(current))
    if older:
        out["previous_version"] = older[-1]
        out["versions"] = _test(errors, ("model_version", str(older[-1])),
                                ("model_version", current), pre, monitor)
    return out


def balance(rows: pd.DataFrame, errors: pd.DataFrame, experiment: Experiment,
            monitor: MonitoringSettings) -> dict[str, ab.SampleRatio | None]:
    """Key ratio of hash-assigned served rows vs the recorded weights, and join rates."""
    out: dict[str, ab.SampleRatio | None] = {"srm": None, "joins": None}
    weighted = {k: v for k, v in experiment.weights.items() if v > 0}
    served = rows[(~rows["shadow"].astype(bool)) & (rows["assignment"] == "hash")]
    if experiment.recorded and len(weighted) >= 2 and not served.empty:
        out["srm"] = ab.sample_ratio(ab.key_counts(served), weighted, monitor.srm_alpha)
    logged = rows.groupby("variant").size().to_dict()
    joined = errors.groupby("variant").size().to_dict() if len(errors) else {}
    if sum(1 for v in logged.values() if v) >= 2:
        out["joins"] = ab.join_balance({str(k): int(v) for k, v in logged.items()},
                                       {str(k): int(v) for k, v in joined.items()},
                                       monitor.srm_alpha)
    return out


def live_ratios(errors: pd.DataFrame, reference_ade: dict[str, float], reference_cv: float | None,
                monitor: MonitoringSettings, seed: int = 0) -> list[live_rule.LiveRatio]:
    """ADE / CV-ADE per served registry version with a validation ADE, vs validation's ratio."""
    if errors.empty or not reference_cv:
        return []
    served = errors[~errors["shadow"].astype(bool)]
    out = []
    for version, rows in served.groupby(served["model_version"].astype(str)):
        ref = reference_ade.get(str(version))
        if ref is None or rows["routing_key_hash"].nunique() < 2:
            continue
        try:
            out.append(live_rule.live_ratio(
                str(version), rows["ade"].to_numpy(float), rows["cv_ade"].to_numpy(float),
                rows["routing_key_hash"].to_numpy(), ref / reference_cv,
                monitor.ade_degradation_retrain, alpha=monitor.live_alpha,
                resamples=monitor.live_resamples, seed=seed))
        except DataError as err:
            log.info("live ratio of v%s not judged: %s", version, err)
    return out


def training_features(train: Windows, dt: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Motion features of training windows in time order within each scene, and the scenes."""
    order = np.lexsort((train.start_frame, train.scene.astype(str)))
    features = motion_features(train.obs[order], train.nbr[order], dt)
    return features.reset_index(drop=True), train.scene.astype(str)[order]


def drift_verdict(reference: pd.DataFrame, scenes: np.ndarray, current: pd.DataFrame,
                  monitor: MonitoringSettings, seed: int = 0) -> drift_rule.DriftVerdict:
    """Scores of the served features against the training features, judged with thresholds
    calibrated on the training data at this sample size."""
    columns = [c for c in FEATURE_COLUMNS
               if reference[c].notna().any() and current[c].notna().any()]
    thresholds = drift_rule.calibrate(
        reference, scenes, len(current), columns, quantile=monitor.drift_quantile,
        blocks=monitor.drift_calibration_samples, run_windows=monitor.drift_run_windows,
        mix=monitor.drift_site_mix, seed=seed)
    found = drift_rule.scores(reference, current, columns)
    return drift_rule.judge(found, thresholds, len(current), monitor.drift_key_features,
                            monitor.drift_share_retrain)


def history(monitoring_dir: Path, before: str, k: int) -> tuple[list[bool], list[list[str]]]:
    """Drift flags and degraded versions of the last `k` evaluations before folder `before`
    (oldest first): what the persistence rules look back on."""
    folders = sorted(p for p in monitoring_dir.glob("*") if p.is_dir() and p.name < before)
    flags: list[bool] = []
    degraded: list[list[str]] = []
    for folder in folders[-k:]:
        path = folder / "decision.json"
        if not path.is_file():
            flags.append(False)
            degraded.append([])
            continue
        numbers = json.loads(path.read_text()).get("numbers", {})
        flags.append(bool(numbers.get("drift_flagged")))
        degraded.append([str(v) for v in numbers.get("live_degraded", [])])
    return flags, degraded
