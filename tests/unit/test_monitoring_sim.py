"""The monitoring simulation harness runs end to end in --quick mode on the real windows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

KEYS = ("hardware", "date", "aa_false_promote_48h", "power_10pct_keys",
        "drift_false_retrain_time_ordered", "drift_detect_speed_x1_5",
        "live_false_trigger_same_sites", "false_rollback")


@pytest.mark.data
@pytest.mark.slow
def test_quick_simulation_writes_every_rate(eth_ucy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "monitoring.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "monitoring_sim.py"), "--quick",
                    "--data", str(eth_ucy_dir), "--out", str(out)], check=True, cwd=REPO,
                   capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert all(k in result for k in KEYS)
    for key in KEYS[2:]:
        if isinstance(result[key], dict):
            assert 0 <= result[key]["rate"] <= 1 and result[key]["ci95"][0] <= result[key]["rate"]
    # the old rule's false promotions are what the new one removes
    assert result["aa_false_promote_48h"]["rate"] <= result["aa_false_promote_48h_old_rule"]["rate"]
