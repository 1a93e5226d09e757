#!/usr/bin/env bash
# The whole test suite. Tests that need a real service start it themselves (MLflow server,
# Redis, PostgreSQL, Airflow); this script only makes sure the apt-provided binaries exist.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
bash scripts/install_services.sh
echo "ruff and mypy over trajectory/ serving/ dags/ plugins/"
.venv/bin/ruff check trajectory serving dags plugins tests
.venv/bin/mypy  # the packages are listed in pyproject.toml [tool.mypy]
# pytest exits 5 when it collected no test: that fails here too (set -e), as it must
exec .venv/bin/python -m pytest "$@"
