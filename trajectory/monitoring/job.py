"""One evaluation over a window of the prediction log: what the `trajectory_evaluate` DAG runs.

log rows -> live ADE/FDE per variant and version (ground truth from later ETL output)
         -> A/B test champion vs challenger, sample-ratio check, newest vs previous champion
         -> drift of served-input features against the training split (Evidently)
         -> decision (JSON) -> optional alias moves -> one MLflow run with every artifact
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import create_engine

from trajectory.config import Settings
from trajectory.data import schema as S
from trajectory.data.features import motion_features
from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import NoWindowsError
from trajectory.monitoring import ab
from trajectory.monitoring.decision import Decision, decide, write_decision
from trajectory.monitoring.drift import DriftResult, drift_report
from trajectory.monitoring.live import (
    live_errors,
    read_prediction_log,
    served_features,
    summarize_live,
)
from trajectory.monitoring.settings import MonitoringSettings

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """The decision and where its evidence went."""

    decision: Decision
    decision_path: Path  # its folder also holds the drift report
    drift: DriftResult | None
    counts: dict[str, int]
    run_id: str | None = None
    experiment_id: str | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest (for XCom and logs)."""
        return {
            "retrain": self.decision.retrain,
            "reasons": self.decision.reasons,
            "actions": [a.__dict__ for a in self.decision.actions],
            "drift_share": self.drift.share if self.drift else None,
            "drift_html": self.drift.html_path if self.drift else None,
            "decision_path": str(self.decision_path),
            "counts": self.counts,
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
        }


def run_evaluation(
    settings: Settings,
    monitor: MonitoringSettings,
    start: datetime,
    end: datetime,
    windows_dir: Path,
    *,
    log_to_mlflow: bool = True,
) -> EvaluationResult:
    """Evaluate the log rows with start <= created_at < end against `windows_dir` (the latest
    ETL output: its train split is the drift reference, all its tracks the ground truth)."""
    spec = WindowSpec.from_settings(settings)
    engine = create_engine(monitor.resolved_database_url(settings.work_dir))
    try:
        rows = read_prediction_log(engine, start, end)
    finally:
        engine.dispose()
    out_dir = settings.work_dir / "monitoring" / end.strftime("%Y%m%dT%H%M%S")

    errors = live_errors(rows, _ground_truth(rows, windows_dir, spec))
    live = summarize_live(errors)
    drift = _drift(rows, windows_dir, spec, settings, monitor, out_dir)

    reference = _reference_ade(settings, {str(r["model_version"]) for r in live}, log_to_mlflow)
    decision = decide(monitor, drift=drift, live=live, reference_ade=reference,
                      srm=_sample_ratio(rows, monitor), **_comparisons(errors, monitor))
    decision.numbers["window"] = {"start": start.isoformat(), "end": end.isoformat(),
                                  "windows_dir": str(windows_dir)}
    decision_path = write_decision(decision, out_dir / "decision.json")
    counts = {"log_rows": len(rows), "joined": len(errors), "variants": len(live)}
    result = EvaluationResult(decision, decision_path, drift, counts)
    if log_to_mlflow:
        _apply_and_log(settings, result)
    log.info("evaluation %s .. %s: retrain=%s, %s", start, end, decision.retrain, decision.reasons)
    return result


def tracks_from_windows(windows: Windows, steps: dict[str, int]) -> pd.DataFrame:
    """Track rows (scene, frame, agent_id, x, y) rebuilt from windows with a future, for the
    scenes whose frame step is known (the log records it with every prediction)."""
    if windows.fut is None or not len(windows):
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    scene = windows.scene.astype(str)
    keep = np.isin(scene, list(steps))
    if not keep.any():
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    w = windows.take(np.flatnonzero(keep))
    pos = np.concatenate([w.obs, w.fut], axis=1)  # (N, L, 2)
    length = pos.shape[1]
    step = np.array([steps[s] for s in w.scene.astype(str)], np.int64)
    frames = w.start_frame[:, None] + step[:, None] * np.arange(length)  # (N, L)
    tracks = pd.DataFrame({
        S.SCENE: np.repeat(w.scene.astype(str), length),
        S.FRAME: frames.ravel(),
        S.AGENT: np.repeat(w.agent_id, length),
        S.X: pos[..., 0].ravel(),
        S.Y: pos[..., 1].ravel(),
    })
    return tracks.drop_duplicates([S.SCENE, S.AGENT, S.FRAME], ignore_index=True)


def _ground_truth(rows: pd.DataFrame, windows_dir: Path, spec: WindowSpec) -> pd.DataFrame:
    """Tracks of the logged scenes from the ETL output (empty when it has none of them yet)."""
    from trajectory.data.dataset import load_windows

    steps = rows.dropna(subset=["scene"]).groupby("scene")["frame_step"].first().to_dict()
    if not steps:
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    try:
        windows = load_windows(windows_dir, spec, scenes=list(steps))
    except NoWindowsError:
        log.warning("no ground truth yet in %s for scenes %s", windows_dir, sorted(steps))
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    return tracks_from_windows(windows, {str(k): int(v) for k, v in steps.items()})


