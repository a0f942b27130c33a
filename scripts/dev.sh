#!/usr/bin/env bash
# Set-up and the two entry points of lbbench on a fresh Debian machine.
#
#   scripts/dev.sh setup   venv + Docker engine + Compose + images (idempotent)
#   scripts/dev.sh run     setup, then `bench run smoke` (the default scenario, end to end)
#   scripts/dev.sh test    setup, then the linters and the whole test suite (unit + integration)
#   scripts/dev.sh lint    ruff, mypy and the import layering (import-linter), in seconds
#   scripts/dev.sh wrk     only set-up's wrk step (for `bench calibrate`): installs it when missing
#
# `make setup|run|test` call this. It installs only what is missing: Python deps in
# .venv, and, when no Docker engine answers and we are root on Debian, Debian's
# docker.io (started in the background with its bridge inside 198.18.0.0/15) and
# mmdebstrap for the offline base image. No container registry is needed.
# The venv is installed in the background while the Debian packages, the engine and
# the images are set up (they need only its `docker` package, installed first).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
DOCKERD_LOG=/var/log/lbbench-dockerd.log
# Docker's own networks stay inside the benchmarking range too (RFC 2544).
DOCKERD_BIP="198.19.0.1/24"
DOCKERD_POOL="base=198.19.128.0/17,size=24"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 2; }
is_root() { [ "$(id -u)" -eq 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_update() {  # at most once a day
    if [ ! -f /var/lib/apt/lists/.lbbench-updated ] || [ -n "$(find /var/lib/apt/lists/.lbbench-updated -mmin +1440)" ]; then
        apt-get update -qq && touch /var/lib/apt/lists/.lbbench-updated
    fi
}

# Two installs at once (the lab's packages, wrk) take turns: apt-get waits for dpkg's lock.
apt_install() {
    is_root || die "need root to install $* (or install them yourself: apt-get install $*)"
    have apt-get || die "no apt-get: install $* by hand"
    say "installing $* (apt)"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >/dev/null
}

python_ok() {
    "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "$PY is older than Python 3.11: install python3.11 or set PYTHON=/path/to/python3.11"
}

# The venv. With $1 (a file), that file is created as soon as the venv can import `docker`
# (what the engine check and the image build need), before the rest is installed.
# With uv and an OS copy of pip's wheel, the venv is made without pip (`python -m venv` spends
# most of its seconds installing and compiling pip and setuptools) and uv installs pip later.
setup_venv() {
    local early=${1:-}
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        if [ "${LBBENCH_INSTALLER:-uv}" = uv ] && ! have uv && pip_wheel >/dev/null \
            && "$PY" -m venv --without-pip "$VENV" 2>/dev/null; then
            :
        elif ! "$PY" -m venv "$VENV" 2>/dev/null; then
            apt_install python3-venv
            "$PY" -m venv "$VENV"
        fi
    fi
    local stamp="$VENV/.lbbench-installed" want
    want=$(sha256sum pyproject.toml | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing lbbench and its test extras into $VENV"
        install_python_deps "$early"
        echo "$want" > "$stamp"
        say "venv ready"
    fi
    [ -z "$early" ] || : >"$early"
}

# pip's wheel as the OS keeps it for ensurepip (Debian: /usr/share/python-wheels, from
# python3-venv's python3-pip-whl; elsewhere ensurepip/_bundled): pip runs from it directly.
pip_wheel() {
    local w dir
    dir=$("$PY" -c 'import ensurepip, os; print(os.path.dirname(ensurepip.__file__))' 2>/dev/null) || dir=/nonexistent
    for w in /usr/share/python-wheels/pip-*.whl "$dir"/_bundled/pip-*.whl; do
        [ -f "$w" ] && { echo "$w"; return 0; }
    done
    return 1
}

# uv (a PyPI package) resolves and installs several times faster than pip; pip is the
# fallback when uv cannot be had or fails (LBBENCH_INSTALLER=pip forces it).
# Bytecode: pip compiles the installed modules, uv does not by default; without .pyc files
# every `bench` process compiles pandas, matplotlib ... from source again where
# PYTHONDONTWRITEBYTECODE is set (this machine does): ~4 s of CPU per command
# (docs/performance.md, "Analysis at scale"). After uv, compileall compiles site-packages on
# both cores, leaving out the packages' own test suites (a third of the source; never imported).
# The log has a timestamped `==` line per step.
install_python_deps() {
    local early=$1 log="$VENV/pip-install.log" uv="" py="$VENV/bin/python" wheel
    : >"$log"
    mark() { printf '== %s %s\n' "$(date +%s.%N)" "$*" >>"$log"; }
    if [ "${LBBENCH_INSTALLER:-uv}" = uv ]; then
        mark "uv"
        if have uv; then
            uv=$(command -v uv)
        elif [ -x "$VENV/bin/uv" ]; then
            uv="$VENV/bin/uv"
        elif "$py" -m pip --version >/dev/null 2>&1; then
            "$py" -m pip install -q --disable-pip-version-check uv >>"$log" 2>&1 && uv="$VENV/bin/uv"
        elif wheel=$(pip_wheel); then
            "$py" "$wheel/pip" install -q --disable-pip-version-check uv >>"$log" 2>&1 && uv="$VENV/bin/uv"
        fi
        mark "docker"
        if [ -n "$uv" ] && "$uv" pip install --python "$py" docker >>"$log" 2>&1; then
            [ -z "$early" ] || : >"$early"
            mark "lbbench[test]"
            if "$uv" pip install --python "$py" pip -e '.[test]' >>"$log" 2>&1; then
                mark "compile"
                # A module that does not compile (a file for another Python) stays source, as with uv's own option.
                # Niced: the image build beside it is the longer job.
                nice -n 10 "$py" -m compileall -q -j 0 -x 'site-packages/.*/tests?/' \
                    "$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >>"$log" 2>&1 || true
                mark "done"
                return
            fi
        fi
        say "uv was not available or failed (log: $log); installing with pip"
    fi
    mark "pip"
    if ! { { "$py" -m pip --version >/dev/null 2>&1 || "$py" -m ensurepip; } \
        && "$py" -m pip install --upgrade pip && "$py" -m pip install -e '.[test]'; } >>"$log" 2>&1; then
        tail -20 "$log" >&2
        die "pip install failed (full log: $log)"
    fi
    mark "done"
}

# Debian packages the lab needs on a bare machine (root with apt only; otherwise each later
# step says what is missing): one apt-get run, beside the venv's installation.
lab_packages() {
    have mmdebstrap || have debootstrap || echo mmdebstrap
    if ! have dockerd && [ -z "${DOCKER_HOST:-}" ] && [ ! -S /var/run/docker.sock ]; then
        echo docker.io
        have ip || echo iproute2
    fi
}

setup_lab_packages() {
    is_root && have apt-get || return 0
    local want
    want=$(lab_packages)
    [ -z "$want" ] || apt_install $want
}

# `bench calibrate` measures against wrk (Debian's package); without it calibrate says so before it starts.
setup_wrk() {
    have wrk && return
    if is_root && have apt-get; then
        ( apt_install wrk ) || say "could not install wrk: \`bench calibrate\` needs it (apt-get install wrk)"
    else
        say "wrk is not installed: \`bench calibrate\` needs it (apt-get install wrk)"
    fi
}

engine_answers() {
    "$VENV/bin/python" -c 'import docker; docker.from_env(timeout=5).ping()' >/dev/null 2>&1
}

setup_engine() {
    if engine_answers; then
        say "Docker engine reachable"
        return
    fi
    is_root || die "no Docker engine answers and we are not root: start one (or run this as root)"
    have dockerd || apt_install docker.io
    have ip || apt_install iproute2
    if ! pgrep -x dockerd >/dev/null; then
        pgrep -x containerd >/dev/null || true
        say "starting dockerd in the background (log: $DOCKERD_LOG)"
        # In a session of its own: set-up's jobs are killed by process group when one fails or on
        # Ctrl-C, and the engine must outlive them.
        setsid nohup dockerd --bip "$DOCKERD_BIP" --default-address-pool "$DOCKERD_POOL" \
            >"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 120); do
        engine_answers && { say "Docker engine up"; return; }
        sleep 0.5
    done
    tail -5 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
}

setup_images() {
    # The base image is built offline (mmdebstrap) when it is not there yet. `python -m bench.cli`:
    # the venv may still be installing everything but `docker`, which is all this needs.
    if ! have mmdebstrap && ! have debootstrap && is_root && have apt-get; then
        apt_install mmdebstrap
    fi
    "$VENV/bin/python" -m bench.cli images build >/dev/null
}

# Two jobs at once, each in its own process group: the venv (network, unpacking, bytecode; then
# wrk) and the lab (Debian packages, engine, images: these wait only until the venv can import
# docker). The first job to fail stops the other and set-up, with its own message; Ctrl-C stops both.
setup() {
    local t0=$SECONDS early venv_pid lab_pid done_pid rc
    python_ok
    if is_root && have apt-get && { ! have wrk || [ -n "$(lab_packages)" ] \
        || { [ ! -x "$VENV/bin/python" ] && ! "$PY" -c 'import ensurepip' 2>/dev/null; }; }; then
        apt_update  # once, before the two jobs install packages
    fi
    if [ ! -x "$VENV/bin/python" ] && ! "$PY" -c 'import ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    early=$(mktemp -u /tmp/lbbench-setup-venv-XXXXXX)
    trap 'for pid in ${venv_pid:-} ${lab_pid:-}; do kill -- "-$pid" 2>/dev/null || true; done; rm -f "$early"' EXIT
    set -m
    {
        setup_venv "$early"
        setup_wrk
    } &
    venv_pid=$!
    {
        setup_lab_packages
        while [ ! -e "$early" ]; do
            kill -0 "$venv_pid" 2>/dev/null || exit 1  # the venv job failed and says why
            sleep 0.2
        done
        setup_engine
        setup_images
        say "lab images ready"
    } &
    lab_pid=$!
    set +m
    rc=0
    wait -n -p done_pid "$venv_pid" "$lab_pid" || rc=$?
    [ "$rc" -eq 0 ] || exit "$rc"
    wait "$([ "$done_pid" = "$venv_pid" ] && echo "$lab_pid" || echo "$venv_pid")" || exit $?
    trap - EXIT
    rm -f "$early"
    "$VENV/bin/bench" doctor >&2 || die "bench doctor found a blocking problem (see above)"
    say "ready in $((SECONDS - t0)) s"
}

lint() {
    # Each linter says what it checked; any finding stops here, before the tests.
    local t0=$SECONDS
    "$VENV/bin/ruff" check --quiet bench tests scripts || die "ruff found the above"
    "$VENV/bin/mypy" || die "mypy found the above"
    local layers
    layers=$("$VENV/bin/lint-imports" --no-cache) || { printf '%s\n' "$layers" >&2; die "an import goes against the layers (above)"; }
    grep -E "KEPT|Contracts:" <<<"$layers"
    say "linters passed in $((SECONDS - t0)) s (ruff, mypy, import-linter)"
}

case "${1:-}" in
    setup) setup ;;
    run) setup; exec "$VENV/bin/bench" run "${SCENARIO:-smoke}" ${DURATION:+--duration "$DURATION"} ;;
    # Integration tests fail (instead of skipping) when they cannot reach Docker. Two pytest processes
    # (pytest-xdist): the lab's tests one after another in one, the unit tests beside them in the other
    # (tests/conftest.py schedules them; docs/performance.md, 'The test suite').
    test) setup; lint; export LBBENCH_REQUIRE_DOCKER=1; exec "$VENV/bin/python" -m pytest --numprocesses 2 tests "${@:2}" ;;
    lint) setup_venv; lint ;;
    wrk) setup_wrk; have wrk || die "wrk is still missing" ;;
    *) echo "usage: $0 setup|run|test|lint|wrk" >&2; exit 2 ;;
esac
