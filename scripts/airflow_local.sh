#!/usr/bin/env bash
# Starts Airflow locally with this repo's DAGs and plugins: `airflow standalone` (api-server,
# scheduler, dag-processor, triggerer; LocalExecutor) on SQLite, examples off, sized for a
# 2-core machine, SimpleAuthManager with a known admin login. Ctrl-C stops everything.
#
#   scripts/airflow_local.sh              # UI on http://localhost:8080, login admin / admin
#   AIRFLOW_PORT=8090 AIRFLOW_ADMIN_PASSWORD=s3cret scripts/airflow_local.sh
#
# Environment (all optional):
#   AIRFLOW_HOME            default artifacts/airflow (config, SQLite DB, logs)
#   AIRFLOW_PORT            default 8080
#   AIRFLOW_ADMIN_PASSWORD  default admin (local use only: SimpleAuthManager stores it in clear)
#   AIRFLOW_PARALLELISM     default 2 (task slots: one per core)
#   TRAJ_*                  passed to the tasks (e.g. TRAJ_WORK_DIR, TRAJ_DASK_ADDRESS)
#   MLFLOW_TRACKING_URI     passed to the tasks; default SQLite under TRAJ_WORK_DIR
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PORT="${AIRFLOW_PORT:-8080}"
PASSWORD="${AIRFLOW_ADMIN_PASSWORD:-admin}"
SLOTS="${AIRFLOW_PARALLELISM:-2}"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/artifacts/airflow}"
mkdir -p "$AIRFLOW_HOME"
AIRFLOW_HOME="$(cd "$AIRFLOW_HOME" && pwd)"

export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="$SLOTS"
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="$SLOTS"
export AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG=1
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json"
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
export AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="${AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY:-60}"
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"
export TRAJ_WORK_DIR="${TRAJ_WORK_DIR:-$REPO/artifacts}"

# secrets shared by every component (JWTs signed by the api-server are checked by the others)
SECRETS="$AIRFLOW_HOME/.secrets"
if [[ ! -f "$SECRETS" ]]; then
    (umask 077  # only for this file, not for everything Airflow writes afterwards
     "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32)); print(secrets.token_urlsafe(32))' >"$SECRETS")
fi
export AIRFLOW__API_AUTH__JWT_SECRET="$(sed -n 1p "$SECRETS")"
export AIRFLOW__API__SECRET_KEY="$(sed -n 2p "$SECRETS")"
printf '{"admin": "%s"}\n' "$PASSWORD" >"$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
export PATH="$VENV/bin:$PATH"

URL="http://localhost:$PORT"
cat <<EOF
Airflow (standalone) starting; AIRFLOW_HOME=$AIRFLOW_HOME, TRAJ_WORK_DIR=$TRAJ_WORK_DIR
  UI:     $URL   (login: admin / $PASSWORD)
  DAGs:   trajectory_etl, trajectory_train, trajectory_batch_score, trajectory_tune: active,
          a trigger runs at once (UI: open a DAG, "Trigger", edit the params form, "Trigger")
          trajectory_evaluate (hourly), trajectory_retention (daily): paused until you unpause
          them (UI toggle, or PATCH /api/v2/dags/<dag> with {"is_paused": false})
          training started by the ETL's Asset event: settings from the Variable
          trajectory_train_conf, e.g. {"model": "cv", "epochs": 5} (README, Airflow)
  REST:   TOKEN=\$(curl -s -X POST $URL/auth/token -H 'Content-Type: application/json' \\
                  -d '{"username":"admin","password":"$PASSWORD"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
          curl -X POST $URL/api/v2/dags/trajectory_train/dagRuns -H "Authorization: Bearer \$TOKEN" \\
               -H 'Content-Type: application/json' \\
               -d '{"logical_date": null, "conf": {"model": "cv", "epochs": 1, "device": "cpu"}}'
          trajectory_etl:         {"conf": {"input_dir": "/path/raw", "output_dir": "/path/windows"}}
          trajectory_batch_score: {"conf": {"input_csv": "/path/in.txt", "output_path": "/path/out.csv"}}
          trajectory_evaluate:    {"conf": {"lookback_hours": 24}}
  Stop:   Ctrl-C
EOF
exec airflow standalone
