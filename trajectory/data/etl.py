"""Raw track files -> validated tracks -> windows with motion features, as Parquet.

Tasks (Dask runs them on a cluster; `engine="pandas"` runs the same functions one after
another in this process, so the two differ only in how tasks run):
  read   one per raw file: parse and validate (`io.read_tracks`), write the file's rejects
  scene  one per (scene, folder split): gather the scene's rows from all its files, check
         duplicates and jumps across files, then `dataset.write_scene_windows` (which first
         resamples tracks recorded at another step than the model's `dt`)
The driver plans, collects counts and writes the manifest; track rows never pass through
it. Tasks are submitted scene by scene, so a scene's files are read just before its scene
task, and finished scenes free their rows. The layout and the splits are described in
`trajectory.data.dataset`. Everything is written into a temporary folder beside
output_dir, which then replaces output_dir.

One bad input never stops the run: a file its read task cannot read, or a scene its task
cannot window or write, is reported (a rejects row with the reason, `failed_files` /
`failed_scenes` in the manifest and the summary) and every other file and scene is done.
When nothing yields a window, NoWindowsError says why (no valid row, tracks shorter than a
window, or too few frames per split), and the rejects are kept beside output_dir as
`<output_dir>.rejects.parquet`, named in the message.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from tqdm import tqdm

from trajectory.config import Settings
from trajectory.data import schema as S
from trajectory.data.dataset import (
    MANIFEST_FILE,
    REJECTS_FILE,
    REJECTS_SCHEMA,
    TIME_SPLIT,
    merge_parquet,
    scene_key,
    write_manifest,
    write_rejects,
    write_scene_windows,
)
from trajectory.data.io import (
    REJECT_COLUMNS,
    RawFile,
    discover,
    file_sha256,
    read_lines,
    read_tracks,
)
from trajectory.data.validate import validate_tracks
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import ConfigError, DataError, InputFileError, NoWindowsError
from trajectory.files import prepare_output

log = logging.getLogger(__name__)

ENGINES = ("dask", "pandas")


@dataclass
class FileOutput:
    """What a read task leaves on its worker: counts, and the valid rows (index: line)."""

    path: str  # relative to the input folder
    rows_in: int = 0
    rows_rejected: int = 0
    sha256: str = ""
    error: str | None = None
    tracks: pd.DataFrame | None = None

    def meta(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "tracks"}


@dataclass(frozen=True)
class Group:
    """One scene task: a scene's rows from `files`, which share a folder split."""

    index: int
    scene: str
    split: str | None
    files: tuple[RawFile, ...]


@dataclass
class GroupOutput:
    group: Group
    rows_valid: int = 0
    rows_rejected: int = 0  # across files
    windows: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # metas of its text files
    longest_track: int = 0  # most valid rows of one agent: tells why no window fits
    error: str | None = None  # why the scene could not be windowed or written

    def failure(self) -> dict[str, Any] | None:
        if self.error is None:
            return None
        return {"scene": self.group.scene, "split": self.group.split, "error": self.error}


@dataclass(frozen=True)
class EtlResult:
    data_version: str
    output_dir: Path
    manifest_path: Path
    rejects_path: Path
    rows_in: int
    rows_valid: int
    rows_rejected: int
    windows: dict[str, dict[str, int]]  # scene -> split -> count
    failed_files: list[str]
    failed_scenes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a log or a terminal."""
        splits: Counter[str] = Counter()
        for per_split in self.windows.values():
            splits.update(per_split)
        failed = f", {len(self.failed_files)} files failed" if self.failed_files else ""
        if self.failed_scenes:
            n = len(self.failed_scenes)
            failed += f", {n} scene{'s' if n > 1 else ''} failed (see {self.rejects_path.name})"
        return (
            f"data version {self.data_version}: {self.rows_in} rows in, {self.rows_valid} valid, "
            f"{self.rows_rejected} rejected{failed}; windows {dict(splits)} in {self.output_dir}"
        )


def run_etl(
    input_dir: str | Path,
    output_dir: str | Path,
    settings: Settings,
    client: Any | None = None,
    progress: bool = True,
    engine: str = "dask",
) -> EtlResult:
    """Turn every `*.txt` / `*.csv` under input_dir into windows under output_dir.

    engine "dask" runs on `client`, else on `Client(settings.dask_address)`, else on a new
    LocalCluster of settings.dask_workers processes; a remote cluster must see both folders
    at the same paths. engine "pandas" runs in this process.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
    source, target = Path(input_dir).resolve(), Path(output_dir).resolve()
    raws = discover(source)
    prepare_output(target, folder=True)
    if target.exists() and any(target.iterdir()) and not (target / MANIFEST_FILE).is_file():
        raise DataError(f"{target} is not empty and holds no {MANIFEST_FILE}: not replacing it")
    spec = WindowSpec.from_settings(settings)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    kept_rejects = target.with_name(f"{target.name}.{REJECTS_FILE}")
    try:
        with _runner(engine, client, settings) as runner:
            groups, csv_out = _execute(runner, raws, tmp, spec, settings, progress)
        manifest = _finish(tmp, groups, csv_out, spec, settings)
        _check_usable(source, manifest, groups, spec, tmp / REJECTS_FILE, kept_rejects)
        _swap(tmp, target)
        kept_rejects.unlink(missing_ok=True)  # from an earlier run that made no window
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rows, version = manifest["rows"], manifest["data_version"]
    log.info("etl %s: rows %s, %d windows", version, rows, manifest["windows_total"])
    return EtlResult(
        data_version=version,
        output_dir=target,
        manifest_path=target / MANIFEST_FILE,
        rejects_path=target / REJECTS_FILE,
        rows_in=rows["in"],
        rows_valid=rows["valid"],
        rows_rejected=rows["rejected"],
        windows=manifest["windows"],
        failed_files=[f["path"] for f in manifest["files"] if f["error"]],
        failed_scenes=[f["scene"] for f in manifest["failed_scenes"]],
    )


