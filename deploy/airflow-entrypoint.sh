#!/bin/sh
# Entry point of the airflow image: `airflow <args>` after the dependencies in $WAIT_FOR
# answer. With SimpleAuthManager, the admin's password comes from $AIRFLOW_ADMIN_PASSWORD
# (written to the passwords file Airflow reads; the file never leaves the container).
set -eu
if [ -n "${AIRFLOW_ADMIN_PASSWORD:-}" ] && [ -n "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-}" ]; then
    umask 077
    user="${AIRFLOW_ADMIN_USER:-admin}"
    python3 -c 'import json, sys; print(json.dumps({sys.argv[1]: sys.argv[2]}))' \
        "$user" "$AIRFLOW_ADMIN_PASSWORD" >"$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
fi
exec /usr/local/bin/wait-for-deps airflow "$@"
