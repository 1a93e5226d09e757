#!/usr/bin/env bash
# Replica failover drill on the running stack (see scripts/failover_test.py --help):
#   scripts/podman_smoke.sh with KEEP_UP=1, scripts/watchdog.py start, then
#   scripts/failover_test.sh            -> benchmarks/failover.json, exit 1 on a missed target
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/deploy/containers.conf}"
exec python3 "$REPO/scripts/failover_test.py" "$@"
