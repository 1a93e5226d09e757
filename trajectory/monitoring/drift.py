"""Feature drift with Evidently: training-window features (reference) vs served inputs (current).

The stat test and its threshold are always set explicitly: Evidently's default switches from
the K-S p-value to normalised Wasserstein distance at 1000 rows, which would make the meaning
of a score depend on traffic. Both are recorded in every result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajectory.data.schema import FEATURE_COLUMNS
from trajectory.exceptions import DataError
from trajectory.files import write_json_atomic

log = logging.getLogger(__name__)

MAX_REFERENCE_ROWS = 20_000


@dataclass
class DriftResult:
    """Per-feature scores and flags, the share of drifted features, and where the report is."""

    method: str
    threshold: float
    scores: dict[str, float]
    drifted: dict[str, bool]
    share: float
    n_reference: int
    n_current: int
    skipped: list[str] = field(default_factory=list)  # features empty on one side
    html_path: str | None = None
    json_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: Path,
    method: str = "wasserstein",
    threshold: float = 0.1,
    columns: list[str] | None = None,
    seed: int = 0,
) -> DriftResult:
    """Run Evidently's DataDriftPreset with `method`/`threshold` on every feature column and
    save `drift.html` and `drift.json` (the snapshot plus our summary) under `out_dir`."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = columns or FEATURE_COLUMNS
    if len(reference) == 0 or len(current) == 0:
        raise DataError(f"drift needs rows on both sides, got {len(reference)} and {len(current)}")
    if len(reference) > MAX_REFERENCE_ROWS:
        reference = reference.sample(MAX_REFERENCE_ROWS, random_state=seed)
    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    skipped = [c for c in columns if c not in usable]
    if not usable:
        raise DataError(f"every feature is empty on one side: {columns}")
    definition = DataDefinition(numerical_columns=usable)
    ref = Dataset.from_pandas(_floats(reference, usable), data_definition=definition)
    cur = Dataset.from_pandas(_floats(current, usable), data_definition=definition)
    report = Report([DataDriftPreset(columns=usable, method=method, threshold=threshold)],
                    include_tests=True)
    snapshot = report.run(cur, ref)
    scores, drifted = _per_feature(snapshot.dict(), usable)

    out_dir.mkdir(parents=True, exist_ok=True)
    result = DriftResult(
        method=method,
        threshold=threshold,
        scores=scores,
        drifted=drifted,
        share=sum(drifted.values()) / len(drifted),
        n_reference=len(reference),
        n_current=len(current),
        skipped=skipped,
        html_path=str(out_dir / "drift.html"),
        json_path=str(out_dir / "drift.json"),
    )
    snapshot.save_html(result.html_path)
    document = {"summary": result.to_dict(), "evidently": json.loads(snapshot.json())}
    write_json_atomic(out_dir / "drift.json", document, default=str)
    log.info("drift (%s, threshold %g): share %.2f %s", method, threshold, result.share, scores)
    return result


def _floats(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df[columns].astype(np.float64).reset_index(drop=True)


def _per_feature(
    snapshot: dict[str, Any], columns: list[str]
) -> tuple[dict[str, float], dict[str, bool]]:
    """Scores from the ValueDrift metrics; drift flags from their tests (FAIL = drifted), so the
    direction of each method (distance vs p-value) is Evidently's, not ours."""
    scores: dict[str, float] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift") and config.get("column") in columns:
            scores[config["column"]] = float(metric["value"])
    drifted: dict[str, bool] = {}
    for test in snapshot["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in columns:
            drifted[params["column"]] = test["status"] == "FAIL"
    missing = sorted(set(columns) - (set(scores) & set(drifted)))
    if missing:
        raise DataError(f"Evidently returned no drift result for {missing}")
    return scores, drifted

