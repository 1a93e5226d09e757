#!/bin/sh
# Creates one role and one database each for Airflow's metadata, MLflow's backend store and
# the serving prediction log; run once, on an empty data volume (sourced by the entrypoint,
# official postgres image or deploy/Containerfile.infra alike).
set -eu
create_database() {  # name password: role and database of the same name
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=name="$1" --set=password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
}
create_database airflow "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD}"
create_database mlflow "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
create_database serving "${PREDICTION_DB_PASSWORD:?set PREDICTION_DB_PASSWORD}"
