#!/usr/bin/env bash
# End-to-end smoke test of podman-compose.yml on this host, with the timing of every step:
#   up -> every healthcheck passes -> trajectory_etl then trajectory_train through the Airflow
#   REST API v2 -> the model in the MLflow registry -> predictions through the load balancer
#   -> a batch CSV job (read back through each replica) -> the dashboard, Prometheus targets
#   and rules, Alertmanager -> graceful stop (prediction log flushed) -> down (volumes kept) -> up
#   -> the registered model, DAG runs and prediction-log rows are still there.
#
#   scripts/build_base_image.sh && scripts/build_images.sh     # once
#   scripts/podman_smoke.sh
#   ENV_FILE=.env SMOKE_API_KEY=<plain key> scripts/podman_smoke.sh   # against your own .env
#
# Environment (all optional):
#   ENV_FILE        default .deploy/smoke.env, generated when missing (random secrets, other
#                   host ports than the defaults, synthetic raw data made by the worker image)
#   SMOKE_API_KEY   the plain API key (read from ENV_FILE when generated)
#   SMOKE_MODEL     cv or mixture (default mixture), SMOKE_EPOCHS (default 1)
#   COMPOSE_FILES   compose files, in order (default podman-compose.yml; e.g.
#                   "podman-compose.yml podman-compose.gpu.yml")
#   KEEP_UP=1       leave the stack running at the end (default: down, volumes kept)
#   FRESH=1         start from empty volumes (down -v first)
#   TIMEOUT         seconds allowed for each wait (default 900)
#   SMOKE_REPORT    where a passing run's timings go (default benchmarks/podman_smoke.txt;
#                   empty: only .deploy/smoke_report.txt)
#   RESOURCE_REPORT where a passing run's peak memory/CPU per container go (default
#                   benchmarks/resources.json; empty: only .deploy/resources.json)
# Needs: podman, curl, jq, python3; podman-compose 1.6 (installed into .deploy-venv if absent).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/deploy/containers.conf}"
TIMEOUT="${TIMEOUT:-900}"
MODEL="${SMOKE_MODEL:-mixture}"
EPOCHS="${SMOKE_EPOCHS:-1}"
STATE="$REPO/.deploy"
mkdir -p "$STATE"

if [[ ! -x .deploy-venv/bin/podman-compose ]]; then
    python3 -m venv .deploy-venv
    .deploy-venv/bin/pip install --quiet 'podman-compose>=1.6,<2'
fi

T0=$SECONDS
TIMINGS=()
mark() {  # label: record the seconds since the last mark
    local now=$SECONDS
    TIMINGS+=("$(printf '%-46s %6d s' "$1" $(( now - ${LAST:-$T0} )))")
    printf '[%5d s] %s (%d s)\n' $(( now - T0 )) "$1" $(( now - ${LAST:-$T0} ))
    LAST=$now
}
fail() {
    echo "SMOKE FAILED: $*" >&2
    printf '%s\n' "${TIMINGS[@]}" >&2
    exit 1
}
rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# --- the environment file --------------------------------------------------------------------
ENV_FILE="${ENV_FILE:-$STATE/smoke.env}"
if [[ ! -f "$ENV_FILE" ]]; then
    [[ "$ENV_FILE" == "$STATE/smoke.env" ]] || fail "$ENV_FILE does not exist"
    key="$(rand)"
    raw="$STATE/raw"
    if [[ ! -d "$raw" ]]; then
        # a deterministic synthetic crowd, made by the same code as in the images
        mkdir -p "$raw"
        podman run --rm --user 0 -v "$raw:/out" localhost/trajectory-worker:latest \
            trajectory simulate /out --scenes 3 --agents 24 --frames 1500 >/dev/null
        chmod -R a+rX "$raw"
    fi
    umask 077
    cat >"$ENV_FILE" <<EOF
