"""One evaluation over a window of the prediction log: what the `trajectory_evaluate` DAG runs.

log rows of the window -> live ADE/FDE per variant and version, ADE / CV-ADE vs validation
     (ground truth from later ETL output)        -> served-input drift vs the training split
rows since the experiment's start (`experiment`) -> always-valid A/B and rollback tests, key
     ratio vs the recorded weights, join rates  -> decision (JSON; persistence rules read the
     earlier evaluations' decisions) -> optional alias moves -> one MLflow run with the files
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import create_engine

from trajectory.config import Settings
from trajectory.data.windows import WindowSpec
from trajectory.monitoring import evidence
from trajectory.monitoring.decision import Decision, decide, write_decision
from trajectory.monitoring.drift import DriftResult, drift_report
from trajectory.monitoring.drift_rule import DriftVerdict
from trajectory.monitoring.experiment import current_experiment
from trajectory.monitoring.live import (
    LOG_TABLE,
    live_errors,
    read_prediction_log,
    served_features,
    summarize_live,
)
from trajectory.monitoring.live_rule import cv_ade
from trajectory.monitoring.settings import MonitoringSettings
from trajectory.monitoring.truth import ground_truth

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


def missing_prediction_log(settings: Settings, monitor: MonitoringSettings) -> str | None:
    """Why there is nothing to evaluate yet, else None. Before the service's first prediction
    there is no database file or no `predictions` table: a normal state on a fresh install,
    which the DAG reports as a skip. Looking never creates the SQLite file."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    url = make_url(monitor.resolved_database_url(settings.work_dir))
    where = url.render_as_string(hide_password=True)
    if (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            and not Path(str(url.database)).is_file()):
        return f"no prediction log yet: {url.database} does not exist (no prediction served)"
    engine = create_engine(url)
    try:
        if not inspect(engine).has_table(LOG_TABLE):
            return f"no prediction log yet: no table {LOG_TABLE!r} in {where}"
    finally:
        engine.dispose()
    return None


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
    ETL output: its train split is the drift reference, all its tracks the ground truth); the
    A/B and rollback tests take every row since the experiment started."""
    spec = WindowSpec.from_settings(settings)
    engine = create_engine(monitor.resolved_database_url(settings.work_dir))
    try:
        rows = read_prediction_log(engine, start, end)
        weights = monitor.ab_weights or {monitor.champion_variant: 1.0}  # the service's default
        experiment = current_experiment(engine, rows, weights, end)
        ab_start = max(experiment.started_at, end - timedelta(days=monitor.ab_max_days))
        pre_start = min(start, ab_start - timedelta(days=monitor.ab_pre_days))
        history_rows = rows if pre_start >= start else read_prediction_log(engine, pre_start, end)
    finally:
        engine.dispose()
    folder = end.strftime(evidence.FOLDER_FORMAT)
    out_dir = settings.work_dir / "monitoring" / folder

    pseudonyms = monitor.pseudonymiser(settings.work_dir)
    truth = ground_truth(history_rows, windows_dir, spec, pseudonyms)
    all_errors = live_errors(history_rows, truth, pseudonyms)
    times = pd.to_datetime(all_errors["created_at"], utc=True)
    errors = all_errors[times >= pd.Timestamp(start)]
    in_experiment = all_errors[times >= pd.Timestamp(ab_start)]
    pre = all_errors[(times < pd.Timestamp(ab_start)) & ~all_errors["shadow"].astype(bool)]
    row_times = pd.to_datetime(history_rows["created_at"], utc=True)
    experiment_rows = history_rows[row_times >= pd.Timestamp(ab_start)]

    reference = _reference_ade(settings, set(errors["model_version"].astype(str)), log_to_mlflow)
    ratios = evidence.live_ratios(errors, reference, _validation_cv_ade(windows_dir, spec)
                                  if reference else None, monitor, settings.seed)
    verdict, report = _drift(rows, windows_dir, spec, settings, monitor, out_dir)
    flags, degraded = evidence.history(settings.work_dir / "monitoring", folder,
                                       max(monitor.drift_persistence, monitor.live_persistence))
    checks = evidence.balance(experiment_rows, in_experiment, experiment, monitor)
    notes = [] if experiment.recorded else ["experiment not recorded: promotion off"]
    decision = decide(
        monitor, drift=verdict, drift_history=flags, live=ratios, live_history=degraded,
        srm=checks["srm"], joins=checks["joins"], report=report, notes=notes,
        **evidence.comparisons(in_experiment, pre, experiment, monitor),
    )
    decision.numbers["window"] = {"start": start.isoformat(), "end": end.isoformat(),
                                  "windows_dir": str(windows_dir)}
    decision.numbers["experiment"] = experiment.to_dict() | {"read_from": ab_start.isoformat()}
    decision.numbers["live_summary"] = summarize_live(errors)
    decision.numbers["reference_ade"] = reference
    decision_path = write_decision(decision, out_dir / "decision.json")
    counts = {"log_rows": len(rows), "joined": len(errors), "experiment_joined": len(in_experiment),
              "variants": len(decision.numbers["live_summary"])}
    result = EvaluationResult(decision, decision_path, report, counts)
    if log_to_mlflow:
        _apply_and_log(settings, result)
    log.info("evaluation %s .. %s: retrain=%s, %s", start, end, decision.retrain, decision.reasons)
    return result


def _validation_cv_ade(windows_dir: Path, spec: WindowSpec) -> float | None:
    """Constant velocity's ADE on the validation split: the denominator of the reference."""
    from trajectory.data.dataset import load_windows
    from trajectory.exceptions import NoWindowsError

    try:
        val = load_windows(windows_dir, spec, split="val")
    except NoWindowsError:
        return None
    if val.fut is None or not len(val):
        return None
    return float(cv_ade(val.obs.astype(np.float64), val.fut.astype(np.float64)).mean())


