#!/usr/bin/env bash
# Builds every image of podman-compose.yml offline: a wheelhouse of the hashed locks in
# requirements/ (`pip download --require-hashes` from the host's package index), then one
# `podman build` per target, each installing its own lock (scripts/lock.sh makes the locks).
#
#   scripts/build_base_image.sh && scripts/build_images.sh
#   BASE_IMAGE=python:3.11-slim INFRA_BASE_IMAGE=debian:bookworm-slim scripts/build_images.sh
#   TORCH_INDEX=https://download.pytorch.org/whl/cu128 TARGETS="worker airflow" scripts/build_images.sh
#
# Environment (all optional):
#   BASE_IMAGE        Python 3.11 base (default localhost/trajectory-base:bookworm)
#   INFRA_BASE_IMAGE  Debian base of the deploy/Containerfile.infra images (default: BASE_IMAGE)
#   TAG               image tag (default latest); images are localhost/trajectory-<target>:TAG
#   TARGETS           default "serving dashboard airflow worker mlflow postgres redis nginx
#                     prometheus alertmanager"
#   TORCH_INDEX       pip index of another torch build (CUDA); empty: the CPU wheel
#   REFRESH_WHEELS=1  download the wheelhouse again even if it looks current
#   BUILD_REPORT      where a build of every target writes its timings (default
#                     benchmarks/image_build.txt; empty: nowhere)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/deploy/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/trajectory-base:bookworm}"
INFRA_BASE_IMAGE="${INFRA_BASE_IMAGE:-$BASE_IMAGE}"
TAG="${TAG:-latest}"
TARGETS="${TARGETS:-serving dashboard airflow worker mlflow postgres redis nginx prometheus alertmanager}"
WHEELS="$REPO/wheelhouse"

LINES=()
say() { LINES+=("$1"); echo "$1"; }  # a timing line, also kept for the report
step() { say "$(printf '%-34s %5d s' "$1" "$(( SECONDS - t0 ))")"; }

t0=$SECONDS
# the wheels of every lock in one folder (a file two locks share is downloaded once)
LOCKS=(requirements/*.lock)
if [[ -n "${REFRESH_WHEELS:-}" || ! -f "$WHEELS/.complete" || -n "$(find "${LOCKS[@]}" -newer "$WHEELS/.complete")" ]]; then
    mkdir -p "$WHEELS"
    rm -f "$WHEELS/.complete"
    for lock in "${LOCKS[@]}"; do
        python3 -m pip download --quiet --dest "$WHEELS" --only-binary=:all: --no-deps \
            --require-hashes -r "$lock" 2> >(grep -v '^WARNING: Location' >&2)
    done
    touch "$WHEELS/.complete"
    step "wheelhouse ($(du -sh "$WHEELS" | cut -f1))"
fi

for target in $TARGETS; do
    t1=$SECONDS
    case "$target" in
        postgres|redis|nginx|prometheus|alertmanager)
            podman build --quiet --format docker --ignorefile deploy/containerignore -f deploy/Containerfile.infra \
                --build-arg BASE_IMAGE="$INFRA_BASE_IMAGE" --target "$target" \
                -t "localhost/trajectory-$target:$TAG" . >/dev/null ;;
        *)
            # the targets built FROM base install requirements/<target>.lock
            podman build --quiet --format docker --ignorefile deploy/containerignore -f Containerfile \
                --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_INDEX="${TORCH_INDEX:-}" \
                --build-arg LOCK="$target" \
                --target "$target" -t "localhost/trajectory-$target:$TAG" . >/dev/null ;;
    esac
    say "$(printf '%-34s %5d s  (%s)' "image trajectory-$target:$TAG" "$(( SECONDS - t1 ))" \
        "$(podman image inspect --format '{{.Size}}' "localhost/trajectory-$target:$TAG" \
           | awk '{printf "%.0f MB", $1/1e6}')")"
done
step "all images"
# the timings of a complete build, with the host (BUILD_REPORT= to skip)
REPORT="${BUILD_REPORT-$REPO/benchmarks/image_build.txt}"
if [[ -n "$REPORT" && "$TARGETS" == *serving*airflow*alertmanager* ]]; then
    {
        echo "BUILD $(date -u +%FT%TZ) on $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB," \
            "$(podman --version), base $BASE_IMAGE"
        printf '%s\n' "${LINES[@]}"
    } >"$REPORT"
fi
