"""Read raw track files (ETH/UCY text or CSV) into validated rows and a table of rejects.

Formats:
  text  `frame agent_id x y` per line, tab or whitespace separated (the ETH/UCY files); the
        scene is the file stem without a trailing `_partNN`, `_train` or `_val`.
  CSV   (`.csv`) a header naming `agent_id, x, y`, one of `frame` / `timestamp`, optionally
        `scene` (else the file's scene as for text). A timestamp in seconds is kept in the
        rows' `time` column, and their frame is the timestamp in milliseconds (what the
        order and duplicate checks compare). No quoting.
Frame ids are timed by TRAJ_FRAME_SECONDS per frame step (`resample.track_seconds`); the ETL
resamples tracks to the model's step, the reader returns them as recorded.

A file is read in chunks of whole lines. Pandas' C parser takes each chunk; a chunk it
cannot parse cleanly is halved until the bad lines sit in small pieces, which are parsed
line by line to name them. Line numbers are 1-based physical lines (a CSV header is line 1);
blank lines are skipped, not rejected. `discover` lists the raw files of an input folder.

A whole file that cannot hold rows is one InputFileError naming it and why (`check_file`):
empty, header only, only blank lines, or not text at all (a NUL byte, or mostly control
characters and invalid UTF-8 in its first 8 KiB; a few latin-1 bytes are still text).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trajectory.config import Settings, get_settings
from trajectory.data import schema as S
from trajectory.data.validate import NUMERIC, validate_tracks
from trajectory.exceptions import InputFileError

REJECT_COLUMNS = ["file", "line", "reason", "raw"]
SPLITS = ("train", "val", "test")
CHUNK_BYTES = 8 << 20
TIMESTAMP = "timestamp"
_RAW_CHARS = 200  # a rejected line is kept up to this length
_SLOW_BYTES = 16 << 10  # a failing piece this small is parsed line by line
_SNIFF_BYTES = 8 << 10  # bytes looked at to tell text from binary
_BINARY_SHARE = 0.3  # more control characters and invalid UTF-8 than this: not text
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")
_NO_REJECTS = pd.DataFrame({"line": pd.Series(dtype=np.int64), "reason": [], "raw": []})


@dataclass(frozen=True)
class RawFile:
    """A raw file found by `discover`."""

    path: Path
    rel: str  # path relative to the input folder, with "/"
    split: str | None  # from a folder named train, val or test
    scene: str | None  # None for CSV: its rows name their scenes


@dataclass
class ReadResult:
    """Valid rows (TRACK_COLUMNS, indexed by line number) and rejected lines (REJECT_COLUMNS)."""

    tracks: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int  # non-blank data lines
    sha256: str  # of the file's bytes


@dataclass(frozen=True)
class _Layout:
    """How a file's lines split into fields: names in order, separator (None: whitespace)."""

    names: list[str]
    sep: str | None
    first_line: int  # first data line


def scene_from_path(path: Path) -> str:
    """`biwi_hotel_train.txt` -> `biwi_hotel`; `sim_003_part01.txt` -> `sim_003`."""
    return re.sub(r"(_part\d+|_train|_val)+$", "", path.stem) or path.stem


