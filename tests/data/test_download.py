"""`trajectory data download eth-ucy` against a local HTTP server serving the shared copy."""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trajectory.data.download import checksums, download_dataset, sha256
from trajectory.exceptions import DownloadError

pytestmark = pytest.mark.data


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    servers: list[ThreadingHTTPServer] = []

    def start(root: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(root))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()


def test_download_verifies_every_file(eth_ucy_dir: Path, serve, tmp_path: Path) -> None:
    url = serve(eth_ucy_dir)
    root = download_dataset("eth-ucy", tmp_path, base_url=url, progress=False)
    expected = checksums("eth-ucy")
    got = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.txt"))
    assert got == sorted(expected)
    assert all(sha256(root / rel) == d for rel, d in expected.items())
    assert not list(root.rglob("*.part"))


def test_corrupt_file_is_refused_and_not_written(eth_ucy_dir: Path, serve, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(eth_ucy_dir, mirror)
    bad = mirror / "hotel" / "test" / "biwi_hotel.txt"
    bad.write_text(bad.read_text().replace("\t", " ", 1))
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="biwi_hotel.txt: SHA-256 mismatch"):
        download_dataset("eth-ucy", dest, base_url=serve(mirror), progress=False)
    assert not (dest / "eth_ucy" / "hotel" / "test" / "biwi_hotel.txt").exists()
    assert not list(dest.rglob("*.part"))


def test_missing_file_names_the_url(tmp_path: Path, serve) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset("eth-ucy", tmp_path / "d", base_url=serve(empty), progress=False)


def test_resume_keeps_intact_files(eth_ucy_dir: Path, serve, tmp_path: Path) -> None:
    url = serve(eth_ucy_dir)
    root = download_dataset("eth-ucy", tmp_path, base_url=url, progress=False)
    kept = root / "eth" / "test" / "biwi_eth.txt"
    mtime = kept.stat().st_mtime_ns
    (root / "zara1" / "test" / "crowds_zara01.txt").unlink()
    download_dataset("eth-ucy", tmp_path, base_url=url, progress=False)
    assert kept.stat().st_mtime_ns == mtime
    assert (root / "zara1" / "test" / "crowds_zara01.txt").is_file()
