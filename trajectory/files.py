"""Atomic file writes: a temporary file beside the target, flushed to disk, renamed over it.

A reader sees the old file or the new one, never half of one; a failed write leaves no temp
file behind. An existing target keeps its permission bits; a new one gets 0o644.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically; -> the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, document: Any, **dumps: Any) -> Path:
    """`document` as indented JSON with a final newline, written atomically; -> the path."""
    return write_text_atomic(path, json.dumps(document, indent=2, **dumps) + "\n")
