"""The files the service keeps beside its database: spill files and batch job folders.

- `<serving work dir>/predictions-spill-*.jsonl`: log rows the database could not take at
  shutdown, one JSON object a line (pseudonymised like the table rows; files of a v1 service
  hold raw `scene` and `agent_id`), replayed at the next start;
- `<serving work dir>/predictions-journal-*.jsonl`: every row a replica answered with, until the
  database has it (`serving.predictions_log.Journal`); a live process holds a lock on its
  files, which are then left alone; a dead one's are replayed at the next start;
- `<serving work dir>/predictions-quarantine-*.jsonl`: rows the database refused when even the
  quarantine table could not take them, `{"reason": ..., "row": {...}}` a line;
- `<batch dir>/<job id>/`: a batch job's upload (until scored), `result.csv` (scene, agent_id,
  ...: raw identifiers, as the client sent them) and `result.errors.csv`.

Every rewrite goes to a temporary file that replaces the original (atomic); a file left with no
rows is deleted.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# the file names the service writes (serving.spills, serving.quarantine) and erasure reads
SPILL_GLOB = "predictions-spill-*.jsonl"
JOURNAL_GLOB = "predictions-journal-*.jsonl"
QUARANTINE_GLOB = "predictions-quarantine-*.jsonl"
SPILL_GLOBS = (SPILL_GLOB, JOURNAL_GLOB, QUARANTINE_GLOB)
JOB_ID = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex: only such folders are batch jobs
RESULT_CSV = "result.csv"


def spill_files(dirs: list[Path]) -> list[Path]:
    """Spill, quarantine and left-over journal files of the serving work dirs (not the
    journals a live process is writing)."""
    return sorted(p for d in dirs if d.is_dir() for g in SPILL_GLOBS for p in d.glob(g)
                  if p.is_file() and not in_use(p))


def in_use(path: Path) -> bool:
    """True while a process holds the file's lock (a live journal)."""
    try:
        with path.open("rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to read
    return False


def log_row(line: dict[str, Any]) -> dict[str, Any]:
    """The log row of a spill line (a quarantine line wraps it with its reason)."""
    row = line.get("row")
    return row if "reason" in line and isinstance(row, dict) else line


def drop_spill_rows(path: Path, drop: Callable[[dict[str, Any]], bool]) -> int:
    """Remove the lines whose log row `drop` selects from one spill or quarantine file;
    -> how many were removed."""
    kept: list[str] = []
    removed = 0
    with path.open() as f:
        for line in f:
            if not line.strip():
                continue
            if drop(log_row(json.loads(line))):
                removed += 1
            else:
                kept.append(line if line.endswith("\n") else line + "\n")
    if removed:
        if kept:
            _replace(path, lambda out: out.writelines(kept))
        else:
            path.unlink()
    return removed


def job_folders(dirs: list[Path]) -> Iterator[Path]:
    """Folders of batch jobs (named by job id) under the batch dirs."""
    for root in dirs:
        if root.is_dir():
            yield from sorted(p for p in root.iterdir() if p.is_dir() and JOB_ID.match(p.name))


def remove_folder(path: Path) -> bool:
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def drop_result_rows(path: Path, scene: str, agent_id: int) -> int:
    """Rewrite a batch result CSV without the rows of one scene's agent; -> rows removed."""
    removed = 0
    with path.open(newline="") as src:
        reader = csv.reader(src)
        header = next(reader, None)
        if header is None or "scene" not in header or "agent_id" not in header:
            return 0
        s_col, a_col = header.index("scene"), header.index("agent_id")
        wanted = str(agent_id)

        def write(out: Any) -> None:
            nonlocal removed
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            for row in reader:
                if len(row) > max(s_col, a_col) and row[s_col] == scene and row[a_col] == wanted:
                    removed += 1
                else:
                    writer.writerow(row)

        tmp = _replace(path, write, commit=False)
    if removed:
        os.replace(tmp, path)
    else:
        tmp.unlink()
    return removed


def _replace(path: Path, write: Callable[[Any], None], commit: bool = True) -> Path:
    """Write a sibling temporary file with `write`, then (when `commit`) rename it over
    `path`; -> the temporary path (still there when not committed)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", newline="") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        if commit:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
