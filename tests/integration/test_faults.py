"""benchmarks/faults.py at a small size: poison rows, a PostgreSQL restart, SIGTERM while the
database is down and a restart that replays the spill, with its invariants checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import PG_BIN, REPO, require

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_fault_drill_loses_no_row_and_answers_no_5xx(tmp_path: Path) -> None:
    require("redis-server")
    require(PG_BIN / "initdb")
    out = tmp_path / "faults.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "faults.py"), "--seconds", "6",
         "--clients", "2", "--poison-every", "5", "--outage-s", "1.5", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    counts = report["counts"]
    assert all(report["checks"].values()), report["checks"]
    assert counts["status_5xx"] == 0 and counts["status_200"] > 20
    assert counts["rows_written"] + counts["rows_quarantined"] == counts["rows_accepted"]
    assert counts["rows_quarantined"] == counts["rows_poison"] > 0
    assert counts["rows_spilled"] == counts["rows_replayed"] > 0
    assert counts["spill_files_left"] == 0
    assert report["hardware"] and report["date"]
