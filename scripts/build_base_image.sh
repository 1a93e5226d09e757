#!/usr/bin/env bash
# Builds the local base image (Debian bookworm minbase + Python 3.11 from apt) for hosts that
# cannot pull from a container registry. Run as root; needs debootstrap and podman.
#
#   scripts/build_base_image.sh                    # -> localhost/trajectory-base:bookworm
#   BASE_TAG=localhost/mybase:1 MIRROR=http://deb.debian.org/debian scripts/build_base_image.sh
#
# Then: scripts/build_images.sh (it passes --build-arg BASE_IMAGE=$BASE_TAG).
# With registry access, skip this and build with the default BASE_IMAGE=python:3.11-slim.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TAG="${BASE_TAG:-localhost/trajectory-base:bookworm}"
SUITE="${SUITE:-bookworm}"
# the mirror apt already uses on this host (deb822 or one-line sources), else deb.debian.org
default_mirror() {
    local uri
    uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources | grep -m1 -oE 'https?://[^ ]*/debian/?( |$)' || true)"
    echo "${uri:-http://deb.debian.org/debian}" | tr -d ' '
}
MIRROR="${MIRROR:-$(default_mirror)}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/deploy/containers.conf}"

[[ $EUID -eq 0 ]] || { echo "run as root (debootstrap)" >&2; exit 2; }
ROOTFS="$(mktemp -d /tmp/trajectory-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
start=$SECONDS
echo "debootstrap $SUITE from $MIRROR -> $ROOTFS"
# python3 (3.11 on bookworm) with venv; ca-certificates for HTTPS clients; tini for PID 1 where
# a shell wrapper is needed; no compilers (everything is installed from wheels).
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,tini,tzdata \
    "$SUITE" "$ROOTFS" "$MIRROR"
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
SOURCES
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/tmp/*
tar -C "$ROOTFS" -c . | podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$TAG"
podman run --rm "$TAG" python3 -c 'import sys, venv, ssl; print("python", sys.version.split()[0])'
echo "built $TAG in $((SECONDS - start)) s"