POSTGRES_PASSWORD=$(rand)
AIRFLOW_DB_PASSWORD=$(rand)
MLFLOW_DB_PASSWORD=$(rand)
PREDICTION_DB_PASSWORD=$(rand)
REDIS_PASSWORD=$(rand)
AIRFLOW_ADMIN_PASSWORD=$(rand)
MLFLOW_UI_PASSWORD=$(rand)
AIRFLOW_FERNET_KEY=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
AIRFLOW_SECRET_KEY=$(rand)
AIRFLOW_JWT_SECRET=$(rand)
PSEUDONYM_KEY=$(rand)
API_KEY_HASHES='{"$(python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' "$key")": "admin"}'
RAW_DATA_DIR=$raw
LB_PORT=18000
AIRFLOW_PORT=18080
MLFLOW_PORT=15000
DASHBOARD_PORT=18050
PROMETHEUS_PORT=19090
ALERTMANAGER_PORT=19093
AIRFLOW_BASE_URL=http://localhost:18080
MLFLOW_UI_URL=http://localhost:15000
SERVING_MODEL_POLL_S=5
# not read by compose: the plain key for this script
SMOKE_API_KEY=$key
EOF
    umask 022
    mark "generated $ENV_FILE and raw data"
fi
envget() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -1; }
API_KEY="${SMOKE_API_KEY:-$(envget SMOKE_API_KEY)}"
[[ -n "$API_KEY" ]] || fail "set SMOKE_API_KEY (the plain key whose hash is in API_KEY_HASHES)"
AIRFLOW_PASSWORD="$(envget AIRFLOW_ADMIN_PASSWORD)"
LB="http://localhost:$(envget LB_PORT | grep . || echo 8000)"
AIRFLOW="http://localhost:$(envget AIRFLOW_PORT | grep . || echo 8080)"
MLFLOW="http://localhost:$(envget MLFLOW_PORT | grep . || echo 5000)"
DASH="http://127.0.0.1:$(envget DASHBOARD_PORT | grep . || echo 8050)"
PROM="http://127.0.0.1:$(envget PROMETHEUS_PORT | grep . || echo 9090)"
AM="http://127.0.0.1:$(envget ALERTMANAGER_PORT | grep . || echo 9093)"
MODEL_NAME=trajectory-forecaster

COMPOSE_FILES="${COMPOSE_FILES:-podman-compose.yml}"
compose() {
    local files=() f
    for f in $COMPOSE_FILES; do files+=(-f "$f"); done
    .deploy-venv/bin/podman-compose --env-file "$ENV_FILE" "${files[@]}" "$@"
}

LONG_RUNNING=(postgres redis mlflow airflow-apiserver airflow-scheduler airflow-dag-processor
              airflow-triggerer dask-scheduler dask-worker serving-1 serving-2 lb dashboard
              prometheus alertmanager)

