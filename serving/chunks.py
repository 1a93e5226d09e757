"""Cutting a raw tracks file into chunk files of whole lines, remembering the line numbers.

A chunk file is what the ETL reader expects of a whole file: the CSV header (for `.csv`
inputs, as `trajectory.data.io` decides), then the last `overlap` lines of the previous chunk
(context, so order, duplicate and jump checks see each agent's previous points across the
cut), then the chunk's own lines. Only own lines count: rows and rejects of the overlap were
already handled with the previous chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trajectory.data.io import scene_from_path

_READ_HINT = 16 << 20  # bytes of lines read at a time


@dataclass(frozen=True)
class Chunk:
    path: Path
    scene: str | None  # scene for files without a scene column, else None (the column)
    first_input_line: int  # input line number of the chunk file's first data line
    header_lines: int  # lines before the data in the chunk file (0 or 1)
    overlap_lines: int  # context lines from the previous chunk, after the header
    own_lines: int  # the chunk's own data lines
    end_byte: int  # input bytes consumed up to the end of this chunk

    @property
    def first_own_chunk_line(self) -> int:
        """Line number, within the chunk file, of the first own line."""
        return 1 + self.header_lines + self.overlap_lines

    def input_line(self, chunk_lines: np.ndarray) -> np.ndarray:
        return self.first_input_line + (chunk_lines - 1 - self.header_lines)


def split_lines(
    path: Path,
    out_dir: Path,
    lines_per_chunk: int,
    *,
    overlap: int = 2000,
    scene: str | None = None,
) -> Iterator[Chunk]:
    """Yield chunk files of `lines_per_chunk` own lines (the last may be shorter).

    `scene` names the scene of every row; default: the scene column, else the file name.
    """
    is_csv = path.suffix.lower() == ".csv"
    with path.open("rb") as f:
        header = f.readline() if is_csv else b""
        names = header.decode("utf-8-sig", errors="replace").lower().replace(" ", "").split(",")
        if scene is None and "scene" not in [n.strip() for n in names]:
            scene = scene_from_path(path)
        pending: list[bytes] = []
        context: list[bytes] = []
        next_line = 2 if is_csv else 1  # input line number of pending[0]
        consumed = len(header)
        index = 0
        while True:
            lines = f.readlines(_READ_HINT)
            pending.extend(lines)
            done = not lines
            while len(pending) >= lines_per_chunk or (done and pending):
                own, pending = pending[:lines_per_chunk], pending[lines_per_chunk:]
                chunk_path = out_dir / f"chunk-{index:06d}{path.suffix or '.txt'}"
                with chunk_path.open("wb") as out:
                    out.write(header)
                    out.writelines(context)
                    out.writelines(own)
                consumed += sum(map(len, own))
                yield Chunk(
                    path=chunk_path,
                    scene=scene,
                    first_input_line=next_line - len(context),
                    header_lines=1 if is_csv else 0,
                    overlap_lines=len(context),
                    own_lines=len(own),
                    end_byte=consumed,
                )
                next_line += len(own)
                context = own[-overlap:] if overlap else []
                index += 1
            if done:
                return
