#!/usr/bin/env bash
# Cold set-up, measured honestly: a fresh clone in a temp dir, a fresh venv, empty
# pip and uv caches (every wheel is downloaded again), with uv and with pip.
#
#   /work/coord/labrun scripts/measure_setup.sh [uv|pip]...     (default: uv pip)
#   COLD_IMAGES=1 /work/coord/labrun scripts/measure_setup.sh uv
#
# What stays warm, and is said so in the output: the Docker engine, the lab images
# (cached by content hash, `bench images build` finds them), the Debian packages
# already installed (wrk, docker.io, mmdebstrap) and the OS page cache.
# COLD_IMAGES=1: the images are built too (from the Debian mirror, beside the venv as set-up
# does), under a repository of this script's own (LBBENCH_IMAGE_REPO=lbbench-coldsetup),
# removed at the end; the shared lbbench/* images are not touched.
# Prints each set-up phase with the seconds since the start, then one line per installer.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
installers=("$@")
[ ${#installers[@]} -gt 0 ] || installers=(uv pip)
results=()
cold_repo=""
if [ -n "${COLD_IMAGES:-}" ]; then
    cold_repo=lbbench-coldsetup
    export LBBENCH_IMAGE_REPO=$cold_repo
fi
drop_cold_images() {
    [ -n "$cold_repo" ] || return 0
    local ids
    ids=$(docker images --filter "reference=$cold_repo/*" --format '{{.Repository}}:{{.Tag}}')
    [ -z "$ids" ] || docker rmi $ids >/dev/null
}
drop_cold_images
trap drop_cold_images EXIT
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
for installer in "${installers[@]}"; do
    tmp=$(mktemp -d /tmp/lbbench-setup-XXXXXX)
    git clone --quiet "$ROOT" "$tmp/lbbench"
    export UV_CACHE_DIR="$tmp/uv-cache" PIP_CACHE_DIR="$tmp/pip-cache"
    echo "== $installer: fresh clone of $(git -C "$ROOT" rev-parse --short HEAD) in $tmp/lbbench, empty caches"
    start=$(date +%s.%N)
    venv_done="" images_done=""
    while IFS= read -r line; do
        now=$(date +%s.%N)
        printf '%7.1f  %s\n' "$(since "$start" "$now")" "$line"
        case "$line" in
            *"venv ready"*) venv_done=$(since "$start" "$now") ;;
            *"lab images ready"*) images_done=$(since "$start" "$now") ;;
        esac
    done < <(cd "$tmp/lbbench" && LBBENCH_INSTALLER=$installer scripts/dev.sh setup 2>&1)
    total=$(since "$start" "$(date +%s.%N)")
    # the venv's steps (timestamped lines of its install log)
    grep '^== ' "$tmp/lbbench/.venv/pip-install.log" 2>/dev/null | while read -r _ at what; do
        printf '%7.1f  venv step: %s\n' "$(since "$start" "$at")" "$what"
    done
    results+=("$(printf '%-4s venv+deps %5.1f s, engine+images %5.1f s (beside it), whole set-up %5.1f s' "$installer" "${venv_done:-0}" "${images_done:-0}" "$total")")
    rm -rf "$tmp"
    drop_cold_images
done
echo
if [ -n "$cold_repo" ]; then
    echo "warm: Docker engine, Debian packages; cold: clone, venv, pip/uv caches, images (under $cold_repo/*, removed)"
else
    echo "warm: Docker engine, lab images, Debian packages; cold: clone, venv, pip/uv caches"
fi
printf '%s\n' "${results[@]}"
