"""Cutting a raw tracks file into chunks of whole lines, remembering the line numbers.

The driver only plans: one pass counting newlines (numpy over 16 MiB blocks, no parsing)
gives each chunk's byte range, so any worker that sees the file can cut its own chunk. A
chunk file is what the ETL reader expects of a whole file: the CSV header (for `.csv`
inputs, as `trajectory.data.io` decides), then the `overlap` lines before the chunk
(context, so order, duplicate and jump checks see each agent's previous points across the
cut), then the chunk's own lines. Only own lines count: rows and rejects of the context
belong to the previous chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trajectory.data.io import scene_from_path

_BLOCK = 16 << 20  # bytes scanned for newlines at a time
OVERLAP_LINES = 2000


@dataclass(frozen=True)
class ChunkPlan:
    """Where a chunk lies in the input; made by `plan_chunks`, cut by `write_chunk`."""

    index: int
    context_start: int  # byte offset of the first context line
    start: int  # byte offset of the first own line
    end: int  # byte offset just after the last own line
    first_input_line: int  # input line number of the first context (else own) line
    context_lines: int
    own_lines: int


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


def input_scene(path: Path, scene: str | None) -> str | None:
    """The scene of every row: `scene` if given, else None when a CSV has a scene column
    (each row names its own), else the file's name (`scene_from_path`)."""
    if scene is not None:
        return scene
    if path.suffix.lower() == ".csv":
        with path.open("rb") as f:
            header = f.readline().decode("utf-8-sig", errors="replace")
        if "scene" in [n.strip() for n in header.lower().replace(" ", "").split(",")]:
            return None
    return scene_from_path(path)


def plan_chunks(
    path: Path, lines_per_chunk: int, *, overlap: int = OVERLAP_LINES
) -> list[ChunkPlan]:
    """Chunks of `lines_per_chunk` data lines (the last may be shorter), blank lines counted."""
    is_csv = path.suffix.lower() == ".csv"
    size = path.stat().st_size
    step = lines_per_chunk
    wanted: dict[int, int] = {}  # data line index -> byte offset of its start
    with path.open("rb") as f:
        header = len(f.readline()) if is_csv else 0
        wanted[0] = header
        offset, lines, last = header, 0, b"\n"  # bytes read, newlines seen, last byte
        while block := f.read(_BLOCK):
            newlines = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)  # (n,)
            after = lines + 1 + np.arange(len(newlines))  # index of the line each one starts
            keep = (after % step == 0) | ((after + overlap) % step == 0)
            wanted.update(zip(after[keep].tolist(), (offset + newlines[keep] + 1).tolist()))
            lines += len(newlines)
            offset += len(block)
            last = block[-1:]
    if size > header and last != b"\n":
        lines += 1  # a last line without a newline
    first_line = 2 if is_csv else 1  # input line number of data line 0
    plans = []
    for index, own_start in enumerate(range(0, lines, step)):
        own_end = min(own_start + step, lines)
        ctx = max(own_start - overlap, 0)
        plans.append(
            ChunkPlan(
                index=index,
                context_start=wanted[ctx],
                start=wanted[own_start],
                end=wanted.get(own_end, size) if own_end < lines else size,
                first_input_line=first_line + ctx,
                context_lines=own_start - ctx,
                own_lines=own_end - own_start,
            )
        )
    return plans


def write_chunk(path: Path, plan: ChunkPlan, dest: Path, scene: str | None) -> Chunk:
    """Cut the chunk `plan` describes out of `path` into the file `dest` (header first)."""
    is_csv = path.suffix.lower() == ".csv"
    with path.open("rb") as f:
        header = f.readline() if is_csv else b""
        f.seek(plan.context_start)
        body = f.read(plan.end - plan.context_start)
    with dest.open("wb") as out:
        out.write(header)
        out.write(body)
        if body and not body.endswith(b"\n"):
            out.write(b"\n")
    return Chunk(
        path=dest,
        scene=scene,
        first_input_line=plan.first_input_line,
        header_lines=1 if is_csv else 0,
        overlap_lines=plan.context_lines,
        own_lines=plan.own_lines,
        end_byte=plan.end,
    )