def _drift(rows: pd.DataFrame, windows_dir: Path, spec: WindowSpec, settings: Settings,
           monitor: MonitoringSettings, out_dir: Path) -> DriftResult | None:
    """The Evidently report, when the log holds at least `min_drift_rows` served windows."""
    from trajectory.data.dataset import load_windows

    if rows.empty:
        return None
    current = served_features(rows, spec)
    if len(current) < monitor.min_drift_rows:
        log.info("drift not judged: %d served windows < %d", len(current), monitor.min_drift_rows)
        return None
    train = load_windows(windows_dir, spec, split="train")
    reference = motion_features(train.obs, train.nbr, spec.dt)  # windows are spec.dt apart
    return drift_report(reference, current, out_dir, method=monitor.drift_method,
                        threshold=monitor.drift_threshold, seed=settings.seed)


def _comparisons(errors: pd.DataFrame, monitor: MonitoringSettings) -> dict[str, Any]:
    """The A/B test (hash-assigned, not shadow) and the champion's newest vs previous version."""
    if errors.empty:
        return {}
    served = errors[~errors["shadow"].astype(bool)]
    randomised = served[served["assignment"] == "hash"]
    out: dict[str, Any] = {"ab": _compare(randomised, "variant", monitor.champion_variant,
                                          monitor.challenger_variant, monitor)}
    challenger = _registered(served, monitor.challenger_variant)
    out["challenger_version"] = challenger[-1] if challenger else None
    versions = _registered(served, monitor.champion_variant)
    if len(versions) >= 2:
        champion = served[served["variant"] == monitor.champion_variant]
        out["versions"] = _compare(champion, "model_version", str(versions[-2]),
                                   str(versions[-1]), monitor)
        out["previous_version"] = versions[-2]
    return out


def _compare(errors: pd.DataFrame, by: str, a: str, b: str,
             monitor: MonitoringSettings) -> ab.Comparison | None:
    """The A/B comparison of b vs a when both have `ab_min_keys` routing keys."""
    if errors.empty:
        return None
    errors = errors.assign(**{by: errors[by].astype(str)})
    counts = ab.key_counts(errors, by)
    if min(counts.get(a, 0), counts.get(b, 0)) < monitor.ab_min_keys:
        return None
    return ab.compare_groups(errors, monitor.ab_metric, a, b, by, monitor.ab_alpha)


def _sample_ratio(rows: pd.DataFrame, monitor: MonitoringSettings) -> ab.SampleRatio | None:
    """Keys per variant among hash-assigned served requests vs the configured weights."""
    weighted = {k: v for k, v in monitor.ab_weights.items() if v > 0}
    if len(weighted) < 2 or rows.empty:
        return None
    served = rows[(~rows["shadow"].astype(bool)) & (rows["assignment"] == "hash")]
    if served.empty:
        return None
    return ab.sample_ratio(ab.key_counts(served), monitor.ab_weights, monitor.srm_alpha)


def _registered(errors: pd.DataFrame, variant: str) -> list[int]:
    """Registry versions a variant served, ascending (built-in models have no number)."""
    served = errors.loc[errors["variant"] == variant, "model_version"].astype(str)
    return sorted({int(v) for v in served if v.isdigit()})


def _reference_ade(settings: Settings, versions: set[str], use_registry: bool) -> dict[str, float]:
    """Validation ADE of each served registry version, from the registry."""
    numbers = sorted(int(v) for v in versions if v.isdigit())
    if not numbers or not use_registry:
        return {}
    from trajectory.tracking.evaluation import reference_ade

    return {str(k): v for k, v in reference_ade(settings, numbers).items()}


def _apply_and_log(settings: Settings, result: EvaluationResult) -> None:
    """Move aliases the policy allows, then log the evaluation run with its artifacts."""
    from trajectory.tracking.evaluation import log_evaluation, set_alias

    for action in result.decision.actions:
        if action.apply:
            set_alias(settings, action.alias, action.version, action.reason)
    metrics: dict[str, float] = {"retrain": float(result.decision.retrain)}
    metrics |= {f"n_{k}": float(v) for k, v in result.counts.items()}
    for row in result.decision.numbers["live"]:
        name = _metric_name(f"{row['variant']}_v{row['model_version']}")
        metrics |= {f"live_{m}_{name}": float(row[m]) for m in ("ade", "fde", "min_ade", "min_fde")}
    if result.drift is not None:
        metrics["drift_share"] = result.drift.share
        metrics |= {f"drift_{k}": v for k, v in result.drift.scores.items()}
    for key in ("ab", "sample_ratio"):
        numbers = result.decision.numbers[key] or {}
        metrics |= {f"{key}_{k}": float(v) for k, v in numbers.items()
                    if k in ("diff", "welch_p", "mannwhitney_p", "cohens_d", "p_value")}
    artifacts = [result.decision_path]
    if result.drift is not None:
        artifacts += [Path(p) for p in (result.drift.html_path, result.drift.json_path) if p]
    window = result.decision.numbers["window"]
    result.run_id, result.experiment_id = log_evaluation(
        settings, metrics=metrics, artifacts=artifacts,
        params={"window_start": window["start"], "window_end": window["end"],
                "windows_dir": window["windows_dir"]} | result.decision.policy,
        tags={"retrain": str(result.decision.retrain).lower()},
    )


def _metric_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)