class _Lazy:
    """A task of the in-process engine: runs when its result is first asked for."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn: Callable[..., Any] | None = fn
        self._args = args
        self._value: Any = None

    def result(self) -> Any:
        if self._fn is not None:
            self._value = self._fn(*(_resolve(a) for a in self._args))
            self._fn, self._args = None, ()  # drop inputs: a scene's rows are freed after it
        return self._value


def _resolve(arg: Any) -> Any:
    if isinstance(arg, list):
        return [_resolve(a) for a in arg]
    return arg.result() if isinstance(arg, _Lazy) else arg


class _Runner:
    """Runs tasks on a Dask client, or lazily in this process when there is none."""

    def __init__(self, client: Any | None) -> None:
        self.client = client

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.client is None:
            return _Lazy(fn, args)
        return self.client.submit(fn, *args, pure=False)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        ordered: Iterable[Any] = futures
        if self.client is not None:
            from distributed import as_completed

            ordered = as_completed(futures)
        for future in ordered:
            yield future.result()


@contextmanager
def _runner(engine: str, client: Any | None, settings: Settings) -> Iterator[_Runner]:
    if engine == "pandas" or client is not None:
        yield _Runner(client if engine == "dask" else None)
        return
    if settings.dask_address:
        from distributed import Client

        with Client(settings.dask_address) as remote:
            yield _Runner(remote)
        return
    with local_client(settings) as local:
        yield _Runner(local)


@contextmanager
def local_client(settings: Settings) -> Iterator[Any]:
    """A Client of the LocalCluster `run_etl` starts when given no client or address:
    settings.dask_workers processes of settings.dask_threads_per_worker threads."""
    import dask
    from distributed import Client, LocalCluster

    # Dask's fixed MALLOC_TRIM_THRESHOLD_ turns off glibc's dynamic mmap threshold, so each
    # large numpy temporary is mmapped and zero-filled afresh: windowing ran ~1.5x slower.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=settings.dask_workers,
            threads_per_worker=settings.dask_threads_per_worker,
            processes=True,
            dashboard_address=":0",  # a free port: None means the fixed 8787
            memory_limit=settings.dask_memory_limit,
        ) as cluster,
        Client(cluster) as local,
    ):
        yield local


def _execute(
    runner: _Runner,
    raws: list[RawFile],
    tmp: Path,
    spec: WindowSpec,
    settings: Settings,
    progress: bool,
) -> tuple[list[GroupOutput], list[FileOutput]]:
    """Submit read and scene tasks; CSV files are read first, as their rows name the scenes."""
    index = {r.rel: i for i, r in enumerate(raws)}
    csv = {
        r.rel: runner.submit(_read_task, r, index[r.rel], tmp, settings)
        for r in raws
        if r.scene is None
    }
    csv_scenes = [runner.submit(_scenes_of, f).result() for f in csv.values()]
    groups = _plan(raws, dict(zip(csv, csv_scenes, strict=True)))
    futures = []
    for group in groups:
        files = [
            csv[r.rel]
            if r.rel in csv
            else runner.submit(_read_task, r, index[r.rel], tmp, settings)
            for r in group.files
        ]
        futures.append(runner.submit(_scene_task, group, files, tmp, spec, settings))
    outputs = []
    with tqdm(total=len(groups), desc="etl", unit="scene", disable=not progress) as bar:
        for out in runner.as_completed(futures):
            outputs.append(out)
            bar.update()
    csv_out = [runner.submit(_without_tracks, f).result() for f in csv.values()]
    return sorted(outputs, key=lambda o: o.group.index), csv_out


def _plan(raws: list[RawFile], csv_scenes: dict[str, list[str]]) -> list[Group]:
    members: dict[tuple[str, str], list[RawFile]] = {}
    for r in raws:
        for scene in [r.scene] if r.scene is not None else csv_scenes[r.rel]:
            members.setdefault((scene, r.split or ""), []).append(r)
    return [
        Group(index=i, scene=scene, split=split or None, files=tuple(files))
        for i, ((scene, split), files) in enumerate(sorted(members.items()))
    ]


def _read_task(raw: RawFile, index: int, tmp: Path, settings: Settings) -> FileOutput:
    """Read one file; a file that cannot be read is reported, never stops the run."""
    dest = tmp / "_rejects" / f"file-{index:06d}.parquet"
    try:
        result = read_tracks(raw.path, settings=settings)
    except Exception as err:  # noqa: BLE001 - quarantined with its reason, the run goes on
        reason = str(err) if isinstance(err, DataError) else f"{raw.path}: {_describe(err)}"
        log.warning("etl: skipping %s: %s", raw.rel, reason)
        failed = [[raw.rel, 0, f"unreadable file: {reason}", ""]]
        write_rejects(pd.DataFrame(failed, columns=REJECT_COLUMNS), dest)
        return FileOutput(raw.rel, sha256=file_sha256(raw.path), error=reason)
    write_rejects(result.rejects.assign(file=raw.rel), dest)
    return FileOutput(
        raw.rel, result.rows_in, len(result.rejects), result.sha256, None, result.tracks
    )


def _describe(err: BaseException) -> str:
    """An unexpected error in one line: its class and message, shortened."""
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text[:300]}"


def _scenes_of(out: FileOutput) -> list[str]:
    return [] if out.tracks is None else sorted(out.tracks[S.SCENE].unique())


def _without_tracks(out: FileOutput) -> FileOutput:
    return replace(out, tracks=None)


def _scene_task(
    group: Group, outputs: list[FileOutput], tmp: Path, spec: WindowSpec, settings: Settings
) -> GroupOutput:
    """Gather one scene's rows, re-check them across files, window and write them."""
    result = GroupOutput(group=group)
    pieces, sources = [], []
    for raw, out in zip(group.files, outputs, strict=True):
        if raw.scene is not None:
            result.files.append(out.meta())
        if out.tracks is not None:
            t = out.tracks
            pieces.append(t if raw.scene is not None else t[t[S.SCENE] == group.scene])
            sources.append(raw)
    if not pieces:
        return result
    part = f"{group.index:05d}"
    try:
        tracks, rejects = check_across_files(pieces, sources, settings)
        write_rejects(rejects, tmp / "_rejects" / f"scene-{group.index:06d}.parquet")
        result.rows_valid, result.rows_rejected = len(tracks), len(rejects)
        if len(tracks):
            result.longest_track = int(tracks.groupby(S.AGENT).size().max())
            result.windows = write_scene_windows(
                tracks, tmp, split=group.split, part=part, spec=spec,
                frame_seconds=settings.frame_seconds,
            )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - reported with its reason, the run goes on
        result.error, result.windows = _describe(err), {}
        log.warning("etl: scene %r (%s) failed: %s", group.scene, group.split, result.error)
        for written in tmp.glob(f"{S.SCENE}={scene_key(group.scene)}/*/part-{part}-*.parquet"):
            written.unlink()
        reason = f"scene {group.scene[:80]!r} failed, no window written: {result.error}"
        failed = [[raw.rel, 0, reason, ""] for raw in sources]
        dest = tmp / "_rejects" / f"scene-{group.index:06d}-failed.parquet"
        write_rejects(pd.DataFrame(failed, columns=REJECT_COLUMNS), dest)
    return result


