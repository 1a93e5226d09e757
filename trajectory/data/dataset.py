"""The windows dataset on disk: how the ETL writes a scene's windows, and reading them back.

Layout (written by `etl.run_etl`):
  <dir>/scene=<key>/split=<split>/part-<group>-<block>.parquet  one row per window: the
        columns of `Windows.to_frame()` (less scene), the motion features and `scene_name`,
        the scene as read; <key> is `scene_key(scene)`, a short folder-safe name for any
        scene (a URL-quoted name of 50 "é" would be 300 bytes, too long for a folder)
  <dir>/rejects.parquet                                      file, line, reason, raw
  <dir>/manifest.json                                        counts, spec, hashes, data_version

Tracks off the model's time grid (timestamps, or frames of a step other than `spec.dt`) are
first resampled to it (`resample.resample_tracks`); their windows' frames then count steps
of `spec.dt` (frame k is at k * dt seconds). Tracks already at `spec.dt` keep their frames.

Splits: a file under a folder named train, val or test keeps that split. Other scenes are
split by time: windows lying wholly in the first 70% of the scene's frame range are train,
the next 15% val, the last 15% test; windows that cross a boundary are dropped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from trajectory.data import schema as S
from trajectory.data.features import motion_features
from trajectory.data.io import SPLITS
from trajectory.data.resample import resample_tracks
from trajectory.data.windows import Windows, WindowSpec, frame_step, make_windows
from trajectory.exceptions import DataError, NoWindowsError

MANIFEST_FILE, REJECTS_FILE = "manifest.json", "rejects.parquet"
ETL_FORMAT = 3  # bump when the same input and settings would give different output
SCENE_NAME = "scene_name"  # column of the window files: the scene; its folder is scene_key()
_KEY_CHARS = 40  # readable characters of a scene key, before its hash
TIME_SPLIT = (0.70, 0.15, 0.15)
BLOCK_ROWS = 100_000  # track rows windowed at once: bounds a scene's memory
PARTITIONING = pads.partitioning(
    pa.schema([(S.SCENE, pa.string()), (S.SPLIT, pa.string())]), flavor="hive"
)
REJECTS_SCHEMA = pa.schema(
    [("file", pa.string()), ("line", pa.int64()), ("reason", pa.string()), ("raw", pa.string())]
)


def load_windows(
    windows_dir: str | Path,
    spec: WindowSpec,
    split: str | None = None,
    scenes: Iterable[str] | None = None,
) -> Windows:
    """The windows of `split` (all splits if None) and `scenes` (all if None), as arrays.

    `extra` holds the split and the motion-feature columns. Raises NoWindowsError when none
    match, DataError when the folder was made with another window spec.
    """
    root = Path(windows_dir)
    scenes = None if scenes is None else list(scenes)
    manifest = read_manifest(root)
    made_with = asdict(WindowSpec.from_dict(manifest["window_spec"]))
    if made_with != asdict(spec):
        raise DataError(f"{root} was made with window spec {made_with}, not {asdict(spec)}")
    # only the asked split's files are opened (a tuning job must not touch test data at all)
    files = sorted(str(p) for p in root.glob(f"{S.SCENE}=*/{S.SPLIT}={split or '*'}/*.parquet"))
    if not files:
        raise NoWindowsError(f"{root}: no windows for split={split!r}, scenes={scenes!r}")
    filters = []
    if split is not None:
        filters.append(pads.field(S.SPLIT) == split)
    if scenes is not None:
        keyed = manifest.get("format", 0) >= 3  # older outputs used the quoted scene
        filters.append(pads.field(S.SCENE).isin([scene_key(s) if keyed else s for s in scenes]))
    table = pads.dataset(
        files, format="parquet", partitioning=PARTITIONING, partition_base_dir=str(root)
    ).to_table(filter=_all(filters))
    if table.num_rows == 0:
        raise NoWindowsError(f"{root}: no windows for split={split!r}, scenes={scenes!r}")
    frame = table.to_pandas()
    if SCENE_NAME in frame:
        frame[S.SCENE] = frame.pop(SCENE_NAME)
    return Windows.from_frame(frame, spec)


def scene_key(scene: str) -> str:
    """The folder-safe partition value of a scene: up to 40 of its characters, others as
    `_`, then 12 hex digits of its sha256 (distinct scenes, distinct keys), e.g.
    `biwi_eth-3f9a...`; stable across runs and machines."""
    digest = hashlib.sha256(scene.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", scene)[:_KEY_CHARS]
    return f"{readable}-{digest}" if readable else digest


def write_scene_windows(
    tracks: pd.DataFrame,
    out_dir: Path,
    *,
    split: str | None,
    part: str,
    spec: WindowSpec,
    frame_seconds: float,
) -> dict[str, int]:
    """Window one scene's valid rows block by block in time and write them; counts per split.

    `frame_seconds` is the duration of the rows' frame step; rows at another step than
    `spec.dt`, or timed by timestamps, are resampled to `spec.dt` first.
    Cutting by time is exact: a block holds every row a window starting in it can touch, and
    the stride is counted from the scene's first frame, as `make_windows` does for a scene.
    `split` is the folder split (None: split by time); files are named part-<part>-<block>.
    The scene's folder is `scene_key(scene)`; the scene itself is the `scene_name` column.
    """
    tracks = resample_tracks(tracks, frame_seconds=frame_seconds, dt=spec.dt, max_gap=spec.max_gap)
    if not len(tracks):
        return {}
    tracks = tracks.sort_values(S.FRAME, kind="stable")
    f = tracks[S.FRAME].to_numpy(np.int64)
    step = frame_step(f, tracks[S.AGENT].to_numpy(np.int64))
    span = (spec.obs_len + spec.pred_len - 1) * step  # first to last frame of a window
    first, last = int(f[0]), int(f[-1])
    edges = np.append(np.unique(f[::BLOCK_ROWS]), last + 1)
    scene_dir = out_dir / f"{S.SCENE}={scene_key(str(tracks[S.SCENE].iloc[0]))}"
    counts: dict[str, int] = {}
    for block, (lo, hi) in enumerate(itertools.pairwise(edges)):
        rows = tracks.iloc[np.searchsorted(f, lo) : np.searchsorted(f, hi + span)]
        w = make_windows(rows, replace(spec, stride=1), step=step)
        start = w.start_frame
        keep = (start >= lo) & (start < hi) & (((start - first) // step) % spec.stride == 0)
        names = assign_splits(start, start + span, split, first, last)
        for name in SPLITS:
            chosen = np.flatnonzero(keep & (names == name))
            if len(chosen):
                path = scene_dir / f"{S.SPLIT}={name}" / f"part-{part}-{block:05d}.parquet"
                _write_part(w.take(chosen), path, spec.dt)
                counts[name] = counts.get(name, 0) + len(chosen)
    return counts


def assign_splits(
    start: np.ndarray, end: np.ndarray, split: str | None, first: int, last: int
) -> np.ndarray:
    """Each window's split: the folder's, else by time ("" for a window across a boundary)."""
    if split is not None:
        return np.full(len(start), split, dtype=object)
    b1 = first + TIME_SPLIT[0] * (last - first)
    b2 = first + (TIME_SPLIT[0] + TIME_SPLIT[1]) * (last - first)
    out = np.full(len(start), "", dtype=object)
    out[end < b1] = "train"
    out[(start >= b1) & (end < b2)] = "val"
    out[start >= b2] = "test"
    return out


def _write_part(windows: Windows, path: Path, dt: float) -> None:
    table = window_table(windows)
    features = motion_features(windows.obs, windows.nbr, dt)
    for name in features.columns:
        table = table.append_column(name, pa.array(features[name].to_numpy()))
    table = table.append_column(SCENE_NAME, pa.array(windows.scene.astype(str), pa.string()))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", use_dictionary=False)


def window_table(windows: Windows) -> pa.Table:
    """The columns of `windows.to_frame()` less scene, built straight into Arrow (faster
    than converting the frame's columns of small arrays)."""
    n = len(windows)
    columns = {S.AGENT: pa.array(windows.agent_id), S.START_FRAME: pa.array(windows.start_frame)}
    arrays = {S.OBS: windows.obs, S.NBR: windows.nbr, S.FUT: windows.fut}
    for name, values in arrays.items():
        if values is not None:
            flat = values.reshape(n, -1)  # (N, size)
            offsets = pa.array(np.arange(n + 1, dtype=np.int32) * flat.shape[1])
            columns[name] = pa.ListArray.from_arrays(
                offsets, pa.array(flat.ravel(), from_pandas=True)
            )
    for name, extra in windows.extra.items():
        columns[name] = pa.array(extra)
    return pa.table(columns)


def write_rejects(rejects: pd.DataFrame, path: Path) -> None:
    """Write a rejects table (REJECTS_SCHEMA columns), if it has rows."""
    if len(rejects):
        table = pa.Table.from_pandas(rejects[REJECTS_SCHEMA.names], preserve_index=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.cast(REJECTS_SCHEMA), path)


def read_manifest(windows_dir: str | Path) -> dict[str, Any]:
    """The manifest.json the ETL wrote into `windows_dir`."""
    path = Path(windows_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path}: no manifest; run the ETL into {windows_dir} first") from err
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable manifest: {err}") from err


def write_manifest(
    windows_dir: Path,
    *,
    files: list[dict[str, Any]],
    rows: dict[str, int],
    windows: dict[str, dict[str, int]],
    spec: WindowSpec,
    settings: dict[str, float],
    failed_scenes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write manifest.json after every other output file; the manifest.

    data_version hashes what decides the output: the inputs (each file's path and sha256),
    the window spec, the settings used and the ETL format; re-running gives the same one.
    """
    inputs = hashlib.sha256("".join(f"{f['path']}\0{f['sha256']}\n" for f in files).encode())
    decides = {
        "format": ETL_FORMAT,
        "inputs_sha256": inputs.hexdigest(),
        "window_spec": asdict(spec),
        "settings": settings,
        "time_split": TIME_SPLIT,
    }
    version = hashlib.sha256(json.dumps(decides, sort_keys=True).encode()).hexdigest()[:12]
    manifest = {
        **decides,
        "data_version": version,
        "outputs_sha256": hash_files(
            windows_dir, [p for p in windows_dir.rglob("*") if p.is_file()]
        ),
        "rows": rows,
        "windows": windows,
        "windows_total": sum(n for scene in windows.values() for n in scene.values()),
        "files": files,
        "failed_scenes": failed_scenes or [],
        "schema": {
            "tracks": {c: str(t) for c, t in S.TRACK_DTYPES.items()},
            "windows": windows_schema(windows_dir),
            "rejects": {f.name: str(f.type) for f in REJECTS_SCHEMA},
        },
    }
    (windows_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def hash_files(root: Path, paths: Iterable[Path]) -> str:
    """sha256 over each file's path relative to root and its bytes, in sorted path order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def merge_parquet(parts: list[Path], dest: Path, schema: pa.Schema) -> None:
    """Concatenate Parquet files into `dest`, one at a time."""
    with pq.ParquetWriter(dest, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part).cast(schema))


def windows_schema(windows_dir: Path) -> dict[str, str]:
    """Column name -> Arrow type of the window files (from the first part file)."""
    first = next(iter(sorted(windows_dir.glob(f"{S.SCENE}=*/{S.SPLIT}=*/*.parquet"))), None)
    if first is None:
        return {}
    fields = pq.read_schema(first)
    names = {f.name: str(f.type) for f in fields}
    return {S.SCENE: "string", S.SPLIT: "string", **names}


def _all(filters: list[pads.Expression]) -> pads.Expression | None:
    if not filters:
        return None
    out = filters[0]
    for f in filters[1:]:
        out = out & f
    return out
