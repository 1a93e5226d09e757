#!/usr/bin/env bash
# Checks scripts/watchdog.py against real containers (Podman, no systemd), in ~40 s:
# a container killed with `podman kill` is started again, one stopped with `podman stop` (even
# when the stop ends in SIGKILL) stays down, one whose healthcheck fails is restarted.
# Uses its own compose-project label (wdtest), so a running stack is not touched.
#   scripts/watchdog_drill.sh [image]     (default localhost/trajectory-redis:latest)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/deploy/containers.conf}"
IMAGE="${1:-localhost/trajectory-redis:latest}"
LABEL=io.podman.compose.project=wdtest
LOG="$(mktemp)"
cleanup() { podman rm -f wdt-sick wdt-killed wdt-stopped >/dev/null 2>&1 || true; rm -f "$LOG"; }
trap cleanup EXIT
cleanup
run() { podman run -d --name "$1" --label "$LABEL" --restart unless-stopped "${@:2}" "$IMAGE" sleep 1000 >/dev/null 2>&1; }
run wdt-killed
run wdt-stopped
run wdt-sick --health-cmd false --health-retries 2 --health-interval 3s
timeout 30 python3 "$REPO/scripts/watchdog.py" run --project wdtest --tick 2 --cooldown 10 >"$LOG" 2>&1 &
sleep 4
podman kill wdt-killed >/dev/null
podman stop -t 1 wdt-stopped >/dev/null 2>&1   # sleep ignores SIGTERM: the stop ends in SIGKILL
wait || true
cat "$LOG"
state() { podman inspect -f '{{.State.Status}}' "$1"; }
fail=0
[[ "$(state wdt-killed)" == running ]] || { echo "FAIL: killed container not started again"; fail=1; }
[[ "$(state wdt-stopped)" == exited ]] || { echo "FAIL: stopped container was started"; fail=1; }
grep -q "wdt-sick unhealthy" "$LOG" || { echo "FAIL: unhealthy container not restarted"; fail=1; }
((fail)) || echo "watchdog drill passed"
exit $fail
