"""Observation windows of batch scoring, via the shared `make_windows`.

`partition_windows` cuts the windows one partition of a batch owns (`serving.partitions`);
batch scoring uses it. `StreamingWindows` is the older streaming form, kept for callers that
feed chunks in order:

Rows must come in frame (or time) order within a scene (the raw formats do). After each chunk,
every window whose last observed frame is below the scene's newest frame is final (all agents
seen at that frame have arrived) and is emitted once; the rows the remaining windows still need
(the last `obs_len` frames) are carried to the next chunk.

A scene off the model's time grid (rows timed by timestamps, or frame ids whose step lasts
`frame_seconds` other than `spec.dt`) is resampled to `spec.dt` by the ETL's `resample` as the
chunks come: each agent's last raw point is carried to interpolate across the cut, and a grid
frame (k for k * dt seconds) is final once it lies more than the model's `max_gap` before the
newest time, as no later point can be interpolated back to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from serving.partitions import Partition
from serving.schemas import LineError
from trajectory.data import schema as S
from trajectory.data.resample import TOLERANCE, needs_resampling, resample
from trajectory.data.windows import Windows, WindowSpec, frame_step, make_windows

_TAIL = ["agent", "t", "x", "y"]


@dataclass
class _Scene:
    step: int
    carry: pd.DataFrame
    emitted_upto: int | None = None  # windows whose last observed frame <= this are out
    unit_seconds: float | None = None  # seconds per frame unit when resampled, else None
    tail: pd.DataFrame | None = None  # each agent's last raw point (_TAIL), when resampled
    newest: float = -math.inf  # newest raw time (seconds), when resampled


class StreamingWindows:
    """Per-scene carry and emission bookkeeping; windows get `extra["step"]` (frame step).

    `frame_seconds`: how long a frame step of rows without `time` lasts (default
    `spec.dt`: frame ids at the model's step, windowed as they are).
    """

    def __init__(self, spec: WindowSpec, frame_seconds: float | None = None) -> None:
        self._spec = spec
        self._frame_seconds = spec.dt if frame_seconds is None else frame_seconds
        self._scenes: dict[str, _Scene] = {}

    def add(self, tracks: pd.DataFrame) -> tuple[Windows, list[LineError]]:
        """Windows made final by this chunk, and a note per scene of rows that came too late."""
        parts, late_notes = [], []
        for scene, rows in tracks.groupby(S.SCENE, sort=False, observed=True):
            state = self._scenes.get(str(scene))
            if state is None:
                state = self._scenes[str(scene)] = self._new_scene(rows)
            if state.unit_seconds is not None:
                combined, horizon, late = self._resample(state, str(scene), rows)
                if late is not None:
                    late_notes.append(late)
                parts.append(self._emit(state, combined, horizon))
                continue
            if state.emitted_upto is not None:
                late = rows[S.FRAME].to_numpy() <= state.emitted_upto
                if late.any():
                    late_notes.append(_late_note(str(scene), rows[late], state.emitted_upto))
                    rows = rows[~late]
            combined = pd.concat([state.carry, rows], ignore_index=True)
            horizon = int(combined[S.FRAME].max()) - 1  # the newest frame may continue
            parts.append(self._emit(state, combined, horizon))
        return _concat(parts, self._spec), late_notes

    def flush(self) -> Windows:
        """The windows still pending at the end of the input."""
        parts = [self._emit(s, s.carry, None) for s in self._scenes.values() if len(s.carry)]
        self._scenes.clear()
        return _concat(parts, self._spec)

    def _new_scene(self, rows: pd.DataFrame) -> _Scene:
        f, a = rows[S.FRAME].to_numpy(np.int64), rows[S.AGENT].to_numpy(np.int64)
        step = frame_step(f, a)
        if not needs_resampling(rows, self._frame_seconds, self._spec.dt):
            return _Scene(step, rows.iloc[:0])
        grid = pd.DataFrame(columns=S.TRACK_COLUMNS).astype(S.TRACK_DTYPES)
        tail = pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "agent" else np.float64)
                             for c in _TAIL})  # fmt: skip
        return _Scene(1, grid, unit_seconds=self._frame_seconds / step, tail=tail)

    def _resample(
        self, state: _Scene, scene: str, rows: pd.DataFrame
    ) -> tuple[pd.DataFrame, int, LineError | None]:
        """(carried and new grid rows, the last final grid frame, a note on late rows)."""
        dt, max_gap = self._spec.dt, self._spec.max_gap
        assert state.unit_seconds is not None and state.tail is not None
        t = rows[S.FRAME].to_numpy(np.float64) * state.unit_seconds
        if S.TIME in rows:
            given = rows[S.TIME].to_numpy(np.float64)
            t = np.where(np.isnan(given), t, given)
        note = None
        if state.emitted_upto is not None:
            late = t <= state.emitted_upto * dt + TOLERANCE
            if late.any():
                note = _late_note(scene, rows[late], state.emitted_upto, t[late], dt)
                rows, t = rows[~late], t[~late]
        raw = pd.DataFrame(
            {"agent": rows[S.AGENT].to_numpy(np.int64), "t": t,
             "x": rows[S.X].to_numpy(np.float64), "y": rows[S.Y].to_numpy(np.float64)}
        )  # fmt: skip
        points = pd.concat([state.tail, raw], ignore_index=True)
        order = np.lexsort((points["t"].to_numpy(), points["agent"].to_numpy()))
        points = points.iloc[order]
        agent = points["agent"].to_numpy(np.int64)
        r = resample(
            points["t"].to_numpy(), points[["x", "y"]].to_numpy(), agent, dt=dt, max_gap=max_gap
        )
        # grid frames up to each carried point were made with the previous chunk
        tail_agent = state.tail["agent"].to_numpy(np.int64)
        done = np.floor((state.tail["t"].to_numpy() + TOLERANCE) / dt).astype(np.int64)
        at = np.searchsorted(tail_agent, r.group)
        known = at < len(tail_agent)
        known[known] = tail_agent[at[known]] == r.group[known]
        fresh = ~known
        fresh[known] = r.k[known] > done[at[known]]
        grid = pd.DataFrame(
            {S.SCENE: scene, S.FRAME: r.k[fresh], S.AGENT: r.group[fresh],
             S.X: r.xy[fresh, 0], S.Y: r.xy[fresh, 1]}
        ).astype(S.TRACK_DTYPES)  # fmt: skip
        if len(t):
            state.newest = max(state.newest, float(t.max()))
        last = points.groupby("agent", sort=True).tail(1).sort_values("agent")
        state.tail = last[last["t"] >= state.newest - max_gap - TOLERANCE].reset_index(drop=True)
        final = (state.newest - max_gap - TOLERANCE) / dt  # grid frames before it are final
        horizon = math.ceil(final) - 1 if math.isfinite(final) else -(2**62)
        return pd.concat([state.carry, grid], ignore_index=True), horizon, note

    def _emit(self, state: _Scene, rows: pd.DataFrame, horizon: int | None) -> Windows:
        spec, span = self._spec, (self._spec.obs_len - 1) * state.step
        windows = make_windows(rows, spec, with_future=False, step=state.step)
        last = windows.start_frame + span
        keep = np.ones(len(windows), bool)
        if horizon is not None:
            keep &= last <= horizon
        if state.emitted_upto is not None:
            keep &= last > state.emitted_upto
        windows = windows.take(np.flatnonzero(keep))
        windows.extra["step"] = np.full(len(windows), state.step, np.int64)
        if horizon is not None:
            if state.emitted_upto is None or horizon > state.emitted_upto:
                state.emitted_upto = horizon
            state.carry = rows[rows[S.FRAME] > state.emitted_upto - span]
        return windows


def _late_note(
    scene: str,
    rows: pd.DataFrame,
    upto: int,
    seconds: np.ndarray | None = None,
    dt: float | None = None,
) -> LineError:
    if seconds is not None and dt is not None:
        where = f"at {seconds.min():g}..{seconds.max():g} s) came after {upto * dt:g} s"
        order = "time"
    else:
        frames = rows[S.FRAME]
        where = f"frames {frames.min()}..{frames.max()}) came after frame {upto}"
        order = "frame"
    return LineError(
        line=0,
        reason=(
            f"{len(rows)} rows of scene {scene!r} ({where} was scored and were skipped; "
            f"sort the input by {order} per scene"
        ),
    )


def _concat(parts: list[Windows], spec: WindowSpec) -> Windows:
    parts = [p for p in parts if len(p)]
    if not parts:
        empty = make_windows(pd.DataFrame(columns=S.TRACK_COLUMNS), spec, with_future=False)
        empty.extra["step"] = np.zeros(0, np.int64)
        return empty
    return Windows.concat(parts) if len(parts) > 1 else parts[0]


def partition_windows(rows: pd.DataFrame, part: Partition, spec: WindowSpec) -> Windows:
    """The windows a partition owns (last observed frame in (part.lo, part.hi]), from the
    valid rows of its scene it read; `extra["step"]` holds the frame step of each.

    Resampled scenes (`part.unit_seconds` set) are first put on the grid of `spec.dt` by the
    ETL's `resample`, each agent's points in time order, as `resample_tracks` does.
    """
    if part.unit_seconds is not None and len(rows):
        t = rows[S.FRAME].to_numpy(np.float64) * part.unit_seconds
        if S.TIME in rows:
            given = rows[S.TIME].to_numpy(np.float64)
            t = np.where(np.isnan(given), t, given)
        agent = rows[S.AGENT].to_numpy(np.int64)
        order = np.lexsort((t, agent))
        r = resample(t[order], rows[[S.X, S.Y]].to_numpy(np.float64)[order], agent[order],
                     dt=spec.dt, max_gap=spec.max_gap)  # fmt: skip
        rows = pd.DataFrame(
            {S.SCENE: part.scene, S.FRAME: r.k, S.AGENT: r.group, S.X: r.xy[:, 0],
             S.Y: r.xy[:, 1]}
        ).astype(S.TRACK_DTYPES)  # fmt: skip
    windows = make_windows(rows, replace(spec, stride=1), with_future=False, step=part.step)
    start = windows.start_frame
    last = start + (spec.obs_len - 1) * part.step
    keep = (last > part.lo) & (last <= part.hi)
    if spec.stride > 1:
        keep &= ((start - part.first_frame) // part.step) % spec.stride == 0
    windows = windows.take(np.flatnonzero(keep))
    windows.extra["step"] = np.full(len(windows), part.step, np.int64)
    return windows
