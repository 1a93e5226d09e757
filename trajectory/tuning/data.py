"""The search's data: train and validation windows only. No test file is ever opened.

Two sources: a raw leave-one-scene-out fold (`<folder>/train/*.txt`, `<folder>/val/*.txt`,
such as eth_ucy/zara1; its test/ folder is not looked at), or an ETL output folder, read split
by split (`load_windows(split="train")`, `split="val"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajectory.data import schema as S
from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import ConfigError, DataError

SPLITS = ("train", "val")  # the only splits a search may read


@dataclass
class SearchData:
    """Train and validation windows and what a reader needs to know about where they came from."""

    train: Windows
    val: Windows
    source: str  # the folder given
    kind: str  # "raw" or "windows"
    data_version: str
    files: list[str] = field(default_factory=list)  # raw files read (relative to source)

    def describe(self) -> dict[str, Any]:
        """For the provenance entry and the MLflow parent run."""
        return {
            "source": self.source,
            "kind": self.kind,
            "data_version": self.data_version,
            "splits_used": list(SPLITS),
            "windows": {"train": len(self.train), "val": len(self.val)},
        }


def load_search_data(
    spec: WindowSpec, raw_dir: Path | None = None, windows_dir: Path | None = None
) -> SearchData:
    """Exactly one of `raw_dir` (a fold with train/ and val/) or `windows_dir` (ETL output)."""
    if (raw_dir is None) == (windows_dir is None):
        raise ConfigError("give exactly one data source: a raw fold (--data) or ETL windows "
                          "(--windows)")
    data = _from_raw(raw_dir, spec) if raw_dir is not None else _from_etl(windows_dir, spec)
    check_no_test(data)
    return data


def check_no_test(data: SearchData) -> None:
    """Refuse data that holds anything but train and validation windows."""
    for split in SPLITS:
        windows: Windows = getattr(data, split)
        labels = windows.extra.get(S.SPLIT)
        if labels is not None and set(np.unique(labels)) != {split}:
            raise DataError(f"{data.source}: the {split} windows hold other splits: "
                            f"{sorted(set(np.unique(labels)))}")
    for name in data.files:
        if Path(name).parts[0] not in SPLITS:
            raise DataError(f"{data.source}: {name} is not a train or val file")


def _from_raw(root: Path, spec: WindowSpec) -> SearchData:
    from trajectory.bench import read_split
    from trajectory.data.dataset import hash_files
    from trajectory.data.windows import make_windows

    root = Path(root)
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {'/ or '.join(missing)}/ folder: a search reads a fold with train/ "
            "and val/ (such as eth_ucy/zara1); for other raw data run `trajectory etl` and pass "
            "--windows"
        )
    files = [p for s in SPLITS for p in sorted((root / s).glob("*.txt"))]
    splits = {s: make_windows(read_split(root.parent, root.name, s), spec) for s in SPLITS}
    for name, split in splits.items():
        split.extra[S.SPLIT] = np.full(len(split), name, dtype=object)
    return SearchData(
        train=splits["train"],
        val=splits["val"],
        source=str(root),
        kind="raw",
        data_version=hash_files(root, files)[:12],
        files=[p.relative_to(root).as_posix() for p in files],
    )


def _from_etl(root: Path | None, spec: WindowSpec) -> SearchData:
    from trajectory.data.dataset import load_windows, read_manifest

    assert root is not None
    manifest = read_manifest(root)
    splits = {s: load_windows(root, spec, split=s) for s in SPLITS}
    return SearchData(
        train=splits["train"],
        val=splits["val"],
        source=str(root),
        kind="windows",
        data_version=str(manifest["data_version"]),
    )
