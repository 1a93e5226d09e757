#!/usr/bin/env bash
# Installs the services the serving integration tests start themselves: redis-server and
# PostgreSQL 15 (initdb, pg_ctl); and headless Chromium for the dashboard's browser tests. Idempotent: does nothing when both are present.
# Needs root (or passwordless sudo) for apt-get; without it, prints what is missing and exits 0
# so the tests that need a service skip with that reason.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || missing+=(postgresql-15)
# headless Chromium and its driver for the dashboard's browser tests (tests/dashboard): the
# Debian packages, so no browser is downloaded at test time
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# promtool, amtool and Alertmanager for tests/deploy/test_prometheus_rules.py
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
# wrk, the load generator of benchmarks/serving_bench.py
command -v wrk >/dev/null 2>&1 || missing+=(wrk)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install_services: redis-server, PostgreSQL 15, Chromium and Prometheus are present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "install_services: cannot install ${missing[*]} (not root, no sudo); tests will skip" >&2
    exit 0
fi

echo "install_services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# the packages start system services when installed; the tests start their own instead
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if command -v service >/dev/null 2>&1; then
    for svc in redis-server prometheus prometheus-alertmanager; do
        "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
    done
fi
echo "install_services: done"
