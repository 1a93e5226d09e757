"""Image sizes per target and how fast a serving replica gets ready, into benchmarks/images.json.

Sizes: `podman image inspect` of localhost/trajectory-<target>:<tag> for each target that exists
(with its build time, so an image older than the locks shows as such). Ready time: `podman run`
of the serving image with the built-in constant-velocity model (no MLflow, no Redis, the SQLite
prediction log), timed from the start command to the first 200 of /ready; one warm-up, then
`--rounds` starts. The target is 15 s.

    CONTAINERS_CONF=deploy/containers.conf .venv/bin/python benchmarks/images_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("images.json")
TARGETS = ("serving", "dashboard", "worker", "airflow", "mlflow")
READY_TARGET_S = 15.0
SIZE_TARGET_BYTES = 1.3e9  # the serving image


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


def image_info(image: str) -> dict[str, Any] | None:
    try:
        info = json.loads(podman("image", "inspect", image))[0]
    except subprocess.CalledProcessError:
        return None
    return {"image": image, "id": info["Id"][:12], "created": info["Created"],
            "size_bytes": info["Size"], "size_mb": round(info["Size"] / 1e6)}


def time_to_ready(image: str, port: int, timeout_s: float) -> float:
    """Seconds from `podman run` to the first 200 of /ready; the container is removed after."""
    env = {"SERVING_VARIANTS": '{"champion": "builtin:cv"}', "SERVING_AUTH_REQUIRED": "false",
           "TRAJ_PSEUDONYM_KEY": "images-bench-pseudonym-key-0123456789"}
    cmd = ["podman", "run", "-d", "-p", f"127.0.0.1:{port}:8000"]
    cmd += [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    start = time.perf_counter()
    container = subprocess.run([*cmd, image], check=True, capture_output=True,
                               text=True).stdout.strip()
    try:
        while (elapsed := time.perf_counter() - start) < timeout_s:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if r.status == 200:
                        return elapsed
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        logs = subprocess.run(["podman", "logs", container], check=False,
                              capture_output=True, text=True)
        raise TimeoutError(f"{image}: not ready in {timeout_s} s\n{logs.stdout}{logs.stderr}")
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", container], check=False,
                       capture_output=True)


def hardware() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                  if line.startswith("Model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "podman": podman("--version").strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--baseline-tag", default="before-locks",
                        help="a serving image to size beside the current one, if it exists")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    sizes = {t: image_info(f"localhost/trajectory-{t}:{args.tag}") for t in TARGETS}
    baseline = image_info(f"localhost/trajectory-serving:{args.baseline_tag}")
    serving = f"localhost/trajectory-serving:{args.tag}"
    load_before = os.getloadavg()
    time_to_ready(serving, args.port, args.timeout)  # warm-up: page cache, podman storage
    ready = [time_to_ready(serving, args.port, args.timeout) for _ in range(args.rounds)]
    serving_size = (sizes["serving"] or {}).get("size_bytes", float("inf"))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "command": "CONTAINERS_CONF=deploy/containers.conf .venv/bin/python "
                   "benchmarks/images_bench.py",
        "images": {t: info for t, info in sizes.items() if info},
        "missing_images": [t for t, info in sizes.items() if not info],
        "serving_baseline": baseline,
        "serving_size_target_bytes": SIZE_TARGET_BYTES,
        "serving_size_within_target": serving_size <= SIZE_TARGET_BYTES,
        "ready": {
            "what": "podman run -> first 200 of /ready; model builtin:cv, SQLite log, no Redis",
            "rounds_s": [round(s, 2) for s in ready],
            "median_s": round(statistics.median(ready), 2),
            "max_s": round(max(ready), 2),
            "target_s": READY_TARGET_S,
            "within_target": max(ready) <= READY_TARGET_S,
        },
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("images", "ready")}, indent=2))


if __name__ == "__main__":
    main()
