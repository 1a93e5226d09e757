#!/usr/bin/env bash
# The hashed lock files in requirements/, one per image plus the development one; every install
# uses one (`make setup`, scripts/build_images.sh) with --require-hashes, then the project with
# --no-deps. all-dev.lock is resolved first and constrains the others, so an image has exactly
# the versions the tests ran with.
#
#   scripts/lock.sh              after a change of pyproject.toml: the pins in place are kept
#   scripts/lock.sh --upgrade    every pin to the newest release the ranges allow
#
#   all-dev.lock     every extra and dev          make setup (tests, CI)
#   serving.lock     core + serving               image trajectory-serving
#   dashboard.lock   core + dashboard             image trajectory-dashboard
#   worker.lock      core + train + serving       image trajectory-worker (Dask worker: ETL,
#                                                 training, the service's batch-scoring tasks)
#   airflow.lock     core + every extra           image trajectory-airflow (DAG tasks import all)
#   mlflow.lock      requirements/mlflow.in       image trajectory-mlflow (no project code)
#   build.lock       pyproject's build-system     the images build the project offline
#   pip.lock         requirements/pip.in          installed first, before any other lock
#
# pip-compile (pip-tools, in the dev extra) runs from $VENV (default .venv: `make setup`). It
# resolves through pip and its configuration, so torch==2.13.0 is this host's CPU wheel
# (find-links) and the lock names it as torch==2.13.0+cpu with that file's hash. Locks are for
# Linux x86_64, CPython 3.11.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
VENV="${VENV:-$REPO/.venv}"
OUT=requirements
export CUSTOM_COMPILE_COMMAND="scripts/lock.sh"  # the command the lock files' header names
ARGS=(--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
      --no-emit-find-links --annotation-style=line)
UPGRADE=()
if [[ "${1:-}" == "--upgrade" ]]; then
    UPGRADE=(--upgrade)
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--upgrade]" >&2
    exit 2
fi

compile() {  # output file, then pip-compile's inputs and options
    local out="$OUT/$1"
    shift
    "$VENV/bin/pip-compile" "${ARGS[@]}" --output-file "$out" "$@" 2> >(grep -v '^WARNING: Location' >&2)
    echo "$out: $(grep -c '^[a-zA-Z]' "$out") packages"
}
extras() { printf -- '--extra=%s ' "$@"; }
# pyproject's `all`, spelled out: the self-reference would lock the project itself
ALL=(serving train airflow monitoring dashboard)

compile all-dev.lock "${UPGRADE[@]}" $(extras "${ALL[@]}" dev) pyproject.toml
# every other lock takes all-dev's versions (which --upgrade has moved)
ARGS+=(--constraint "$OUT/all-dev.lock")
compile serving.lock $(extras serving) pyproject.toml
compile dashboard.lock $(extras dashboard) pyproject.toml
compile worker.lock $(extras train serving) pyproject.toml
compile airflow.lock $(extras "${ALL[@]}") pyproject.toml
compile mlflow.lock "$OUT/mlflow.in"
compile pip.lock "$OUT/pip.in"
compile build.lock --only-build-deps --all-build-deps pyproject.toml