def check_across_files(
    pieces: list[pd.DataFrame], sources: list[RawFile], settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the scene's rows from all files less duplicates and jumps between files, rejects)."""
    if len(pieces) == 1:
        return pieces[0], pd.DataFrame(columns=REJECT_COLUMNS)
    file_of = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
    line_of = np.concatenate([p.index.to_numpy(np.int64) for p in pieces])
    valid, reasons = validate_tracks(
        pd.concat(pieces, ignore_index=True),
        max_speed=settings.max_speed,
        frame_seconds=settings.frame_seconds,
        max_abs_coordinate=settings.max_abs_coordinate,
        check_order=False,
        where=lambda i: f"{sources[file_of[cast(int, i)]].rel} line {line_of[cast(int, i)]}",
    )
    pos = reasons.index.to_numpy(np.int64)
    rejects = [
        pd.DataFrame({"file": src.rel, "line": line_of[mine], "reason": reasons.loc[mine]}).assign(
            raw=read_lines(src.path, line_of[mine])
        )
        for k, src in enumerate(sources)
        if len(mine := pos[file_of[pos] == k])
    ]
    return valid, pd.concat(rejects) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)


def _finish(
    tmp: Path,
    groups: list[GroupOutput],
    csv_out: list[FileOutput],
    spec: WindowSpec,
    settings: Settings,
) -> dict[str, Any]:
    """Merge the rejects and write manifest.json; the manifest."""
    merge_parquet(sorted((tmp / "_rejects").glob("*.parquet")), tmp / REJECTS_FILE, REJECTS_SCHEMA)
    shutil.rmtree(tmp / "_rejects", ignore_errors=True)
    files = sorted(
        [m for g in groups for m in g.files] + [c.meta() for c in csv_out], key=lambda m: m["path"]
    )
    windows: dict[str, Counter[str]] = {}
    for g in (g for g in groups if g.windows):
        windows.setdefault(g.group.scene, Counter()).update(g.windows)
    rows = {
        "in": sum(f["rows_in"] for f in files),
        "valid": sum(g.rows_valid for g in groups),
        "rejected": sum(f["rows_rejected"] for f in files) + sum(g.rows_rejected for g in groups),
    }
    used = {
        "frame_seconds": settings.frame_seconds,
        "max_speed": settings.max_speed,
        "max_abs_coordinate": settings.max_abs_coordinate,
    }
    counts = {scene: dict(per_split) for scene, per_split in windows.items()}
    failed = [f for g in groups if (f := g.failure()) is not None]
    return write_manifest(
        tmp, files=files, rows=rows, windows=counts, spec=spec, settings=used,
        failed_scenes=failed,
    )  # fmt: skip


