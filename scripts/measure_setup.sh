#!/usr/bin/env bash
# Cold set-up, measured honestly: a fresh clone in a temp dir, a fresh venv, empty
# pip and uv caches (every wheel is downloaded again), with uv and with pip.
#
#   /work/coord/labrun scripts/measure_setup.sh [uv|pip]...     (default: uv pip)
#
# What stays warm, and is said so in the output: the Docker engine, the lab images
# (cached by content hash, `bench images build` finds them), the Debian packages
# already installed (wrk, docker.io, debootstrap) and the OS page cache.
# Prints each set-up phase with the seconds since the start, then one line per installer.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
installers=("$@")
[ ${#installers[@]} -gt 0 ] || installers=(uv pip)
results=()
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
for installer in "${installers[@]}"; do
    tmp=$(mktemp -d /tmp/lbbench-setup-XXXXXX)
    git clone --quiet "$ROOT" "$tmp/lbbench"
    export UV_CACHE_DIR="$tmp/uv-cache" PIP_CACHE_DIR="$tmp/pip-cache"
    echo "== $installer: fresh clone of $(git -C "$ROOT" rev-parse --short HEAD) in $tmp/lbbench, empty caches"
    start=$(date +%s.%N)
    venv_done=""
    while IFS= read -r line; do
        now=$(date +%s.%N)
        printf '%7.1f  %s\n' "$(since "$start" "$now")" "$line"
        case "$line" in
            *"Docker engine"*) [ -n "$venv_done" ] || venv_done=$(since "$start" "$now") ;;
        esac
    done < <(cd "$tmp/lbbench" && LBBENCH_INSTALLER=$installer scripts/dev.sh setup 2>&1)
    total=$(since "$start" "$(date +%s.%N)")
    results+=("$(printf '%-4s venv+deps %5.1f s, whole set-up %5.1f s' "$installer" "${venv_done:-0}" "$total")")
    rm -rf "$tmp"
done
echo
echo "warm: Docker engine, lab images, Debian packages; cold: clone, venv, pip/uv caches"
printf '%s\n' "${results[@]}"
