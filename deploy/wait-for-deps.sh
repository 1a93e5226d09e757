#!/bin/sh
# Entry point of the Python images: wait until every "host:port" in $WAIT_FOR accepts TCP
# connections (at most $WAIT_TIMEOUT seconds, default 300), then exec the command, which so
# becomes PID 1 and receives SIGTERM itself.
#
# Why: Podman < 4.6 (podman-compose ignores `condition: service_healthy` there) starts
# containers without waiting for the health of their dependencies.
set -eu
if [ -n "${WAIT_FOR:-}" ]; then
    python3 - "${WAIT_TIMEOUT:-300}" ${WAIT_FOR} <<'PY'
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            break
        except OSError as err:
            if time.monotonic() > deadline:
                sys.exit(f"wait-for-deps: {target} not reachable: {err}")
            time.sleep(1)
PY
fi
exec "$@"
