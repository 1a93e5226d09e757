"""The synthetic crowd: deterministic bytes, the ETH text format, plausible walking."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from trajectory.config import Settings
from trajectory.data.io import read_tracks
from trajectory.data.simulate import simulate_crowd


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    args = {"n_scenes": 2, "agents_per_scene": 8, "n_frames": 150, "files_per_scene": 2}
    a = simulate_crowd(tmp_path / "a", seed=3, **args)
    b = simulate_crowd(tmp_path / "b", seed=3, **args)
    c = simulate_crowd(tmp_path / "c", seed=4, **args)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert digest(a) == digest(b) != digest(c)


def test_a_scene_does_not_depend_on_the_scenes_beside_it(tmp_path: Path) -> None:
    one = simulate_crowd(tmp_path / "one", n_scenes=1, agents_per_scene=8, n_frames=120, seed=1)
    two = simulate_crowd(tmp_path / "two", n_scenes=2, agents_per_scene=8, n_frames=120, seed=1)
    assert one[0].read_bytes() == two[0].read_bytes()


def test_layout_format_and_walking_speeds(tmp_path: Path) -> None:
    paths = simulate_crowd(
        tmp_path, n_scenes=2, agents_per_scene=12, n_frames=300, files_per_scene=3
    )
    assert [p.relative_to(tmp_path).as_posix() for p in paths[:3]] == [
        f"sim_000/sim_000_part{i:02d}.txt" for i in range(3)
    ]
    settings = Settings()
    parts = [read_tracks(p, settings=settings) for p in paths[:3]]
    assert all(r.rejects.empty for r in parts)
    ranges = [(r.tracks["frame"].min(), r.tracks["frame"].max()) for r in parts]
    assert ranges[0][1] < ranges[1][0] and ranges[1][1] < ranges[2][0]  # split by time
    tracks = pd.concat([r.tracks for r in parts]).sort_values(["agent_id", "frame"])
    assert set(np.diff(np.unique(tracks["frame"]))) == {10}
    same = tracks["agent_id"].diff().eq(0).to_numpy()[1:]
    step = np.diff(tracks[["x", "y"]].to_numpy(), axis=0)[same]
    speed = np.linalg.norm(step, axis=1) / 0.4
    assert 1.0 < np.median(speed) < 1.6 and speed.max() < settings.max_speed
    # flows both ways along x and across along y: not all straight lines in one direction
    heading = np.degrees(np.arctan2(step[:, 1], step[:, 0]))
    for centre in (0, 180, 90, -90):
        near = np.abs((heading - centre + 180) % 360 - 180) < 30
        assert near.mean() > 0.03, centre
