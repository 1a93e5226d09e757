"""Real services for the serving integration tests, started and stopped by the tests.

`RedisServer` runs `redis-server` on a free port (no persistence); `PostgresCluster` makes a
throwaway PostgreSQL 15 cluster with initdb under a temp dir and runs it with pg_ctl (as the
`postgres` user when the tests run as root: PostgreSQL refuses root); `TcpProxy` stands between
the service and a server (MLflow) so a test can make that server vanish for the service alone. Missing binaries are installed once by
scripts/install_services.sh; a test skips, naming why, only if that is impossible.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import httpx
import pytest

from serving.config import ServingSettings, hash_api_key

with warnings.catch_warnings():  # starlette's note about httpx2, irrelevant here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
API_KEY = "integration-test-key"
HEADERS = {"X-API-Key": API_KEY}


def serving_settings(work_dir: Path, **overrides: object) -> ServingSettings:
    """Settings for a service of Constant Velocity models (no registry needed)."""
    values: dict[str, object] = {
        "work_dir": work_dir,
        "variants": {"champion": "builtin:cv"},
        "api_keys": {hash_api_key(API_KEY): "admin"},
        "breaker_reset_s": 0.2,
        "log_flush_s": 0.05,
    }
    return ServingSettings(**(values | overrides))  # type: ignore[arg-type]


def walk(agent_id: int, n: int = 8, y: float = 0.0) -> dict[str, object]:
    return {"agent_id": agent_id, "points": [[0.5 * i, y] for i in range(n)]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@cache
def _install_services() -> str:
    """Run the install script once per session; -> its output (for skip messages)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "install_services.sh")],
        capture_output=True, text=True, timeout=600, check=False,
    )
    return (done.stdout + done.stderr).strip()


def require(binary: str | Path) -> str:
    """The binary's path, installing the services if needed; skips if still missing."""
    found = shutil.which(str(binary))
    if found is None:
        output = _install_services()
        found = shutil.which(str(binary))
        if found is None:
            pytest.skip(f"{binary} is not installed and could not be installed: {output}")
    return found


def _wait(check: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {seconds:.0f} s")


def _ping_redis(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


class RedisServer:
    """redis-server on a fixed free port; stop() and start() again on the same port."""

    def __init__(self) -> None:
        self.binary = require("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(lambda: _ping_redis(self.port), "redis-server")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._proc = None


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster in `root`, listening on 127.0.0.1 only."""

    def __init__(self, root: Path) -> None:
        for tool in ("initdb", "pg_ctl"):
            require(PG_BIN / tool)
        self.root, self.port = root, free_port()
        self.data = root / "data"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(root, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")

    def _run(self, *args: object) -> None:
        cmd = [str(a) for a in args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l",
                  self.root / "server.log", "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; stop() makes the target look gone to clients."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
            self._server.close()
            self._server = None
        for sock in self._open:  # kept-alive connections die too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed by stop()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresCluster]:
    # not under pytest's tmp dir: that is private to root, and the cluster runs as postgres
    root = Path(tempfile.mkdtemp(prefix="serving-pg-"))
    try:
        cluster = PostgresCluster(root)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
