"""Fetch public datasets into a local folder, checking every file's SHA-256.

The file list and hashes ship with the package (`checksums/<name>.sha256`), so a download
that was tampered with or cut short is refused, file by file, and never half-written.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
from tqdm import tqdm

from trajectory.exceptions import DownloadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    name: str
    base_url: str
    url_env: str  # environment variable that overrides base_url (mirrors, tests)


DATASETS = {
    "eth-ucy": Dataset(
        name="eth_ucy",
        # the Trajectron++ copy of the Social-GAN splits (see ../shared/data/eth_ucy/README.md)
        base_url="https://raw.githubusercontent.com/StanfordASL/Trajectron-plus-plus/"
        "1031c7bd1a444273af378c1ec1dcca907ba59830/experiments/pedestrians/raw",
        url_env="TRAJ_ETH_UCY_URL",
    )
}


def checksums(dataset: str) -> dict[str, str]:
    """Relative path -> expected SHA-256, from the list shipped with the package."""
    text = (
        resources.files("trajectory.data")
        .joinpath(f"checksums/{DATASETS[dataset].name}.sha256")
        .read_text()
    )
    out = {}
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.removeprefix("./")] = digest
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_dataset(
    dataset: str,
    dest: Path,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download every file of `dataset` into `dest/<name>`; files already there and intact are kept.

    Returns the dataset folder. Raises DownloadError naming the file on an HTTP error or a
    checksum mismatch; files that were fetched and verified before that stay in place.
    """
    if dataset not in DATASETS:
        raise DownloadError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    url = (base_url or os.environ.get(spec.url_env) or spec.base_url).rstrip("/")
    root = dest / spec.name
    files = checksums(dataset)
    todo = {rel: d for rel, d in files.items() if not _intact(root / rel, d)}
    log.info("%s: %d of %d files to fetch from %s", dataset, len(todo), len(files), url)
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for rel, digest in tqdm(todo.items(), desc=f"download {dataset}", disable=not progress):
            _fetch(client, f"{url}/{rel}", root / rel, digest)
    return root


def _intact(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def _fetch(client: httpx.Client, url: str, target: Path, digest: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise DownloadError(f"{url}: HTTP {resp.status_code}")
            with tmp.open("wb") as f:
                for chunk in resp.iter_bytes():
                    h.update(chunk)
                    f.write(chunk)
    except httpx.HTTPError as err:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {err}") from err
    if h.hexdigest() != digest:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"{target.name}: SHA-256 mismatch (expected {digest}, got {h.hexdigest()}) from {url}"
        )
    tmp.replace(target)