def _check_usable(
    source: Path,
    manifest: dict[str, Any],
    groups: list[GroupOutput],
    spec: WindowSpec,
    rejects: Path,
    keep_at: Path,
) -> None:
    """InputFileError when no file was usable; NoWindowsError saying why when no window
    came out, with the rejects moved to `keep_at` (named in the message) if there are any."""
    files = manifest["files"]
    if all(f["error"] for f in files):
        errors = "; ".join(f["error"] for f in files)
        raise InputFileError(f"{source}: no usable input file: {errors}")
    if manifest["windows_total"]:
        return
    rows = manifest["rows"]
    kept = "no row was rejected"
    if rows["rejected"] and rejects.is_file():
        rejects.replace(keep_at)
        kept = f"the {rows['rejected']} rejected rows are kept in {keep_at}"
    raise NoWindowsError(f"{source}: no complete window: {_why_no_windows(groups, spec, rows)}; {kept}")


def _why_no_windows(groups: list[GroupOutput], spec: WindowSpec, rows: dict[str, int]) -> str:
    """The likeliest reason a run made no window, for the error message."""
    need = spec.obs_len + spec.pred_len
    failed = [g for g in groups if g.error]
    if failed:
        return f"{len(failed)} scene(s) failed, e.g. {failed[0].group.scene[:80]!r}: {failed[0].error}"
    if not rows["valid"]:
        return f"no valid row ({rows['rejected']} of {rows['in']} rows rejected)"
    longest = max(g.longest_track for g in groups)
    if longest < need:
        return (
            f"the longest track has {longest} points, a window needs {need} consecutive "
            f"points (obs_len {spec.obs_len} + pred_len {spec.pred_len})"
        )
    shares = "/".join(f"{round(100 * s)}" for s in TIME_SPLIT)
    return (
        f"tracks of up to {longest} points, but too few frames per split: a window of {need} "
        f"consecutive points must fit inside one split (scenes outside train/, val/ and test/ "
        f"folders are split by time {shares}), and gaps over max_gap {spec.max_gap:g} s cut tracks"
    )


def _swap(tmp: Path, target: Path) -> None:
    """Put tmp in target's place: an old target is moved aside, then deleted."""
    if not target.exists():
        tmp.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old)
