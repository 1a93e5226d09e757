#!/bin/sh
# Entry point of the `lb` service: nginx in front of the serving replicas, whose addresses
# follow the compose network's DNS.
#
# nginx 1.22 (Debian bookworm) resolves the names of an `upstream` block once, at start, and
# has no `resolve` parameter there (open-source nginx gained it in 1.27.3). A replica that is
# restarted comes back on a new address, and one that is gone leaves an address that never
# answers. So this script owns the upstream list: every LB_RESOLVE_S seconds it resolves
# LB_REPLICAS, writes `server <ip>:<port>` lines for the names that resolve to
# /tmp/nginx/upstreams.conf (included by nginx.conf) and, when the list changed, reloads nginx
# (gracefully: requests in flight finish on the old workers). A stopped replica leaves the
# network's DNS at once and so leaves the rotation within LB_RESOLVE_S; a restarted one joins
# it as soon as its name resolves again (nginx's connect timeout and `proxy_next_upstream`
# cover the moment in between, see nginx.conf).
#
# It also writes, for the MLflow proxy of nginx.conf, the resolver (the network's DNS server,
# from /etc/resolv.conf) and the basic-auth file of MLFLOW_UI_USER / MLFLOW_UI_PASSWORD.
#
#   LB_REPLICAS    "serving-1 serving-2" (names on the compose network)
#   LB_PORT        8000 (the replicas' port)
#   LB_RESOLVE_S   1
set -eu
REPLICAS="${LB_REPLICAS:-serving-1 serving-2}"
PORT="${LB_PORT:-8000}"
EVERY="${LB_RESOLVE_S:-1}"
DIR=/tmp/nginx
mkdir -p "$DIR"
umask 077

dns="$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)"
echo "resolver ${dns:?no nameserver in /etc/resolv.conf} valid=5s ipv6=off;" >"$DIR/resolver.conf"
# nginx reads {PLAIN} entries; the password is already in this container's environment, and
# the file never leaves the container
printf '%s:{PLAIN}%s\n' "${MLFLOW_UI_USER:-admin}" "${MLFLOW_UI_PASSWORD:?set MLFLOW_UI_PASSWORD}" \
    >"$DIR/mlflow.htpasswd"
chgrp nogroup "$DIR/mlflow.htpasswd" && chmod 640 "$DIR/mlflow.htpasswd"  # nginx's workers

render() {  # the upstream servers for the names that resolve now, in a stable order
    found=0
    for name in $REPLICAS; do
        ip="$(getent hosts "$name" | awk 'NR == 1 {print $1}')" || true
        if [ -n "$ip" ]; then
            echo "server $ip:$PORT max_fails=1 fail_timeout=2s;  # $name"
            found=1
        fi
    done
    # an upstream needs a server: with no replica up, one that is marked down (nginx answers 502)
    [ "$found" = 1 ] || echo "server 127.0.0.1:$PORT down;  # no replica resolves"
}

umask 022
render >"$DIR/upstreams.conf"
cat "$DIR/upstreams.conf"
nginx -g 'daemon off;' &
NGINX=$!
trap 'kill -QUIT "$NGINX" 2>/dev/null; wait "$NGINX"; exit 0' TERM QUIT INT

while kill -0 "$NGINX" 2>/dev/null; do
    sleep "$EVERY" &
    wait $! || true
    render >"$DIR/upstreams.new"
    if ! cmp -s "$DIR/upstreams.new" "$DIR/upstreams.conf"; then
        mv "$DIR/upstreams.new" "$DIR/upstreams.conf"
        echo "lb: replicas now: $(grep -o '# .*' "$DIR/upstreams.conf" | tr -d '#' | tr '\n' ' ')" >&2
        nginx -s reload || echo "lb: reload failed; the previous upstreams stay" >&2
    fi
done
wait "$NGINX"
