"""Observation windows over a stream of validated track chunks, via the shared `make_windows`.

Rows must come in frame order within a scene (the raw formats do). After each chunk, every
window whose last observed frame is below the scene's newest frame is final (all agents seen at
that frame have arrived) and is emitted once; the rows the remaining windows still need (the
last `obs_len` frames) are carried to the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from serving.schemas import LineError
from trajectory.data import schema as S
from trajectory.data.windows import Windows, WindowSpec, frame_step, make_windows


@dataclass
class _Scene:
    step: int
    carry: pd.DataFrame
    emitted_upto: int | None = None  # windows whose last observed frame <= this are out


class StreamingWindows:
    """Per-scene carry and emission bookkeeping; windows get `extra["step"]` (frame step)."""

    def __init__(self, spec: WindowSpec) -> None:
        self._spec = spec
        self._scenes: dict[str, _Scene] = {}

    def add(self, tracks: pd.DataFrame) -> tuple[Windows, list[LineError]]:
        """Windows made final by this chunk, and a note per scene of rows that came too late."""
        parts, late_notes = [], []
        for scene, rows in tracks.groupby(S.SCENE, sort=False, observed=True):
            state = self._scenes.get(str(scene))
            if state is None:
                f, a = rows[S.FRAME].to_numpy(np.int64), rows[S.AGENT].to_numpy(np.int64)
                state = self._scenes[str(scene)] = _Scene(frame_step(f, a), rows.iloc[:0])
            elif state.emitted_upto is not None:
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


def _late_note(scene: str, rows: pd.DataFrame, upto: int) -> LineError:
    frames = rows[S.FRAME]
    return LineError(
        line=0,
        reason=(
            f"{len(rows)} rows of scene {scene!r} (frames {frames.min()}..{frames.max()}) came "
            f"after frame {upto} was scored and were skipped; sort the input by frame per scene"
        ),
    )


def _concat(parts: list[Windows], spec: WindowSpec) -> Windows:
    parts = [p for p in parts if len(p)]
    if not parts:
        empty = make_windows(pd.DataFrame(columns=S.TRACK_COLUMNS), spec, with_future=False)
        empty.extra["step"] = np.zeros(0, np.int64)
        return empty
    return Windows.concat(parts) if len(parts) > 1 else parts[0]
