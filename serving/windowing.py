"""Observation windows of batch scoring, via the shared `make_windows`: `partition_windows`
cuts the windows one partition of a batch owns (`serving.partitions`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from serving.partitions import Partition
from trajectory.data import schema as S
from trajectory.data.resample import resample
from trajectory.data.windows import Windows, WindowSpec, make_windows


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
