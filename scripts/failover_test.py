#!/usr/bin/env python3
"""Replica failover drill on the running compose stack: steady prediction traffic through
`lb`, a replica killed (`podman kill`, SIGKILL) and started again, over and over.

    scripts/failover_test.sh                 # 3 kills, 10 requests/s, after podman_smoke.sh
    scripts/failover_test.sh --kills 5 --rate 20

Per kill it measures the failed requests (non-200 or no answer) from the kill until the
replica serves again, and the time from the replica answering /ready to the first request
`lb` routes to it (X-Served-By) (`rejoin_s`), and from the kill to that request. Over the whole
run: the longest request (`max_stall_s`), and the prediction-log rows of the answered (200)
requests that are missing from PostgreSQL (`lost_log_rows`: every request here logs exactly
one row). The killed replica is started again by the watchdog (scripts/watchdog.py) when it
runs, else by this script after --down-s seconds.

Writes --json (benchmarks/failover.json): hardware, date, kills, the worst failed_per_kill,
max_stall_s, rejoin_s and lost_log_rows, targets, and every kill's figures. Exit status 1
when a target is missed. Stdlib only (the host's python3); reads the stack's env file for the
ports, the API key (SMOKE_API_KEY) and the database password.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"failed_per_kill": 1, "max_stall_s": 2.0, "rejoin_s": 10.0, "lost_log_rows": 0}


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=False, capture_output=True, text=True, timeout=120).stdout


class Traffic:
    """Open-loop load: one request every 1/rate s, each in its own thread (a stalled request
    never delays the next); every outcome recorded."""

    def __init__(self, url: str, key: str, rate: float, run_id: str) -> None:
        self.url, self.key, self.rate, self.run_id = url, key, rate, run_id
        self.results: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.n = 0

    def one(self, n: int) -> None:
        request_id = f"{self.run_id}-{n}"
        body = json.dumps({"agents": [{"agent_id": n, "points": [[0.4 * t, 1.0] for t in range(8)]}],
                           "scene": "failover", "frame": 100 + n, "k": 1}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "X-API-Key": self.key, "Content-Type": "application/json",
            "X-Request-Id": request_id, "X-Client-Id": "failover"})
        t0 = time.time()
        status, served_by = 0, ""
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
                status, served_by = r.status, r.headers.get("X-Served-By", "")
        except urllib.error.HTTPError as err:
            status, served_by = err.code, err.headers.get("X-Served-By", "")
        except OSError:
            status = 0
        with self.lock:
            self.results.append({"id": request_id, "t": t0, "latency": time.time() - t0,
                                 "status": status, "served_by": served_by})

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            threading.Thread(target=self.one, args=(self.n,), daemon=True).start()
            self.n += 1
            self.stop.wait(max(0.0, start + self.n / self.rate - time.monotonic()))

    def served_by_since(self, name: str, since: float) -> float | None:
        with self.lock:
            times = [r["t"] + r["latency"] for r in self.results
                     if r["served_by"] == name and r["status"] == 200 and r["t"] >= since]
        return min(times) if times else None


def ready(name: str) -> bool:
    out = subprocess.run(
        ["podman", "exec", name, "python", "-c",
         "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready', timeout=2)"],
        check=False, capture_output=True, timeout=30)
    return out.returncode == 0


def watchdog_running() -> bool:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "watchdog.py"), "status"],
                          check=False, capture_output=True).returncode == 0


def kill_and_return(name: str, traffic: Traffic, down_s: float, timeout: float) -> dict:
    t_kill = time.time()
    podman("kill", name)
    healer = "watchdog" if watchdog_running() else "script"
    if healer == "script":
        time.sleep(down_s)
        podman("start", name)
    deadline = time.time() + timeout
    while podman("inspect", "-f", "{{.State.Status}}", name).strip() != "running":
        if time.time() > deadline:
            raise SystemExit(f"{name} was not started again within {timeout:g} s ({healer})")
        time.sleep(0.2)
    t_running = time.time()
    while not ready(name):
        if time.time() > deadline:
            raise SystemExit(f"{name} not ready within {timeout:g} s of its kill")
        time.sleep(0.2)
    t_ready = time.time()
    while (t_served := traffic.served_by_since(name, t_ready - 1)) is None:
        if time.time() > deadline:
            raise SystemExit(f"lb sent nothing to {name} within {timeout:g} s of its kill")
        time.sleep(0.1)
    time.sleep(3)  # requests sent up to now have answered or stalled into the window
    with traffic.lock:
        window = [r for r in traffic.results if t_kill - 1 <= r["t"] <= t_served]
    return {
        "replica": name, "restarted_by": healer,
        "requests": len(window), "failed": sum(r["status"] != 200 for r in window),
        "running_after_s": round(t_running - t_kill, 2),
        "ready_after_s": round(t_ready - t_kill, 2),
        "rejoin_s": round(max(0.0, t_served - t_ready), 2),
        "serving_again_after_s": round(t_served - t_kill, 2),
        "max_stall_s": round(max((r["latency"] for r in window), default=0.0), 3),
    }


def logged_ids(env: dict[str, str], run_id: str) -> set[str]:
    query = f"select distinct request_id from predictions where request_id like '{run_id}-%'"
    out = subprocess.run(
        ["podman", "exec", "-e", f"PGPASSWORD={env['PREDICTION_DB_PASSWORD']}", "postgres",
         "psql", "-q", "-h", "127.0.0.1", "-U", "serving", "-d", "serving", "-tAc", query],
        capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-file", type=Path, default=Path(os.environ.get(
        "ENV_FILE", REPO / ".deploy" / "smoke.env")))
    p.add_argument("--kills", type=int, default=3, help="kills, alternating serving-1/-2")
    p.add_argument("--rate", type=float, default=10.0, help="requests per second through lb")
    p.add_argument("--warmup-s", type=float, default=10.0)
    p.add_argument("--settle-s", type=float, default=10.0, help="steady traffic between kills")
    p.add_argument("--down-s", type=float, default=5.0,
                   help="seconds a replica stays down when no watchdog restarts it")
    p.add_argument("--timeout", type=float, default=180.0, help="per kill")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "failover.json")
    args = p.parse_args()
    env = env_file(args.env_file)
    key = os.environ.get("SMOKE_API_KEY") or env.get("SMOKE_API_KEY")
    if not key:
        raise SystemExit("set SMOKE_API_KEY (a plain API key of the stack)")
    url = f"http://127.0.0.1:{env.get('LB_PORT', '8000')}/v1/predict"
    run_id = f"fo{uuid.uuid4().hex[:8]}"
    for name in ("serving-1", "serving-2"):
        if not ready(name):
            raise SystemExit(f"{name} is not ready: start the stack first (podman_smoke.sh)")

    traffic = Traffic(url, key, args.rate, run_id)
    threading.Thread(target=traffic.run, daemon=True).start()
    time.sleep(args.warmup_s)
    kills = []
    for i in range(args.kills):
        name = ("serving-1", "serving-2")[i % 2]
        kills.append(kill_and_return(name, traffic, args.down_s, args.timeout))
        print(json.dumps(kills[-1]), flush=True)
        time.sleep(args.settle_s)
    traffic.stop.set()
    time.sleep(35)  # the last requests answer (client timeout 30 s); the log writers flush
    with traffic.lock:
        results = list(traffic.results)
    answered = {r["id"] for r in results if r["status"] == 200}
    lost = answered - logged_ids(env, run_id)
    summary = {
        "kills": len(kills),
        "failed_per_kill": max(k["failed"] for k in kills),
        "max_stall_s": round(max(r["latency"] for r in results), 3),
        "rejoin_s": max(k["rejoin_s"] for k in kills),
        "lost_log_rows": len(lost),
    }
    missed = [k for k, limit in TARGETS.items() if summary[k] > limit]
    report = {
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                    f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **summary,
        "targets": TARGETS, "targets_missed": missed,
        "requests": len(results), "answered": len(answered),
        "failed": sum(r["status"] != 200 for r in results),
        "statuses": {str(s): sum(r["status"] == s for r in results)
                     for s in sorted({r["status"] for r in results})},
        "rate_per_s": args.rate,
        "served_by": {n: sum(r["served_by"] == n for r in results)
                      for n in sorted({r["served_by"] for r in results})},
        "per_kill": kills,
        "podman": podman("--version").strip(),
        "load_avg_end": os.getloadavg(),
        "command": "scripts/failover_test.sh " + " ".join(sys.argv[1:]),
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
