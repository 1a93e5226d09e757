"""Partitions of a batch by scene and time: each scores the windows it owns, and only those.

A partition owns the windows of one scene whose last observed frame lies in (lo, hi]; it
reads that scene's valid rows from `lo + 1 - span` to `hi` (span = (obs_len - 1) frame
steps: the frames its first window needs), so no window is lost or scored twice whatever
the chunks and whatever the order of the rows. Scenes off the model's time grid are
resampled (`serving.windowing.partition_windows`): their frames are grid frames k (k * dt
seconds), and a partition reads `max_gap` seconds more on each side, as interpolation at a
grid time uses the points around it up to `max_gap` away.

A scene's rows are cut into about `rows_per_part`-row partitions of equal frame ranges;
which chunks' track files a partition reads follows from each chunk's frame range of the
scene (for input sorted by frame, one or two files).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trajectory.data import schema as S
from trajectory.data.resample import TOLERANCE
from trajectory.data.windows import WindowSpec


@dataclass
class SceneStats:
    """One scene's rows in one chunk: ranges and the gaps that give its frame step."""

    rows: int
    frame_min: int
    frame_max: int
    time_min: float = math.inf  # of rows with a timestamp
    time_max: float = -math.inf
    untimed: bool = True  # some rows have no timestamp (timed by frame)
    gaps: Counter[int] = field(default_factory=Counter)


def scene_stats(tracks: pd.DataFrame) -> dict[str, SceneStats]:
    """Per scene of valid rows, in order of first appearance."""
    out: dict[str, SceneStats] = {}
    for scene, rows in tracks.groupby(S.SCENE, sort=False, observed=True):
        f, a = rows[S.FRAME].to_numpy(np.int64), rows[S.AGENT].to_numpy(np.int64)
        order = np.lexsort((f, a))
        gaps = np.diff(f[order])[a[order][1:] == a[order][:-1]]
        values, counts = np.unique(gaps[gaps > 0], return_counts=True)
        stats = SceneStats(len(rows), int(f.min()), int(f.max()),
                           gaps=Counter(dict(zip(values.tolist(), counts.tolist()))))  # fmt: skip
        if S.TIME in rows:
            t = rows[S.TIME].to_numpy(np.float64)
            timed = t[~np.isnan(t)]
            if len(timed):
                stats.time_min, stats.time_max = float(timed.min()), float(timed.max())
            stats.untimed = len(timed) < len(t)
        out[str(scene)] = stats
    return out


@dataclass(frozen=True)
class Partition:
    """What one score task does: scene, owned last observed frames (lo, hi], the rows to
    read, and how to turn them into windows."""

    index: int
    scene: str
    lo: int  # owned windows end after this frame ...
    hi: int  # ... and at or before this one
    files: tuple[str, ...]  # chunk track files holding the rows
    frame_range: tuple[int, int]  # rows to read (inclusive), by frame
    time_range: tuple[float, float] | None  # and by timestamp (resampled scenes with times)
    step: int  # the scene's frame step (1 for resampled scenes: grid frames)
    unit_seconds: float | None  # seconds per frame unit of untimed rows when resampled
    first_frame: int  # the scene's first frame (the stride counts from it)


def plan_partitions(
    chunks: list[tuple[str, dict[str, SceneStats]]],
    spec: WindowSpec,
    frame_seconds: float,
    resampled: bool,
    rows_per_part: int,
) -> list[Partition]:
    """Partitions of every scene, scenes in order of first appearance; `chunks` holds each
    chunk's track file and scene stats, in input order."""
    scenes: dict[str, list[tuple[str, SceneStats]]] = {}
    for path, stats in chunks:
        for scene, s in stats.items():
            scenes.setdefault(scene, []).append((path, s))
    out: list[Partition] = []
    for scene, parts in scenes.items():
        gaps = sum((s.gaps for _, s in parts), Counter[int]())
        step = max(gaps.items(), key=lambda kv: (kv[1], -kv[0]))[0] if gaps else 1
        rows = sum(s.rows for _, s in parts)
        if resampled:
            out += _resampled(len(out), scene, parts, spec, frame_seconds / step, rows_per_part)
            continue
        first, last = min(s.frame_min for _, s in parts), max(s.frame_max for _, s in parts)
        span = (spec.obs_len - 1) * step
        for lo, hi in _ranges(first - 1, last, rows, rows_per_part):
            need = (lo + 1 - span, hi)
            files = tuple(p for p, s in parts if s.frame_max >= need[0] and s.frame_min <= hi)
            out.append(Partition(len(out), scene, lo, hi, files, need, None, step, None, first))
    return out


def _resampled(
    start: int,
    scene: str,
    parts: list[tuple[str, SceneStats]],
    spec: WindowSpec,
    unit: float,
    rows_per_part: int,
) -> list[Partition]:
    """Partitions over grid frames k of a scene resampled to spec.dt."""
    lows = [s.frame_min * unit for _, s in parts if s.untimed] + [s.time_min for _, s in parts]
    highs = [s.frame_max * unit for _, s in parts if s.untimed] + [s.time_max for _, s in parts]
    t0, t1 = min(lows), max(highs)
    k0 = math.ceil((t0 - TOLERANCE) / spec.dt)
    k1 = math.floor((t1 + TOLERANCE) / spec.dt)
    rows = sum(s.rows for _, s in parts)
    out: list[Partition] = []
    for lo, hi in _ranges(k0 - 1, k1, rows, rows_per_part):
        a = (lo + 1 - (spec.obs_len - 1)) * spec.dt - spec.max_gap - 2 * TOLERANCE
        b = hi * spec.dt + spec.max_gap + 2 * TOLERANCE
        frames = (math.floor(a / unit), math.ceil(b / unit))
        files = tuple(
            p for p, s in parts
            if (s.untimed and s.frame_max >= frames[0] and s.frame_min <= frames[1])
            or (s.time_max >= a and s.time_min <= b)
        )  # fmt: skip
        out.append(Partition(start + len(out), scene, lo, hi, files, frames, (a, b), 1, unit, k0))
    return out


def _ranges(before: int, last: int, rows: int, rows_per_part: int) -> list[tuple[int, int]]:
    """(lo, hi] ranges of equal length covering (before, last], about rows_per_part rows each."""
    n = max(1, min(math.ceil(rows / rows_per_part), last - before))
    edges = [before + round(i * (last - before) / n) for i in range(n + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]
