#!/usr/bin/env python3
"""Self-healing for the compose stack on a host without systemd (Podman 4.3).

Podman runs healthchecks from systemd timers and, without systemd, never runs them: a dead
replica keeps showing "(healthy)". And `podman kill` (or anything that kills a container
through Podman) counts as a stop by the user, so `restart: unless-stopped` does not bring the
container back. This watchdog, a host process beside the stack, does both jobs:

- healthchecks: every container of the project that has one gets `podman healthcheck run` at
  its own interval (start period honoured by Podman), so `podman ps` and
  `podman inspect -f '{{.State.Health.Status}}'` tell the truth; a container that turns
  `unhealthy` is restarted (`podman restart`), at most once per --cooldown seconds;
- killed containers: one whose restart policy is `always` or `unless-stopped` and that died
  after a `kill` event is started again. A `podman stop` / `podman-compose stop` is left
  alone (no kill event: that is how an operator keeps a service down). Crashes of the process
  itself are restarted by Podman's own restart policy.

    scripts/watchdog.py start      # in the background; log and pid under .deploy/
    scripts/watchdog.py status
    scripts/watchdog.py stop
    scripts/watchdog.py run        # in the foreground (Ctrl-C stops it)

Needs only Python 3 and podman; set CONTAINERS_CONF as for the stack (the script defaults it
to deploy/containers.conf). Stdlib only, so it runs with the host's python3.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / ".deploy"
PID_FILE, LOG_FILE = STATE / "watchdog.pid", STATE / "watchdog.log"
RESTART_POLICIES = {"always", "unless-stopped"}


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} watchdog: {msg}", flush=True)


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], check=False, capture_output=True, text=True, timeout=timeout)


def containers(project: str) -> list[dict]:
    """`podman inspect` of every container of the compose project."""
    names = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}",
                   "--format", "{{.Names}}").stdout.split()
    if not names:
        return []
    out = podman("inspect", *names)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []


class Watchdog:
    def __init__(self, project: str, tick: float, cooldown: float) -> None:
        self.project, self.tick, self.cooldown = project, tick, cooldown
        self.due: dict[str, float] = {}  # container -> next healthcheck (monotonic)
        self.restarted: dict[str, float] = {}  # container -> last restart for unhealthy
        self.killed: set[str] = set()  # got a `kill` event since its last start
        self.stop = threading.Event()

    def check_health(self) -> None:
        now = time.monotonic()
        for c in containers(self.project):
            name, hc = c["Name"], (c.get("Config") or {}).get("Healthcheck") or {}
            test = hc.get("Test") or []
            if c["State"]["Status"] != "running" or not test or test[0] == "NONE":
                self.due.pop(name, None)
                continue
            interval = (hc.get("Interval") or 30e9) / 1e9
            if now < self.due.setdefault(name, now):
                continue
            self.due[name] = now + interval
            run = podman("healthcheck", "run", name, timeout=interval + 60)
            status = podman("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
            if status == "unhealthy" and now - self.restarted.get(name, -1e9) > self.cooldown:
                self.restarted[name] = now
                log(f"{name} unhealthy ({run.stdout.strip() or run.stderr.strip()[:200]}); "
                    "restarting")
                podman("restart", name, timeout=120)

    def watch_events(self) -> None:
        """Start containers that died after a `kill` (restart policy permitting)."""
        proc = subprocess.Popen(
            ["podman", "events", "--filter", "type=container", "--filter",
             f"label=io.podman.compose.project={self.project}", "--format", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if self.stop.is_set():
                break
            try:
                name = self.killed_and_died(json.loads(line))
            except json.JSONDecodeError:
                continue
            if name is None:
                continue
            policy = podman("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", name).stdout
            if policy.strip() in RESTART_POLICIES:
                log(f"{name} was killed; starting it")
                started = podman("start", name, timeout=120)
                if started.returncode:
                    log(f"{name}: podman start failed: {started.stderr.strip()[:300]}")
        proc.terminate()

    def killed_and_died(self, event: dict) -> str | None:
        """The container to start again: one that died after a `kill` event since its last
        start (`podman stop` sends none)."""
        name, status = event.get("Name", ""), event.get("Status")
        if status == "kill":
            self.killed.add(name)
        elif status == "start":
            self.killed.discard(name)
        elif status == "died" and name in self.killed:
            self.killed.discard(name)
            return name
        return None

    def run(self) -> None:
        log(f"watching project {self.project!r} (tick {self.tick:g} s)")
        threading.Thread(target=self.watch_events, daemon=True).start()
        while not self.stop.is_set():
            try:
                self.check_health()
            except (subprocess.SubprocessError, OSError, json.JSONDecodeError) as err:
                log(f"healthcheck round failed: {err}")
            self.stop.wait(self.tick)


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "run"])
    parser.add_argument("--project", default=os.environ.get("COMPOSE_PROJECT", "trajectory"),
                        help="compose project name (default trajectory)")
    parser.add_argument("--tick", type=float, default=5.0,
                        help="seconds between rounds of due healthchecks (default 5)")
    parser.add_argument("--cooldown", type=float, default=120.0,
                        help="least seconds between restarts of one unhealthy container")
    args = parser.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "deploy" / "containers.conf"))
    pid = running_pid()
    if args.command == "status":
        print(f"running (pid {pid}); log {LOG_FILE}" if pid else "not running")
        return 0 if pid else 3
    if args.command == "stop":
        if pid:
            os.kill(pid, signal.SIGTERM)
            print(f"stopped (pid {pid})")
        PID_FILE.unlink(missing_ok=True)
        return 0
    if args.command == "start":
        if pid:
            print(f"already running (pid {pid})")
            return 0
        STATE.mkdir(exist_ok=True)
        with LOG_FILE.open("a") as out:
            child = subprocess.Popen(
                [sys.executable, __file__, "run", "--project", args.project,
                 "--tick", str(args.tick), "--cooldown", str(args.cooldown)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        PID_FILE.write_text(str(child.pid))
        print(f"started (pid {child.pid}); log {LOG_FILE}")
        return 0
    dog = Watchdog(args.project, args.tick, args.cooldown)
    signal.signal(signal.SIGTERM, lambda *_: dog.stop.set())
    try:
        dog.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
