"""Decision records of the evaluation job, read generically.

The job writes `<work_dir>/monitoring/<end time>/decision.json` beside the Evidently report
(`drift.html`); the decision rules change over time, so every key is optional here: a record
without drift numbers has no drift point, one without actions lists none, an unreadable file
is skipped with a warning. Links: the Evidently report is served by the dashboard itself; the
MLflow run and the Airflow DAG run are linked when the record names them (or MLflow finds the
evaluation run by its window), else to the run lists.

Formats seen: the current job records the A/B and rollback tests as always-valid sequential
tests (`numbers.ab` / `numbers.versions`: `estimate` {design, diff, ...}, `low`, `high`,
`margin`, `planned_keys`, `b_better`, `b_worse`), the key ratio and the join balance
(`sample_ratio`, `join_balance`), the experiment and the calibrated drift verdict
(`numbers.drift`: per-feature `scores`, `thresholds`, `drifted`, `flagged`; Evidently's share is
in `numbers.drift_report`). Older records hold a Welch / Mann-Whitney comparison in `ab` and a
drift `share` in `numbers.drift` or at the top level.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

DECISION_FILE = "decision.json"
REPORT_FILE = "drift.html"
FOLDER = re.compile(r"^[0-9A-Za-z_.:+-]{1,64}$")  # folder names a URL may carry
EVALUATE_DAG = "trajectory_evaluate"


@dataclass
class DecisionRecord:
    """The parts of a decision the dashboard shows; None where the record has no such key."""

    folder: str
    decided_at: str
    retrain: bool | None
    reasons: list[str]
    actions: list[dict[str, Any]]
    drift_share: float | None  # share of features over their drift threshold
    drift_flagged: bool | None  # the drift rule fired on this evaluation alone
    ab: dict[str, Any] | None
    sample_ratio: dict[str, Any] | None
    join_balance: dict[str, Any] | None
    experiment: dict[str, Any] | None
    versions: dict[str, Any] | None  # the rollback test (champion version vs the previous one)
    policy: dict[str, Any]
    window_end: str | None
    run_id: str | None
    experiment_id: str | None
    dag_run_id: str | None
    has_report: bool
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """retrain, promote, rollback, ...: what the decision did or recommended."""
        kinds = ["retrain"] if self.retrain else []
        return kinds + [str(a.get("kind", "action")) for a in self.actions]


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _first(record: dict[str, Any], *keys: str) -> Any:
    """The first of `keys` found at the top level, in `numbers` or in `links`."""
    for where in (record, _dict(record.get("numbers")) or {}, _dict(record.get("links")) or {}):
        for key in keys:
            if where.get(key) is not None:
                return where[key]
    return None


def _drift(record: dict[str, Any], numbers: dict[str, Any]) -> tuple[float | None, bool | None]:
    """Share of drifted features and the rule's flag: from the calibrated verdict (`drifted`
    per feature, `flagged`), else an older record's `share`, else Evidently's report share."""
    drift = _dict(numbers.get("drift")) or _dict(record.get("drift")) or {}
    drifted = _dict(drift.get("drifted"))
    flagged = drift.get("flagged")
    flag = bool(flagged) if isinstance(flagged, bool) else None
    if drifted:
        return sum(1 for v in drifted.values() if v) / len(drifted), flag
    report = _dict(numbers.get("drift_report")) or {}
    for share in (drift.get("share"), record.get("drift_share"), report.get("share")):
        if isinstance(share, int | float) and not isinstance(share, bool):
            return float(share), flag
    return None, flag


def parse_record(folder: str, record: dict[str, Any], has_report: bool) -> DecisionRecord:
    """A decision dict (any version of the format) as a DecisionRecord."""
    numbers = _dict(record.get("numbers")) or {}
    share, flagged = _drift(record, numbers)
    actions = [a if isinstance(a, dict) else {"kind": str(a)}
               for a in record.get("actions") or [] if a is not None]
    reasons = record.get("reasons") or []
    window = _dict(numbers.get("window")) or _dict(record.get("window")) or {}
    retrain = record.get("retrain")
    return DecisionRecord(
        folder=folder,
        decided_at=str(record.get("decided_at") or window.get("end") or _folder_time(folder)),
        retrain=bool(retrain) if retrain is not None else None,
        reasons=[str(r) for r in (reasons if isinstance(reasons, list) else [reasons])],
        actions=actions,
        drift_share=share,
        drift_flagged=flagged,
        ab=_dict(numbers.get("ab")) or _dict(record.get("ab")),
        sample_ratio=_dict(numbers.get("sample_ratio")) or _dict(record.get("sample_ratio")),
        join_balance=_dict(numbers.get("join_balance")),
        experiment=_dict(numbers.get("experiment")),
        versions=_dict(numbers.get("versions")),
        policy=_dict(record.get("policy")) or {},
        window_end=window.get("end"),
        run_id=_first(record, "run_id", "mlflow_run_id"),
        experiment_id=_first(record, "experiment_id", "mlflow_experiment_id"),
        dag_run_id=_first(record, "dag_run_id", "airflow_run_id"),
        has_report=has_report,
        raw=record,
    )


def _folder_time(folder: str) -> str:
    """The job names a folder by the window's end (UTC): as ISO time, else the name."""
    try:
        return datetime.strptime(folder, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return folder


def read_decisions(work_dir: Path, limit: int = 200) -> list[DecisionRecord]:
    """The newest `limit` decision records under `work_dir/monitoring`, newest first."""
    root = Path(work_dir) / "monitoring"
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob(f"*/{DECISION_FILE}"), reverse=True)[:limit]:
        folder = path.parent.name
        if not FOLDER.match(folder):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            log.warning("skipping unreadable decision %s: %s", path, err)
            continue
        if isinstance(record, dict):
            out.append(parse_record(folder, record, (path.parent / REPORT_FILE).is_file()))
    return sorted(out, key=lambda r: r.decided_at, reverse=True)


def report_path(work_dir: Path, folder: str) -> Path | None:
    """The Evidently report of one evaluation folder, if the name is safe and it exists."""
    if not FOLDER.match(folder) or folder in (".", ".."):
        return None
    path = Path(work_dir) / "monitoring" / folder / REPORT_FILE
    return path if path.is_file() else None


def mlflow_link(base: str | None, run_id: str | None, experiment_id: str | None) -> str | None:
    """The MLflow UI page of a run (the same URLs as the Airflow plugin's extra links)."""
    if not base or not run_id:
        return None
    if experiment_id:
        return f"{base.rstrip('/')}/#/experiments/{quote(str(experiment_id))}/runs/{quote(run_id)}"
    return f"{base.rstrip('/')}/#/runs/{quote(run_id)}"


def airflow_link(base: str | None, dag_run_id: str | None) -> str | None:
    """The Airflow 3 UI page of the evaluation DAG run, else of the DAG's runs."""
    if not base:
        return None
    dag = f"{base.rstrip('/')}/dags/{EVALUATE_DAG}"
    return f"{dag}/runs/{quote(dag_run_id, safe='')}" if dag_run_id else f"{dag}/runs"
