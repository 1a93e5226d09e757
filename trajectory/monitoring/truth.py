"""Ground truth for the live join: the tracks of logged scenes, rebuilt from the ETL output."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from trajectory.data import schema as S
from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import NoWindowsError
from trajectory.privacy.pseudonym import Pseudonymiser

log = logging.getLogger(__name__)


def tracks_from_windows(windows: Windows, steps: dict[str, int]) -> pd.DataFrame:
    """Track rows (scene, frame, agent_id, x, y) rebuilt from windows with a future, for the
    scenes whose frame step is known (the log records it with every prediction)."""
    if windows.fut is None or not len(windows):
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    scene = windows.scene.astype(str)
    keep = np.isin(scene, list(steps))
    if not keep.any():
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    w = windows.take(np.flatnonzero(keep))
    pos = np.concatenate([w.obs, w.fut], axis=1)  # (N, L, 2)
    length = pos.shape[1]
    step = np.array([steps[s] for s in w.scene.astype(str)], np.int64)
    frames = w.start_frame[:, None] + step[:, None] * np.arange(length)  # (N, L)
    tracks = pd.DataFrame({
        S.SCENE: np.repeat(w.scene.astype(str), length),
        S.FRAME: frames.ravel(),
        S.AGENT: np.repeat(w.agent_id, length),
        S.X: pos[..., 0].ravel(),
        S.Y: pos[..., 1].ravel(),
    })
    return tracks.drop_duplicates([S.SCENE, S.AGENT, S.FRAME], ignore_index=True)


def ground_truth(rows: pd.DataFrame, windows_dir: Path, spec: WindowSpec,
                  pseudonyms: Pseudonymiser) -> pd.DataFrame:
    """Tracks of the logged scenes from the ETL output (empty when it has none of them yet).
    The log names scenes by pseudonym: the ETL's scenes are pseudonymised to find them."""
    from trajectory.data.dataset import load_windows

    logged = rows.dropna(subset=["scene_key"]).groupby("scene_key")["frame_step"].first()
    named = {pseudonyms.scene(s): s for s in scene_names(windows_dir)}
    steps = {named[k]: int(v) for k, v in logged.items() if k in named}
    if not steps:
        if len(logged):
            log.warning("no ground truth yet in %s for the %d logged scenes", windows_dir,
                        len(logged))
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    try:
        windows = load_windows(windows_dir, spec, scenes=list(steps))
    except NoWindowsError:
        log.warning("no ground truth yet in %s for %d logged scenes", windows_dir, len(steps))
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    return tracks_from_windows(windows, steps)


def scene_names(windows_dir: Path) -> list[str]:
    """The scenes of an ETL output: the `scene_name` of one file per scene folder (outputs
    older than that column name the folder by the URL-quoted scene)."""
    import pyarrow.parquet as pq

    from trajectory.data.dataset import SCENE_NAME

    names = []
    for folder in sorted(Path(windows_dir).glob(f"{S.SCENE}=*")):
        part = next(iter(sorted(folder.glob("*/*.parquet"))), None)
        if part is None:
            continue
        file = pq.ParquetFile(part)
        if SCENE_NAME in file.schema_arrow.names and file.metadata.num_rows:
            column = file.read_row_group(0, columns=[SCENE_NAME]).column(0)
            names.append(str(column[0].as_py()))
        else:
            names.append(unquote(folder.name.split("=", 1)[1]))
    return names
