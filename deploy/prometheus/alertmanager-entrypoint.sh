#!/bin/sh
# Starts Alertmanager with the webhook URL from the environment (TRAJ_ALERT_WEBHOOK).
# alertmanager.yml reads the URL from a file (slack_configs api_url_file), so the secret stays
# out of the repository and out of `ps`; this writes that file, readable by this user only.
# Unset, alerts still show in the UI (:9093) and Alertmanager logs each failed notification.
set -eu
url_file="${ALERTMANAGER_URL_FILE:-/tmp/alertmanager/webhook_url}"
mkdir -p "$(dirname "$url_file")"
umask 077
if [ -z "${TRAJ_ALERT_WEBHOOK:-}" ]; then
    echo "alertmanager-entrypoint: TRAJ_ALERT_WEBHOOK is not set; alerts are sent nowhere" >&2
fi
printf '%s\n' "${TRAJ_ALERT_WEBHOOK:-}" >"$url_file"
unset TRAJ_ALERT_WEBHOOK
exec "${ALERTMANAGER_BIN:-prometheus-alertmanager}" "$@"
