"""Fault drill of the prediction log: the real service, real Redis and PostgreSQL, and faults.

    python benchmarks/faults.py                       # ~1 minute; writes benchmarks/faults.json
    python benchmarks/faults.py --seconds 4 --out /tmp/faults.json

What it does, in order:
 1. starts redis-server and a throwaway PostgreSQL 15 cluster (tests/integration/services.py:
    binaries from scripts/install_services.sh; PostgreSQL runs as `postgres` under a temp dir);
 2. starts the service (uvicorn subprocess) against both, and sends steady /v1/predict traffic
    from --clients clients; one request in --poison-every is poison: its log rows are made
    unwritable (NaN in a JSONB column, a NUL in a string), which PostgreSQL refuses;
 3. stops PostgreSQL for --outage-s mid-run and starts it again (rows queue, then flow);
 4. stops PostgreSQL again and sends SIGTERM to the service while it is down: rows spill;
 5. starts PostgreSQL and a fresh service on the same work dir: it replays the spill files;
 6. counts, and checks: 0 responses >= 500; rows written + rows quarantined == rows accepted
    (two agents per 200); every poison row quarantined and no other; every spilled row
    replayed, no spill file left.
Exits 1 when a check fails. The JSON holds the counts, checks, settings, hardware and date.

Poison is injected by a test hook, on purpose: the API refuses every input known to make a bad
row (NaN or huge coordinates are 422, scenes are stored as pseudonyms), so the hook
(`poisoned_app`, used only by this script) alters the rows of requests whose id starts with
"poison-" after the API has accepted them, as a future bug or driver change might.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trajectory.hardware import hardware

REPO = Path(__file__).resolve().parents[1]
API_KEY = "faults-drill-key"
PSEUDONYM_KEY = "faults-drill-pseudonym-key-0123456789abcdef"
AGENTS = 2  # agents per request: log rows per accepted prediction request


def poisoned_app() -> Any:
    """The service, with the log rows of "poison-*" requests made unwritable (test hook)."""
    from serving.main import create_app
    from serving.predictions_log import PredictionLog, Row

    record = PredictionLog.record

    def poison(row: Row, n: int) -> Row:
        if n % 2:
            return row | {"model_version": "bad\u0000version"}  # psycopg2 refuses a NUL
        return row | {"observed": [[float("nan"), 0.0], *row["observed"][1:]]}  # JSONB: no NaN

    def record_poisoned(self: PredictionLog, rows: list[Row]) -> None:
        record(self, [poison(r, i) if r["request_id"].startswith("poison-") else r
                      for i, r in enumerate(rows)])

    PredictionLog.record = record_poisoned  # type: ignore[method-assign]
    return create_app()


@dataclass
class Traffic:
    sent: int = 0
    ok: int = 0
    status_5xx: int = 0
    other: dict[str, int] = field(default_factory=dict)  # status -> count (4xx, refused)
    poison_ok: int = 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="steady traffic before the shutdown fault (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--poison-every", type=int, default=10,
                        help="one request in N is poison (default 10)")
    parser.add_argument("--outage-s", type=float, default=3.0,
                        help="PostgreSQL outage mid-run, seconds (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "faults.json",
                        help="result JSON (default benchmarks/faults.json)")
    args = parser.parse_args()
    report = run_drill(args)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("counts", "checks")}, indent=2))
    failed = [name for name, ok in report["checks"].items() if not ok]
    if failed:
        print(f"FAILED: {', '.join(failed)} (service logs in {report['work_dir']})",
              file=sys.stderr)
        return 1
    print(f"all checks passed; {args.out}")
    return 0


def run_drill(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from services import free_port, running_postgres, running_redis

    work = Path(tempfile.mkdtemp(prefix="faults-"))
    traffic = Traffic()
    started = time.monotonic()
    with running_redis() as redis, running_postgres() as pg:
        env = _service_env(work, pg.url, redis.url)
        port = free_port()
        service = _start_service(env, port, work / "service-1.log")
        url = f"http://127.0.0.1:{port}"
        recovered: list[float | None] = []  # seconds until the log wrote again

        async def first_run() -> None:
            stop = asyncio.Event()
            load = asyncio.create_task(_traffic(url, args, traffic, stop, "a"))
            await asyncio.sleep(args.seconds / 3)
            await asyncio.to_thread(pg.stop)  # outage mid-run
            await asyncio.sleep(args.outage_s)
            await asyncio.to_thread(pg.start)
            back = time.monotonic()
            ok = await _database_ok(url, timeout=30)
            recovered.append(round(time.monotonic() - back, 2) if ok else None)
            await asyncio.sleep(args.seconds / 3)
            await asyncio.to_thread(pg.stop)  # down again, and stays down through shutdown
            await asyncio.sleep(max(1.0, args.seconds / 6))
            service.send_signal(signal.SIGTERM)
            await asyncio.to_thread(service.wait, 60)
            stop.set()
            await load

        asyncio.run(first_run())
        spilled = sum(len(p.read_text().splitlines())
                      for p in work.glob("predictions-spill-*.jsonl"))
        spill_files = len(list(work.glob("predictions-spill-*.jsonl")))
        pg.start()
        service = _start_service(env, port, work / "service-2.log")  # replays the spills
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        counts: dict[str, Any] = _count(pg.url) | {"spill_files": spill_files, "rows_spilled": spilled,
                                   "log_recovered_after_restart_s": recovered[0]}
    counts |= {"requests_sent": traffic.sent, "status_200": traffic.ok,
               "status_5xx": traffic.status_5xx, "status_other": traffic.other,
               "rows_accepted": AGENTS * traffic.ok, "rows_poison": AGENTS * traffic.poison_ok,
               "spill_files_left": len(list(work.glob("predictions-spill-*.jsonl")))}
    checks = {
        "no_5xx": traffic.status_5xx == 0,
        "log_recovered_after_postgres_restart": counts["log_recovered_after_restart_s"] is not None,
        "written_plus_quarantined_is_accepted":
            counts["rows_written"] + counts["rows_quarantined"] == counts["rows_accepted"],
        "every_poison_row_quarantined_and_no_other":
            counts["rows_quarantined"] == counts["rows_poison"] == counts["poison_quarantined"]
            and counts["poison_written"] == 0,
        "spills_happened_and_replayed_once":
            spilled > 0 and counts["rows_replayed"] == spilled
            and counts["spill_files_left"] == 0,
    }
    return {
        "hardware": hardware(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "poison": "test hook poisoned_app: NaN in observed (JSONB) or NUL in model_version",
        "counts": counts,
        "checks": checks,
        "work_dir": str(work),
    }


def _service_env(work: Path, db_url: str, redis_url: str) -> dict[str, str]:
    from serving.config import hash_api_key

    return os.environ | {
        "SERVING_VARIANTS": '{"champion": "builtin:cv"}',
        "SERVING_API_KEYS": json.dumps({hash_api_key(API_KEY): "predict"}),
        "SERVING_DATABASE_URL": db_url,
        "SERVING_REDIS_URL": redis_url,
        "SERVING_WORK_DIR": str(work),
        "SERVING_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "SERVING_LOG_FLUSH_S": "0.1",
        "SERVING_LOG_BATCH_SIZE": "50",
        "OMP_NUM_THREADS": "1",
    }


def _start_service(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.faults:poisoned_app",
             "--app-dir", str(REPO), "--host", "127.0.0.1", "--port", str(port),
             "--timeout-graceful-shutdown", "30"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the service was not ready in 90 s; see {log}")


async def _traffic(url: str, args: argparse.Namespace, traffic: Traffic,
                   stop: asyncio.Event, run: str) -> None:
    import httpx

    async def client(c: int, http: httpx.AsyncClient) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            n = traffic.sent
            poison = n % args.poison_every == args.poison_every - 1
            rid = f"{'poison' if poison else 'ok'}-{run}-{c}-{i}"
            body = {"scene": f"drill-{c}", "frame": i, "agents": [
                {"agent_id": a, "points": [[0.4 * t + i * 0.01, float(a)] for t in range(8)]}
                for a in range(AGENTS)]}
            traffic.sent += 1
            try:
                r = await http.post(f"{url}/v1/predict", json=body,
                                    headers={"X-API-Key": API_KEY, "X-Request-Id": rid})
            except httpx.HTTPError:  # refused once the service stops listening
                traffic.sent -= 1
                await asyncio.sleep(0.05)
                continue
            if r.status_code == 200:
                traffic.ok += 1
                traffic.poison_ok += poison
            elif r.status_code >= 500:
                traffic.status_5xx += 1
            else:
                traffic.other[str(r.status_code)] = traffic.other.get(str(r.status_code), 0) + 1

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(c, http) for c in range(args.clients)))


async def _database_ok(url: str, timeout: float) -> bool:
    """Wait for /ready to report the prediction log's database ok again."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            r = await http.get(f"{url}/ready")
            if r.json()["database"]["ok"]:
                return True
            await asyncio.sleep(0.1)
    return False


def _count(db_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    queries = {
        "rows_written": "SELECT count(*) FROM predictions",
        "rows_quarantined": "SELECT count(*) FROM predictions_quarantine",
        "poison_quarantined":
            "SELECT count(*) FROM predictions_quarantine WHERE request_id LIKE 'poison-%'",
        "poison_written": "SELECT count(*) FROM predictions WHERE request_id LIKE 'poison-%'",
        "rows_replayed": "SELECT coalesce(sum(rows), 0) FROM spill_imports",
        "spill_files_imported": "SELECT count(*) FROM spill_imports",
    }
    with engine.connect() as conn:
        out = {name: int(conn.execute(text(sql)).scalar() or 0) for name, sql in queries.items()}
    engine.dispose()
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