def discover(input_dir: Path) -> list[RawFile]:
    """Every `*.txt` / `*.csv` under input_dir, sorted, with its folder split and scene."""
    if input_dir.is_file():
        raise InputFileError(f"{input_dir}: is a file, not a folder of track files")
    if not input_dir.is_dir():
        raise InputFileError(f"{input_dir}: input folder not found")
    raws = []
    for p in sorted(input_dir.rglob("*")):
        if p.suffix.lower() not in {".txt", ".csv"} or p.name.startswith(".") or p.is_dir():
            continue
        rel = p.relative_to(input_dir)
        split = next((part for part in reversed(rel.parts[:-1]) if part in SPLITS), None)
        scene = None if p.suffix.lower() == ".csv" else scene_from_path(p)
        raws.append(RawFile(path=p, rel=rel.as_posix(), split=split, scene=scene))
    if not raws:
        raise InputFileError(f"{input_dir}: no .txt or .csv track files")
    return raws


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, or "unreadable"."""
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return "unreadable"


def read_tracks(
    path: str | Path,
    scene: str | None = None,
    *,
    settings: Settings | None = None,
    part: bool = False,
) -> ReadResult:
    """Parse and validate one file; bad lines go to `rejects`, never stop the read.

    Raises InputFileError if the file cannot be read, is empty, header only, binary or has
    an unusable CSV header. `scene` overrides the scene of every row. `part=True` reads a
    piece of a larger input whose whole-file checks were made already (batch chunks): a
    piece without rows is then no error.
    """
    path = Path(path)
    settings = settings or get_settings()
    try:
        layout = read_layout(path) if part else check_file(path)
        parsed, parse_rejects, rows_in, digest = _parse_file(path, layout)
    except OSError as err:
        raise InputFileError(f"{path}: cannot read: {err.strerror or err}") from err
    if rows_in == 0 and not part:
        raise InputFileError(f"{path}: {_no_rows(layout)}")

    parsed = _finish_columns(parsed, layout, path, scene)
    valid, reasons = validate_tracks(
        parsed,
        max_speed=settings.max_speed,
        frame_seconds=settings.frame_seconds,
        max_abs_coordinate=settings.max_abs_coordinate,
    )
    raw = read_lines(path, reasons.index.to_numpy(np.int64))
    checked = pd.DataFrame(
        {"line": reasons.index.to_numpy(np.int64), "reason": reasons.to_numpy(), "raw": raw}
    )
    found = [r for r in (parse_rejects, checked) if len(r)]
    rejects = pd.concat(found) if found else _NO_REJECTS.copy()
    rejects.insert(0, "file", str(path))
    rejects = rejects.sort_values("line", kind="stable").reset_index(drop=True)
    return ReadResult(
        tracks=valid,
        rejects=rejects.astype({"line": np.int64})[REJECT_COLUMNS],
        rows_in=rows_in,
        sha256=digest,
    )


def check_file(path: Path) -> _Layout:
    """The file's layout, or InputFileError naming it and why it holds no rows: empty, not
    text, a bad CSV header, header only or only blank lines. Reads up to the first data line.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise InputFileError(f"{path}: is a folder, not a file")
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        if not head:
            raise InputFileError(f"{path}: empty file")
        if _looks_binary(head):
            raise InputFileError(f"{path}: not a text file (binary)")
        layout = read_layout(path)
        with path.open("rb") as fh:
            lines = iter(fh)
            for _ in range(layout.first_line - 1):
                next(lines, b"")
            if not any(line.strip() for line in lines):
                raise InputFileError(f"{path}: {_no_rows(layout)}")
    except OSError as err:
        raise InputFileError(f"{path}: cannot read: {err.strerror or err}") from err
    return layout


def _no_rows(layout: _Layout) -> str:
    return "header only, no data rows" if layout.first_line > 1 else "empty file (only blank lines)"


def _looks_binary(head: bytes) -> bool:
    """A NUL byte, or a large share of control characters and invalid UTF-8."""
    if b"\0" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    odd = sum(c == "\ufffd" or (c < " " and c not in _TEXT_CONTROLS) for c in text)
    return odd > _BINARY_SHARE * len(text)


def read_layout(path: Path) -> _Layout:
    """How a raw file's lines read: its column names, separator and first data line (a CSV's
    header decides; ETH/UCY text is `frame agent x y`)."""
    if path.suffix.lower() != ".csv":
        return _Layout(names=[S.FRAME, S.AGENT, S.X, S.Y], sep=None, first_line=1)
    with path.open("rb") as fh:
        header = fh.readline().decode("utf-8-sig", errors="replace").strip()
    if not header:
        raise InputFileError(f"{path}: no CSV header on line 1 (it is blank)")
    names = [h.strip().lower() for h in header.split(",")]
    time_col = S.FRAME if S.FRAME in names else TIMESTAMP
    missing = [c for c in (time_col, S.AGENT, S.X, S.Y) if c not in names]
    unknown = [c for c in names if c not in {S.SCENE, S.FRAME, TIMESTAMP, S.AGENT, S.X, S.Y}]
    if missing or unknown or len(set(names)) != len(names) or {S.FRAME, TIMESTAMP} <= set(names):
        raise InputFileError(
            f"{path}: CSV header {header!r} must name agent_id, x, y and one of frame or "
            f"timestamp (scene optional), each once; missing {missing}, unknown {unknown}"
        )
    return _Layout(names=names, sep=",", first_line=2)


