#!/usr/bin/env python3
"""Peak memory and CPU of every container of the compose project, sampled with `podman stats`
while something runs (scripts/podman_smoke.sh starts it around the whole smoke test), beside
each container's configured limits: the figures the limits in podman-compose.yml are sized
from (docs/deployment.md "Resources").

    scripts/resource_peaks.py --out benchmarks/resources.json &   # SIGTERM/SIGINT: write, exit

Stdlib only (the host's python3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def to_bytes(text: str) -> float:
    number = text.rstrip("BbKkMmGgIi")
    unit = text[len(number):].lower() or "b"
    return float(number) * UNITS.get(unit, 1)


def sample(project: str) -> dict[str, tuple[float, float]]:
    """container -> (memory bytes, CPU %) now."""
    names = subprocess.run(
        ["podman", "ps", "--filter", f"label=io.podman.compose.project={project}",
         "--format", "{{.Names}}"], check=False, capture_output=True, text=True).stdout.split()
    if not names:
        return {}
    out = subprocess.run(
        ["podman", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}\t{{.CPUPerc}}",
         *names], check=False, capture_output=True, text=True).stdout
    now = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and "/" in parts[1]:
            now[parts[0]] = (to_bytes(parts[1].split("/")[0].strip()),
                             float(parts[2].rstrip("%") or 0))
    return now


def limits(names: list[str]) -> dict[str, dict[str, float | None]]:
    out = {}
    for name in names:
        info = subprocess.run(["podman", "inspect", "-f",
                               "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", name],
                              check=False, capture_output=True, text=True).stdout.split()
        if len(info) == 2:
            memory, nano = int(info[0]), int(info[1])
            out[name] = {"memory_mb": round(memory / 2**20) if memory else None,
                         "cpus": nano / 1e9 if nano else None}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--project", default="trajectory")
    args = p.parse_args()
    os.environ.setdefault("CONTAINERS_CONF",
                          str(Path(__file__).resolve().parents[1] / "deploy" / "containers.conf"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    peak_mem: dict[str, float] = {}
    peak_cpu: dict[str, float] = {}
    samples = 0
    started = datetime.now(UTC)
    while not stop.is_set():
        for name, (mem, cpu) in sample(args.project).items():
            peak_mem[name] = max(peak_mem.get(name, 0.0), mem)
            peak_cpu[name] = max(peak_cpu.get(name, 0.0), cpu)
        samples += 1
        stop.wait(args.every)
    configured = limits(sorted(peak_mem))
    report = {
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds()),
        "samples": samples, "every_s": args.every,
        "note": "podman stats samples: peaks between samples are missed; CPU % of one core",
        "containers": {name: {"peak_memory_mb": round(peak_mem[name] / 2**20),
                              "peak_cpu_percent": round(peak_cpu[name], 1),
                              "limit": configured.get(name)}
                       for name in sorted(peak_mem)},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