# Podman runs healthchecks from systemd timers; with no systemd (containers, CI) nothing runs
# them, so run each check here until it passes: the same command `podman healthcheck run`
# runs, hence the same verdict compose would see.
wait_healthy() {
    local deadline=$(( SECONDS + TIMEOUT )) pending=("${LONG_RUNNING[@]}") still c
    while ((${#pending[@]})); do
        still=()
        for c in "${pending[@]}"; do
            if podman healthcheck run "$c" >/dev/null 2>&1; then
                printf '          healthy: %-22s at %4d s\n' "$c" $(( SECONDS - LAST ))
            else
                still+=("$c")
            fi
        done
        pending=("${still[@]+"${still[@]}"}")
        if ((${#pending[@]})); then
            ((SECONDS < deadline)) || fail "not healthy after ${TIMEOUT}s: ${pending[*]}"
            sleep 3
        fi
    done
    [[ "$(podman inspect airflow-init --format '{{.State.ExitCode}}')" == 0 ]] \
        || fail "airflow-init (airflow db migrate) failed: podman logs airflow-init"
}

# --- helpers for the REST APIs ---------------------------------------------------------------
airflow_token() {
    curl -fsS -X POST "$AIRFLOW/auth/token" -H 'Content-Type: application/json' \
        -d "$(jq -n --arg p "$AIRFLOW_PASSWORD" '{username: "admin", password: $p}')" \
        | jq -r .access_token
}
af() {  # method path [json]: Airflow REST call with the token
    local method=$1 path=$2 body=${3:-}
    curl -fsS -X "$method" "$AIRFLOW$path" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' ${body:+-d "$body"}
}
wait_dag_parsed() {
    local deadline=$(( SECONDS + TIMEOUT ))
    until af GET "/api/v2/dags/$1" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "DAG $1 not parsed after ${TIMEOUT}s"
        sleep 3
    done
}
run_dag() {  # dag_id conf-json: unpause, trigger, wait; -> prints the final state
    local dag=$1 conf=$2 run state deadline=$(( SECONDS + TIMEOUT ))
    af PATCH "/api/v2/dags/$dag" '{"is_paused": false}' >/dev/null
    run="$(af POST "/api/v2/dags/$dag/dagRuns" "{\"logical_date\": null, \"conf\": $conf}" \
           | jq -r .dag_run_id)"
    echo "          $dag run $run conf $conf" >&2
    while :; do
        state="$(af GET "/api/v2/dags/$dag/dagRuns/$run" | jq -r .state)"
        case "$state" in success|failed) break ;; esac
        ((SECONDS < deadline)) || fail "$dag run $run still $state after ${TIMEOUT}s"
        # a run the ETL's asset event queued (default params: 40 epochs) is not this test's
        af GET "/api/v2/dags/$dag/dagRuns?state=queued&state=running" \
            | jq -r --arg me "$run" '.dag_runs[] | select(.dag_run_id != $me) | .dag_run_id' \
            | while read -r other; do
                echo "          failing extra run $other of $dag (not started by this test)" >&2
                af PATCH "/api/v2/dags/$dag/dagRuns/$other" '{"state": "failed"}' >/dev/null
            done
        sleep 5
    done
    [[ "$state" == success ]] || {
        af GET "/api/v2/dags/$dag/dagRuns/$run/taskInstances" \
            | jq -r '.task_instances[] | "\(.task_id) \(.state)"' >&2
        fail "$dag run $run $state (podman logs airflow-scheduler; UI $AIRFLOW)"
    }
}
registered_model() {  # from the host: through lb's MLflow proxy, with its basic auth
    curl -fsS -u "$(envget MLFLOW_UI_USER | grep . || echo admin):$(envget MLFLOW_UI_PASSWORD)" \
        "$MLFLOW/api/2.0/mlflow/registered-models/get?name=$MODEL_NAME"
}
wait_ready() {  # each replica's /ready answers 200 (its champion is loaded)
    local deadline=$(( SECONDS + TIMEOUT )) c
    for c in serving-1 serving-2; do
        until podman exec "$c" python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready', timeout=4)" >/dev/null 2>&1; do
            ((SECONDS < deadline)) || fail "$c not ready (no model?) after ${TIMEOUT}s"
            sleep 2
        done
    done
}
predict_body() {
    python3 - <<'PY'
import json
agents = [{"agent_id": i, "points": [[0.4 * t, float(i)] for t in range(8)]} for i in (1, 2)]
print(json.dumps({"agents": agents, "scene": "smoke", "frame": 100, "k": 3}))
PY
}
predict() {  # -> the response body; fails on a non-2xx answer
    curl -fsS -X POST "$LB/v1/predict" -H "X-API-Key: $API_KEY" \
        -H 'Content-Type: application/json' -H "X-Client-Id: smoke-$1" -d "$(predict_body)"
}
sql() {  # one query on the prediction log's database -> its unaligned result
    podman exec postgres psql -q -U serving -d serving -tAc "$1" 2>/dev/null \
        || PGPASSWORD="$(envget PREDICTION_DB_PASSWORD)" podman exec -e PGPASSWORD postgres \
            psql -q -h 127.0.0.1 -U serving -d serving -tAc "$1"
}
log_rows() { sql 'select count(*) from predictions'; }

# --- 1. up ------------------------------------------------------------------------------------
LAST=$SECONDS
# the pseudonym key is required: without it compose must refuse, not start with an empty key
nokey="$(mktemp "$STATE/nokey.XXXXXX")"
grep -v '^PSEUDONYM_KEY=' "$ENV_FILE" >"$nokey"
if env -u PSEUDONYM_KEY .deploy-venv/bin/podman-compose --env-file "$nokey" -f podman-compose.yml \
        config >"$STATE/config-nokey.log" 2>&1; then
    rm -f "$nokey"; fail "podman-compose config ran without PSEUDONYM_KEY"
fi
rm -f "$nokey"
grep -q 'PSEUDONYM_KEY' "$STATE/config-nokey.log" \
    || fail "config without PSEUDONYM_KEY failed for another reason: $STATE/config-nokey.log"
mark "compose config refuses a missing PSEUDONYM_KEY"
if [[ -n "${FRESH:-}" ]]; then
    compose down -v >/dev/null 2>&1 || true
    mark "down -v (FRESH=1)"
fi
compose up -d >"$STATE/up.log" 2>&1 || { tail -20 "$STATE/up.log"; fail "podman-compose up"; }
# peak memory/CPU per container over the whole run (the limits in podman-compose.yml are
# sized from it); written when the run passes
scripts/resource_peaks.py --out "$STATE/resources.json" & SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT
mark "podman-compose up -d"
wait_healthy
mark "all healthchecks pass"
# safe exposure: only lb's prediction port on every interface; MLflow only with its password
exposed="$(podman ps --format '{{.Names}} {{.Ports}}' | tr ',' '\n' | grep -oE '[0-9.]+:[0-9]+->[0-9]+' \
           | grep -v '^127\.0\.0\.1:' || true)"
[[ "$exposed" == "0.0.0.0:$(envget LB_PORT | grep . || echo 8000)->8000" ]] \
    || fail "ports on all interfaces other than lb's: $exposed"
[[ "$(curl -s -o /dev/null -w '%{http_code}' "$MLFLOW/health")" == 401 ]] \
    || fail "MLflow answers the host without authentication"
mark "host ports local but lb's, MLflow behind auth"

# --- 2. ETL and training through Airflow ------------------------------------------------------
TOKEN="$(airflow_token)"
[[ -n "$TOKEN" && "$TOKEN" != null ]] || fail "no Airflow token from POST /auth/token"
wait_dag_parsed trajectory_etl
wait_dag_parsed trajectory_train
mark "Airflow token, DAGs parsed"
# paused while the ETL runs: its asset event would otherwise queue a default (40-epoch) run
af PATCH /api/v2/dags/trajectory_train '{"is_paused": true}' >/dev/null
run_dag trajectory_etl '{}'
mark "trajectory_etl success (Dask cluster)"
run_dag trajectory_train "{\"model\": \"$MODEL\", \"epochs\": $EPOCHS, \"device\": \"cpu\"}"
mark "trajectory_train success ($MODEL, $EPOCHS epoch)"
registered_model | jq -e '.registered_model.aliases // [] | map(.alias) | index("champion")' >/dev/null \
    || fail "no @champion of $MODEL_NAME in MLflow: $(registered_model)"
VERSION="$(registered_model | jq -r '.registered_model.aliases[] | select(.alias == "champion") | .version')"
echo "          MLflow: $MODEL_NAME@champion = version $VERSION"
mark "model registered in MLflow (REST)"

# --- 3. serving through the load balancer ------------------------------------------------------
wait_ready
mark "both replicas loaded the champion"
for i in $(seq 1 20); do
    predict "$i" >"$STATE/predict.json" || fail "POST /v1/predict through the lb"
done
jq -e '.predictions | length == 2' "$STATE/predict.json" >/dev/null || fail "bad predict body"
echo "          predict: model $(jq -c .model "$STATE/predict.json"), variant $(jq -r .variant "$STATE/predict.json")"
mark "20 predictions through lb"

# --- runbooks that run: scale-serving ("Replica down") and rollback-model -----------------------
served_version() {  # replica -> the champion version it serves now
    podman exec "$1" python -c "import json, urllib.request as u; print(json.load(u.urlopen('http://127.0.0.1:8000/ready', timeout=4))['models']['champion']['version'])" 2>/dev/null
}
wait_served() {  # version: both replicas serve it (they poll the registry every SERVING_MODEL_POLL_S)
    local deadline=$(( SECONDS + 180 )) c
    for c in serving-1 serving-2; do
        until [[ "$(served_version "$c")" == "$1" ]]; do
            ((SECONDS < deadline)) || fail "$c serves v$(served_version "$c"), not v$1"
            sleep 2
        done
    done
}
compose restart serving-2 >/dev/null 2>&1 || fail "podman-compose restart serving-2 (scale-serving.md)"
deadline=$(( SECONDS + TIMEOUT ))
until podman healthcheck run serving-2 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "serving-2 not healthy after a restart (scale-serving.md)"
    sleep 5
done
wait_ready
mark "runbook scale-serving: restart, healthy, ready"
run_dag trajectory_train '{"model": "cv", "epochs": 1, "device": "cpu"}'
CHAMPION="$(registered_model | jq -r '.registered_model.aliases[] | select(.alias == "champion") | .version')"
LATEST="$(registered_model | jq -r '[.registered_model.latest_versions[].version | tonumber] | max')"
OTHER=$(( CHAMPION == LATEST ? CHAMPION - 1 : LATEST ))
for to in "$OTHER" "$CHAMPION"; do
    compose exec -T airflow-scheduler trajectory rollback --to-version "$to" \
        --reason "smoke: runbooks/rollback-model.md" || fail "trajectory rollback --to-version $to"
    wait_served "$to"
done
VERSION="$CHAMPION"
echo "          champion v$CHAMPION -> v$OTHER -> v$CHAMPION, followed by both replicas"
mark "runbook rollback-model: there and back"

python3 - >"$STATE/batch.csv" <<'PY'
print("scene,frame,agent_id,x,y")
for agent in range(5):
    for frame in range(0, 40):
        print(f"smoke,{frame * 10},{agent},{0.4 * frame:.2f},{agent * 1.5:.2f}")
PY
JOB="$(curl -fsS -X POST "$LB/v1/batch" -H "X-API-Key: $API_KEY" -H 'Content-Type: text/csv' \
       --data-binary @"$STATE/batch.csv" | jq -r .job_id)"
deadline=$(( SECONDS + TIMEOUT ))
while :; do
    status="$(curl -fsS "$LB/v1/batch/$JOB" -H "X-API-Key: $API_KEY" | jq -r .status)"
    case "$status" in done) break ;; failed) fail "batch job $JOB failed" ;; esac
    ((SECONDS < deadline)) || fail "batch job $JOB still $status"
    sleep 1
done
curl -fsS "$LB/v1/batch/$JOB/result" -H "X-API-Key: $API_KEY" -o "$STATE/batch_result.csv"
echo "          batch $JOB: $(( $(wc -l <"$STATE/batch_result.csv") - 1 )) result rows"
mark "batch CSV job through lb"

# batch jobs live in PostgreSQL and the shared serving-batch volume: both replicas answer
ROWS="$(( $(wc -l <"$STATE/batch_result.csv") - 1 ))"
for c in serving-1 serving-2; do
    got="$(podman exec -e KEY="$API_KEY" -e JOB="$JOB" "$c" python -c '
import json, os, urllib.request as u
h, url = {"X-API-Key": os.environ["KEY"]}, "http://127.0.0.1:8000/v1/batch/" + os.environ["JOB"]
status = json.load(u.urlopen(u.Request(url, headers=h), timeout=10))["status"]
rows = u.urlopen(u.Request(url + "/result", headers=h), timeout=10).read().decode().splitlines()
print(status, len(rows) - 1)')" || fail "$c cannot read batch job $JOB"
    [[ "$got" == "done $ROWS" ]] || fail "$c: batch job $JOB is '$got', lb said 'done $ROWS'"
done
mark "batch job read through serving-1 and serving-2"

# --- observability: dashboard, Prometheus, Alertmanager ----------------------------------------
code="$(curl -sS -o /dev/null -w '%{http_code}' "$DASH/login")"
[[ "$code" == 200 ]] || fail "dashboard GET /login: $code"
jar="$STATE/dashboard.cookies"
rm -f "$jar"
code="$(curl -sS -o /dev/null -w '%{http_code}' -c "$jar" --data-urlencode "api_key=$API_KEY" "$DASH/login")"
[[ "$code" == 302 ]] || fail "dashboard POST /login with the admin key: $code"
code="$(curl -sS -o "$STATE/dashboard.html" -w '%{http_code}' -b "$jar" -H 'Accept: text/html' "$DASH/")"
[[ "$code" == 200 ]] || fail "dashboard GET / after login: $code"
# the Overview page itself is drawn by the routing callback (reads the prediction log)
curl -fsS -b "$jar" -H 'Content-Type: application/json' "$DASH/_dash-update-component" -d '{
  "output": "..nav.children...page.children..",
  "outputs": [{"id": "nav", "property": "children"}, {"id": "page", "property": "children"}],
  "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
  "changedPropIds": ["url.pathname"], "state": []}' -o "$STATE/overview.json" \
    || fail "dashboard Overview callback"
jq -e '[.response.page | .. | strings] | index("Overview")' "$STATE/overview.json" >/dev/null \
    || fail "dashboard Overview: no Overview page in $STATE/overview.json"
mark "dashboard: login, Overview"

deadline=$(( SECONDS + 120 ))  # a scrape every 15 s
until up="$(curl -fsS "$PROM/api/v1/targets" | jq -r '[.data.activeTargets[]
            | select(.health == "up") | .labels.instance] | sort | join(" ")')" \
      && [[ "$up" == *dask-scheduler:8787* && "$up" == *serving-1:8000* && "$up" == *serving-2:8000* ]]; do
    ((SECONDS < deadline)) || fail "Prometheus targets up: '${up:-}' (want serving-1, serving-2, dask-scheduler)"
    sleep 5
done
RULES="$(curl -fsS "$PROM/api/v1/rules" | jq '[.data.groups[].rules[]] | length')"
((RULES > 0)) || fail "Prometheus loaded no alert rules"
curl -fsS -o /dev/null "$AM/-/healthy" || fail "Alertmanager /-/healthy"
echo "          prometheus: up $up; $RULES rules; alertmanager healthy"
mark "Prometheus targets and rules, Alertmanager"

# --- privacy: the log holds pseudonyms only; erasing one client from Airflow's container -----
sleep 2  # the log writer flushes every 0.5 s
RAW="$(sql "select count(*) from predictions where scene_key = 'smoke' or client_key like 'smoke-%'")"
[[ "$RAW" == 0 ]] || fail "$RAW prediction-log rows hold a raw scene or client id"
podman exec airflow-scheduler trajectory privacy erase --client-id smoke-1 >"$STATE/erase.json" \
    || fail "trajectory privacy erase in airflow-scheduler"
jq -e '.counts.predictions >= 1 and .audited' "$STATE/erase.json" >/dev/null \
    || fail "erasure of client smoke-1: $(cat "$STATE/erase.json")"
echo "          erased client smoke-1: $(jq -c .counts "$STATE/erase.json")"
mark "pseudonymised log, erasure audited"

# --- 4. graceful stop, down, up: the data survives --------------------------------------------
sleep 2  # the log writer flushes every 0.5 s
ROWS_BEFORE="$(log_rows)"
echo "          prediction log rows: $ROWS_BEFORE"
podman stop -t 40 serving-1 serving-2 >/dev/null
for c in serving-1 serving-2; do
    code="$(podman inspect "$c" --format '{{.State.ExitCode}}')"
    stopped="$(podman logs "$c" 2>&1 | grep -o 'serving stopped.*' | tail -1 || true)"
    [[ -n "$stopped" && "$code" == 0 ]] \
        || fail "$c did not shut down cleanly (exit $code): no 'serving stopped' in its log"
    echo "          $c: exit $code, $stopped"
done
mark "SIGTERM: both replicas drained and flushed"
compose down >"$STATE/down.log" 2>&1 || fail "podman-compose down"
mark "podman-compose down (volumes kept)"
compose up -d >"$STATE/up2.log" 2>&1 || { tail -20 "$STATE/up2.log"; fail "second up"; }
mark "podman-compose up -d (again)"
wait_healthy
mark "all healthchecks pass (again)"
V2="$(registered_model | jq -r '.registered_model.aliases[] | select(.alias == "champion") | .version')"
[[ "$V2" == "$VERSION" ]] || fail "after down/up, champion is '$V2', was '$VERSION'"
ROWS_AFTER="$(log_rows)"
((ROWS_AFTER >= ROWS_BEFORE && ROWS_BEFORE > 0)) \
    || fail "prediction log rows: $ROWS_BEFORE before, $ROWS_AFTER after"
TOKEN="$(airflow_token)"
RUNS="$(af GET "/api/v2/dags/trajectory_train/dagRuns?state=success" | jq .total_entries)"
((RUNS >= 1)) || fail "no successful trajectory_train run remembered by Airflow"
wait_ready
predict again >/dev/null || fail "predict after restart"
echo "          after restart: champion v$V2, $ROWS_AFTER log rows, $RUNS train runs, predict ok"
mark "data persisted across down/up"

kill -TERM $SAMPLER && wait $SAMPLER || true
RESOURCES="${RESOURCE_REPORT-$REPO/benchmarks/resources.json}"
[[ -z "$RESOURCES" ]] || cp "$STATE/resources.json" "$RESOURCES"
if [[ -z "${KEEP_UP:-}" ]]; then
    compose down >>"$STATE/down.log" 2>&1
    mark "podman-compose down"
fi

# the timings of a passing run, with the host, to benchmarks/ (SMOKE_REPORT= to skip)
REPORT="${SMOKE_REPORT-$REPO/benchmarks/podman_smoke.txt}"
{
    echo "SMOKE PASSED $(date -u +%FT%TZ) on $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "host: $(. /etc/os-release && echo "$PRETTY_NAME"), $(podman --version)," \
        "$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupsVersion}}')," \
        "$(.deploy-venv/bin/podman-compose --version 2>/dev/null | grep -m1 -i 'podman-compose')"
    echo "run: SMOKE_MODEL=$MODEL SMOKE_EPOCHS=$EPOCHS FRESH=${FRESH:-} ENV_FILE=${ENV_FILE#"$REPO"/}"
    printf '%s\n' "${TIMINGS[@]}"
    printf '%-46s %6d s\n' "total" $(( SECONDS - T0 ))
} >"$STATE/smoke_report.txt"
echo
cat "$STATE/smoke_report.txt"
[[ -z "$REPORT" ]] || cp "$STATE/smoke_report.txt" "$REPORT"