def _chunks(path: Path, hasher: hashlib._Hash | None = None) -> Iterator[tuple[int, bytes]]:
    """(number of the chunk's first line, bytes of whole lines) over the file."""
    line, carry = 1, b""
    with path.open("rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            if hasher is not None:
                hasher.update(block)
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut:
                yield line, data[:cut]
                line += data.count(b"\n", 0, cut)
            carry = data[cut:]
    if carry:
        yield line, carry


def _parse_file(path: Path, layout: _Layout) -> tuple[pd.DataFrame, pd.DataFrame, int, str]:
    """(parsed rows indexed by line, parse rejects, non-blank data lines, sha256)."""
    hasher = hashlib.sha256()
    parts: list[pd.DataFrame] = []
    rejects: list[pd.DataFrame] = []
    rows_in = 0
    for first, data in _chunks(path, hasher):
        if first < layout.first_line:  # drop the CSV header line
            data = data[data.find(b"\n") + 1 :]
            first = layout.first_line
        for rows, bad, count in _parse_chunk(data, first, layout):
            parts.append(rows)
            rejects.append(bad)
            rows_in += count
    parts = [p for p in parts if len(p)] or [_parse_lines(b"", layout.first_line, layout)[0]]
    found = [r for r in rejects if len(r)]
    return (
        pd.concat(parts) if len(parts) > 1 else parts[0],
        pd.concat(found) if found else _NO_REJECTS,
        rows_in,
        hasher.hexdigest(),
    )


def _dtypes(layout: _Layout) -> dict[str, str]:
    return {n: "category" if n == S.SCENE else "float64" for n in layout.names}


def _parse_chunk(
    data: bytes, first: int, layout: _Layout
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, int]]:
    """(rows, rejects, non-blank lines) for pieces of `data`: a piece the C parser rejects is
    halved until it parses or is small enough to go line by line."""
    fast = _parse_fast(data, first, layout)
    if fast is not None:
        yield fast, _NO_REJECTS, len(fast)
        return
    middle = data.find(b"\n", len(data) // 2) + 1
    if len(data) <= _SLOW_BYTES or middle in (0, len(data)):
        yield _parse_lines(data, first, layout)
        return
    yield from _parse_chunk(data[:middle], first, layout)
    yield from _parse_chunk(data[middle:], first + data.count(b"\n", 0, middle), layout)


def _parse_fast(data: bytes, first: int, layout: _Layout) -> pd.DataFrame | None:
    """The C parser's result if every line of `data` parsed into finite-or-inf numbers."""
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            sep=r"\s+" if layout.sep is None else layout.sep,
            header=None,
            names=layout.names,
            dtype=_dtypes(layout),
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            skipinitialspace=True,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        return None
    # a blank line, a missing field or a NaN all read as NaN: leave those to the slow path
    if len(df) != n_lines or df.isna().to_numpy().any():
        return None
    df.index = pd.RangeIndex(first, first + n_lines)
    return df


def _parse_lines(
    data: bytes, first: int, layout: _Layout
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Line by line: (rows indexed by line, rejects, non-blank lines)."""
    n = len(layout.names)
    lines: list[int] = []
    values: list[list[str | float]] = []
    bad: list[tuple[int, str, str]] = []
    for number, raw in enumerate(data.decode("utf-8", errors="replace").split("\n"), first):
        text = raw.rstrip("\r")
        if not text.strip():
            continue
        fields = text.split() if layout.sep is None else [f.strip() for f in text.split(layout.sep)]
        if len(fields) != n:
            bad.append((number, f"column count: expected {n} fields, got {len(fields)}", text))
            continue
        row, error = _convert(fields, layout.names)
        if error:
            bad.append((number, error, text))
        else:
            lines.append(number)
            values.append(row)
    rows = pd.DataFrame(values, columns=layout.names, index=pd.Index(lines, dtype=np.int64))
    rows = rows.astype(_dtypes(layout))
    rejects = pd.DataFrame(bad, columns=["line", "reason", "raw"])
    rejects["raw"] = rejects["raw"].str.slice(0, _RAW_CHARS)
    return rows, rejects, len(lines) + len(bad)


def _convert(fields: list[str], names: list[str]) -> tuple[list[str | float], str | None]:
    row: list[str | float] = []
    for name, field in zip(names, fields, strict=True):
        if name == S.SCENE:
            if not field:
                return row, "empty scene: field 'scene' is empty"
            row.append(field)
            continue
        try:
            row.append(float(field))
        except ValueError:
            return row, f"not a number: field {name!r} is {field!r}"
    return row, None


def _finish_columns(
    parsed: pd.DataFrame, layout: _Layout, path: Path, scene: str | None
) -> pd.DataFrame:
    """TRACK_COLUMNS with the scene filled in; timestamps become `time` and frames in ms."""
    out = pd.DataFrame(index=parsed.index)
    if scene is not None or S.SCENE not in parsed:
        name = scene or scene_from_path(path)
        out[S.SCENE] = pd.Categorical.from_codes(np.zeros(len(parsed), np.int8), [name])
    else:
        out[S.SCENE] = parsed[S.SCENE]
    seconds = None
    if S.FRAME in parsed:
        out[S.FRAME] = parsed[S.FRAME]
    else:
        seconds = parsed[TIMESTAMP].to_numpy(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # left to the value checks
            out[S.FRAME] = np.round(seconds * 1000.0)
    for col in NUMERIC[1:]:
        out[col] = parsed[col]
    if seconds is not None:
        out[S.TIME] = seconds
    return out


def read_lines(path: Path, numbers: np.ndarray) -> list[str]:
    """The text of the given 1-based lines, read again chunk by chunk (for rejects only)."""
    if len(numbers) == 0:
        return []
    wanted = np.unique(numbers)
    found: dict[int, str] = {}
    for first, data in _chunks(path):
        n_lines = data.count(b"\n") + 1
        here = wanted[(wanted >= first) & (wanted < first + n_lines)]
        if len(here):
            lines = data.split(b"\n")
            for number in here:
                text = lines[number - first].decode("utf-8", errors="replace").rstrip("\r")
                found[int(number)] = text[:_RAW_CHARS]
    return [found.get(int(n), "") for n in numbers]
