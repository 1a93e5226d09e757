"""The model card's crowd density is counted from the raw files it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from trajectory.model_card import crowd_density

pytestmark = pytest.mark.data


def test_density_per_scene_of_a_leave_one_out_fold(eth_ucy_dir: Path) -> None:
    density = crowd_density(eth_ucy_dir / "zara1")
    assert {"crowds_zara01", "crowds_zara02"} <= set(density)  # held-out test and a train scene
    for lo, mid, hi in density.values():
        assert 1 <= lo <= mid <= hi
    assert max(hi for _, _, hi in density.values()) > 20  # univ (students) is in train/: dense
