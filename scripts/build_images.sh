#!/usr/bin/env bash
# Builds every image of podman-compose.yml offline: a wheelhouse from the host's package index
# (`pip download`, pinned to the project's .venv), then one `podman build` per target.
#
#   scripts/build_base_image.sh && scripts/build_images.sh
#   BASE_IMAGE=python:3.11-slim INFRA_BASE_IMAGE=debian:bookworm-slim scripts/build_images.sh
#   TORCH_INDEX=https://download.pytorch.org/whl/cu128 TARGETS="worker airflow" scripts/build_images.sh
#
# Environment (all optional):
#   BASE_IMAGE        Python 3.11 base (default localhost/trajectory-base:bookworm)
#   INFRA_BASE_IMAGE  Debian base of the deploy/Containerfile.infra images (default: BASE_IMAGE)
#   TAG               image tag (default latest); images are localhost/trajectory-<target>:TAG
#   TARGETS           default "serving airflow worker mlflow postgres redis nginx prometheus
#                     alertmanager"
#   TORCH_INDEX       pip index of another torch build (CUDA); empty: the CPU wheel
#   VENV              where `pip freeze` pins come from (default .venv; else pyproject ranges)
#   REFRESH_WHEELS=1  rebuild the wheelhouse even if it looks current
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/deploy/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/trajectory-base:bookworm}"
INFRA_BASE_IMAGE="${INFRA_BASE_IMAGE:-$BASE_IMAGE}"
TAG="${TAG:-latest}"
TARGETS="${TARGETS:-serving airflow worker mlflow postgres redis nginx prometheus alertmanager}"
VENV="${VENV:-$REPO/.venv}"
WHEELS="$REPO/wheelhouse"

step() { printf '%-34s %5d s\n' "$1" "$(( SECONDS - t0 ))"; }

t0=$SECONDS
if [[ -n "${REFRESH_WHEELS:-}" || ! -f "$WHEELS/requirements.txt" || pyproject.toml -nt "$WHEELS/requirements.txt" ]]; then
    mkdir -p "$WHEELS"
    if [[ -x "$VENV/bin/pip" ]]; then
        # the exact versions the tests ran with; dev-only tools left out
        "$VENV/bin/pip" freeze --exclude-editable \
            | grep -vE '^(pytest|pytest-timeout|ruff|iniconfig)==' >"$WHEELS/requirements.txt.new"
    else
        python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
            >"$WHEELS/requirements.txt.new"
    fi
    # setuptools and wheel: the offline build of the project itself needs them; async-timeout:
    # redis needs it on Python < 3.11.3 (Debian bookworm has 3.11.2; the host may be newer)
    python3 -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
        -r "$WHEELS/requirements.txt.new" 'setuptools>=68' wheel 'async-timeout>=4.0.3' \
        2> >(grep -v '^WARNING: Location' >&2)
    mv "$WHEELS/requirements.txt.new" "$WHEELS/requirements.txt"
    step "wheelhouse ($(du -sh "$WHEELS" | cut -f1))"
fi
grep -q '^torch==2\.13\.0' "$WHEELS/requirements.txt" \
    || echo "warning: wheelhouse/requirements.txt does not pin torch==2.13.0" >&2

for target in $TARGETS; do
    t1=$SECONDS
    case "$target" in
        postgres|redis|nginx|prometheus|alertmanager)
            podman build --quiet --format docker --ignorefile deploy/containerignore -f deploy/Containerfile.infra \
                --build-arg BASE_IMAGE="$INFRA_BASE_IMAGE" --target "$target" \
                -t "localhost/trajectory-$target:$TAG" . >/dev/null ;;
        *)
            podman build --quiet --format docker --ignorefile deploy/containerignore -f Containerfile \
                --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_INDEX="${TORCH_INDEX:-}" \
                --target "$target" -t "localhost/trajectory-$target:$TAG" . >/dev/null ;;
    esac
    printf '%-34s %5d s  (%s)\n' "image trajectory-$target:$TAG" "$(( SECONDS - t1 ))" \
        "$(podman image inspect --format '{{.Size}}' "localhost/trajectory-$target:$TAG" \
           | awk '{printf "%.0f MB", $1/1e6}')"
done
step "all images"
