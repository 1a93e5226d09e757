"""Atomic file writes, and CSV cells made safe for spreadsheets.

Atomic: a temporary file beside the target, flushed to disk, renamed over it. A reader sees
the old file or the new one, never half of one; a failed write leaves no temp file behind.
An existing target keeps its permission bits; a new one gets 0o644.

CSV formula injection (OWASP): a spreadsheet runs a cell that starts with `= + - @`, a tab
or a carriage return as a formula, so a scene named `=cmd|' /C calc'!A0` in an input file
would run on the analyst's machine once copied into a result. Every CSV the project writes
passes its text cells through `neutralise_cell` / `neutralise_table`, which prefix such a
cell with a single quote. Only text is touched: a numeric column's -1.5 stays a number.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from trajectory.exceptions import ConfigError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = r"^([=+\-@\t\r])"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically; -> the path."""
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` when the block ends
    without an error, deleted when it raises. For writers that stream (CSV, Parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, document: Any, **dumps: Any) -> Path:
    """`document` as indented JSON with a final newline, written atomically; -> the path."""
    return write_text_atomic(path, json.dumps(document, indent=2, **dumps) + "\n")


def prepare_output(path: Path, *, inputs: tuple[Path, ...] = (), folder: bool = False) -> None:
    """Create the folder `path` goes in, or ConfigError naming `path` and what is wrong: a
    file where a folder should be (or the reverse), one of `inputs`, a folder not writable.
    `folder=True`: `path` itself is a folder to write into."""
    path = Path(path)
    resolved = path.resolve()
    if any(resolved == Path(i).resolve() for i in inputs):
        raise ConfigError(f"{path}: is the input file; give another output path")
    if path.exists() and path.is_dir() != folder:
        kind = "a file, not a folder" if folder else "a folder, not a file"
        raise ConfigError(f"{path}: cannot write the output: it is {kind}")
    blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"{path}: cannot write the output: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{path}: cannot create its folder: {err.strerror or err}") from err
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot write the output: {path.parent} is not writable")


def neutralise_cell(text: str) -> str:
    """`text`, with a leading `'` if a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def neutralise_array(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A string array with `neutralise_cell` applied to each value (nulls stay null)."""
    return pc.replace_substring_regex(
        values, pattern=_FORMULA_START, replacement=r"'\1", max_replacements=1
    )


def neutralise_table(table: pa.Table) -> pa.Table:
    """`table` with its text columns neutralised (dictionary text decoded); numbers as they are."""
    for i, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type):
            kind = pa.string()
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = neutralise_array(table.column(i).cast(kind))
            table = table.set_column(i, pa.field(field.name, kind, field.nullable), column)
    return table
