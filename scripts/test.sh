#!/usr/bin/env bash
# Runs the whole test suite. Integration tests start the real services they need
# (an MLflow server here; Redis and PostgreSQL come from apt when a test needs them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
status=0
.venv/bin/python -m pytest "$@" || status=$?
# exit code 5 means no test was collected: that is a failure here, not a pass
exit $status
