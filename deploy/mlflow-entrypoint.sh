#!/bin/sh
# Entry point of the mlflow image: the tracking server on port 5000 with the backend store at
# $MLFLOW_BACKEND_STORE_URI (PostgreSQL) and artifacts proxied by the server (--serve-artifacts)
# into /var/lib/mlflow/artifacts (a volume). Extra arguments are passed to `mlflow server`.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI}"
set -- --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --serve-artifacts --artifacts-destination /var/lib/mlflow/artifacts \
    --host 0.0.0.0 --port 5000 --workers "${MLFLOW_WORKERS:-2}" "$@"
if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then
    set -- "$@" --allowed-hosts "$MLFLOW_ALLOWED_HOSTS"
fi
exec /usr/local/bin/wait-for-deps mlflow server "$@"