def _drift(rows: pd.DataFrame, windows_dir: Path, spec: WindowSpec, settings: Settings,
           monitor: MonitoringSettings, out_dir: Path
           ) -> tuple[DriftVerdict | None, DriftResult | None]:
    """Our calibrated verdict and Evidently's report, with `min_drift_rows` served windows."""
    from trajectory.data.dataset import load_windows

    if rows.empty:
        return None, None
    current = served_features(rows, spec)
    if len(current) < monitor.min_drift_rows:
        log.info("drift not judged: %d served windows < %d", len(current), monitor.min_drift_rows)
        return None, None
    train = load_windows(windows_dir, spec, split="train")
    reference, scenes = evidence.training_features(train, spec.dt)  # windows are spec.dt apart
    verdict = evidence.drift_verdict(reference, scenes, current, monitor, settings.seed)
    report = drift_report(reference, current, out_dir, method=monitor.drift_method,
                          threshold=monitor.drift_threshold, seed=settings.seed)
    return verdict, report


def _reference_ade(settings: Settings, versions: set[str], use_registry: bool) -> dict[str, float]:
    """Validation ADE of each served registry version, from the registry."""
    numbers = sorted(int(v) for v in versions if v.isdigit())
    if not numbers or not use_registry:
        return {}
    from trajectory.tracking.evaluation import reference_ade

    return {str(k): v for k, v in reference_ade(settings, numbers).items()}


def _apply_and_log(settings: Settings, result: EvaluationResult) -> None:
    """Move aliases the policy allows, then log the evaluation run with its artifacts."""
    from trajectory.alerting import notify_decision
    from trajectory.tracking.evaluation import log_evaluation, set_alias

    for action in result.decision.actions:
        if action.apply:
            set_alias(settings, action.alias, action.version, action.reason)
    metrics: dict[str, float] = {"retrain": float(result.decision.retrain)}
    metrics |= {f"n_{k}": float(v) for k, v in result.counts.items()}
    numbers = result.decision.numbers
    for row in numbers["live_summary"]:
        name = _metric_name(f"{row['variant']}_v{row['model_version']}")
        metrics |= {f"live_{m}_{name}": float(row[m]) for m in ("ade", "fde", "min_ade", "min_fde")}
    for ratio in numbers["live"]:
        metrics[f"live_cv_ratio_v{_metric_name(ratio['version'])}"] = float(ratio["relative"])
    if numbers["drift"] is not None:
        metrics["drift_flagged"] = float(numbers["drift_flagged"])
        metrics |= {f"drift_{k}": float(v) for k, v in numbers["drift"]["scores"].items()}
    if result.drift is not None:
        metrics["drift_share"] = result.drift.share  # Evidently's, at its report threshold
    for key in ("ab", "versions"):
        test = numbers[key] or {}
        metrics |= {f"{key}_{k}": float(test[k]) for k in ("low", "high", "planned_keys")
                    if k in test}
        if test:
            metrics[f"{key}_diff"] = float(test["estimate"]["diff"])
    for key in ("sample_ratio", "join_balance"):
        if numbers[key]:
            metrics[f"{key}_p_value"] = float(numbers[key]["p_value"])
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
    # one message per evaluation that decided something (TRAJ_ALERT_WEBHOOK; none when unset)
    notify_decision(result.decision.to_dict() | {"run_id": result.run_id})


def _metric_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)
