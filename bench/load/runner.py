"""Run Locust headless against a lab's VIP as a child process.

Locust runs in its own session, so a Ctrl-C in the terminal reaches ``bench``
first; ``bench`` then asks Locust to stop (SIGTERM: it writes its CSVs and our
capture flushes), waits briefly, and kills it if it hangs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import paths
from ..errors import UserError
from ..proc import group_alive
from ..results.layout import LOCUST_CSV_PREFIX, RunDir
from ..spec import Scenario

DEFAULT_LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_GRACE = 10.0
#: Where the Locust processes of one run on this machine meet (never another interface).
LOOPBACK = "127.0.0.1"
#: Seconds Locust's master waits for its worker containers (``--workers``) to connect before it gives up
#: (exit 1, "Gave up waiting for workers to connect"). Their start (container, then Locust's imports)
#: took 5-25 s on the busy 2-core machine; it comes on top of the run's time (bench.run.load_deadline_s).
WORKERS_START_TIMEOUT = 60

USER_CLASSES = {"fasthttp": "KeepAliveUser", "lean": "LeanHttpsUser"}
#: The user class of the rate models (open, connection-rate, handshake-rate): the pool of connections.
RATE_USER_CLASS = "LeanRateUser"


def user_class(scenario: Scenario) -> str:
    """The Locust user class a scenario's load runs with."""
    return RATE_USER_CLASS if scenario.load.is_rate else USER_CLASSES[scenario.load.engine]


def lab_hosts(host: str) -> dict[str, str]:
    """Both schemes of the target (``https://VIP`` and ``http://VIP``), or only the given one when it names a port."""
    parts = urlsplit(host)
    if parts.port is not None or not parts.hostname:
        return {parts.scheme: host}
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {"https": f"https://{name}", "http": f"http://{name}"}


def load_settings(scenario: Scenario, host: str, ca_pem: Path, run_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``LBBENCH_LOAD`` settings every Locust process of the run reads (see bench/load/users.py)."""
    load = scenario.load
    settings: dict[str, Any] = {
        "ca": str(ca_pem),
        "path": load.path,
        "think_time": load.think_time,
        "run_dir": str(run_dir),
        "timeout": load.timeout,
        "name": f"{'POST' if load.request_body else 'GET'} {load.path.split('?')[0]}",
        # lean engine only (FastHttpUser ignores them)
        "connect_timeout": load.connect_timeout,
        "requests_per_connection": load.requests_per_connection,
        "resumption": load.resumption,
        "tls_version": load.tls_version,
        # both engines: 1 in N requests traced through every hop (null: automatic; bench/load/capture.py)
        "trace_every": load.trace_every,
        "request_body": load.request_body,
        # the load models (bench/load/models.py, bench/load/control.py)
        "model": load.model,
        "load": load.model_dump(mode="json"),
        "duration": scenario.duration,
        "hosts": lab_hosts(host),
    }
    settings.update(extra or {})
    return settings


#: The file in the run's locust/ folder whose appearance lets a Locust started ahead begin its users.
START_GATE = ".start"
#: Seconds a Locust started ahead of its lab waits for `bench run`'s go before giving up.
START_GATE_TIMEOUT = 300.0


def start_gate(run_dir: Path) -> dict[str, Any]:
    """The ``start_gate`` setting of a Locust that `bench run` starts while its lab still comes up."""
    return {"file": str(RunDir(run_dir).locust / START_GATE), "owner": os.getpid()}


def open_start_gate(gate: dict[str, Any], start_at: float | None = None) -> None:
    """Let the Locust behind ``gate`` start; with ``start_at`` its schedule starts at that instant (settings ``start_at``)."""
    path = Path(gate["file"])
    if start_at is None:
        path.touch()
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(repr(float(start_at)))
    tmp.replace(path)  # the file appears with its instant in it


def gate_waiting(gate: dict[str, Any]) -> bool:
    """Whether the load generator behind ``gate`` is up and waits for the go (a master: with every worker it expects)."""
    return Path(gate["file"] + ".waiting").exists()


def wait_at_gate(locust: LocustProcess, gate: dict[str, Any], timeout: float, check: Callable[[], str | None] | None = None) -> str | None:
    """Wait until the load generator behind ``gate`` is up and waits for the go (:func:`gate_waiting`).

    Returns None once it is; otherwise why not, in a few words: its Locust exited, ``check``
    (asked about once a second, e.g. whether a worker container failed) named a problem, or
    ``timeout`` seconds passed.
    """
    until = time.monotonic() + timeout
    next_check = time.monotonic() + 1.0
    while not gate_waiting(gate):
        if locust.wait(0.02) is not None:
            return f"it exited with status {locust.proc.returncode} ({locust.log_tail()})"
        if check is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            problem = check()
            if problem:
                return problem
        if time.monotonic() > until:
            return f"it was not up within {timeout:g} s"
    return None


def wait_for_start_gate(gate: dict[str, Any] | None, timeout: float = START_GATE_TIMEOUT, poll: float = 0.01, up: Callable[[], bool] | bool = True) -> None:
    """In a Locust process, before any user starts: wait until ``gate``'s file exists (None: no gate).

    ``up`` says when to tell the starter that the load generator is up (``<gate>.waiting``,
    :func:`gate_waiting`): True at once, a callable once it returns True (a master: when every
    worker it expects is connected), False never (a worker: its master speaks for it).
    Gives up (SystemExit, so no load is ever sent) when ``timeout`` passes or the
    process that started it (``owner``) is gone.
    """
    if not gate:
        return
    path = Path(gate["file"])
    told = up is False
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not told and (up is True or (callable(up) and up())):
            told = True
            with contextlib.suppress(OSError):  # bench capacity and the duet wait for it before their go
                Path(gate["file"] + ".waiting").touch()
            continue
        if time.monotonic() > deadline or not _alive(int(gate["owner"])):
            raise SystemExit("lbbench: no start signal from bench run; exiting without load")
        time.sleep(poll)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Seconds the processes left in a Locust's group after its master exited get to stop (SIGTERM: they
#: seal their samples) before they are killed.
STRAY_GRACE = 3.0


def end_group(pgid: int, grace: float | None = None, poll: float = 0.02) -> bool:
    """End process group ``pgid`` (its leader already exited): SIGTERM, SIGKILL after ``grace`` seconds,
    then wait until no live process is left in it (``grace``: :data:`STRAY_GRACE` unless given).
    Returns whether it had live processes.

    Its processes are not this process's children once their parent exited (their new parent
    reaps them), so "gone" is :func:`bench.proc.group_alive`: only zombies, or nothing, left.
    """
    if not group_alive(pgid):
        return False
    for sig, wait_s in ((signal.SIGTERM, STRAY_GRACE if grace is None else grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while group_alive(pgid):
            if time.monotonic() > deadline:
                break
            time.sleep(poll)
        else:
            break
    return True


@dataclass
class LocustProcess:
    """A running headless Locust."""

    proc: subprocess.Popen
    log_path: Path
    started_at: float
    #: the settings every process of the run reads (LBBENCH_LOAD); worker containers get the same
    settings: dict[str, Any] | None = None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """Stop gracefully (SIGTERM), then kill after a grace period; returns the exit status.

        Then ends what is left of its process group: Locust's forked processes (``--processes``)
        can outlive a master that exited on its own (they then wait 60 s for its heartbeat).
        """
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            if self.wait(STOP_GRACE) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        end_group(self.proc.pid)
        return self.proc.returncode

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(text[-lines:])


@dataclass
class WarmLocust:
    """A Locust process importing ahead of its run (bench/load/warm.py): :func:`start_locust` hands it its command line."""

    proc: subprocess.Popen

    def launch(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> bool:
        """Make it run Locust with ``argv``; False (and it is gone) when it exited before (then start one afresh)."""
        order = {"argv": argv, "env": env, "cwd": str(cwd), "log": str(log_path)}
        assert self.proc.stdin is not None
        try:
            if self.proc.poll() is not None:
                raise BrokenPipeError
            self.proc.stdin.write((json.dumps(order) + "\n").encode())
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            self.discard()
            return False
        return True

    def discard(self) -> None:
        """Kill it if it still runs (idempotent; safe once its process was waited for).

        Before it had orders it only imported; after, its Locust was stopped by then unless
        an interruption came between the orders and the LocustProcess that stops it.
        """
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def start_warm() -> WarmLocust | None:
    """Start a Locust process that imports while the run is checked and its lab starts (None when it cannot start).

    It reads its orders on stdin: if this process dies first, it sees the end of stdin and
    exits without load. Like every Locust of a run it has a session of its own (a Ctrl-C in
    the terminal reaches `bench` only) and `bench`'s environment.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), env.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load.warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=paths.ROOT,
        )
    except OSError:
        return None
    return WarmLocust(proc)


def free_port(address: str) -> int:
    """A TCP port nobody listens on at ``address`` now (the kernel picks it from the ephemeral range).

    Concurrent runs each get their own, so they never share a Locust master port
    (a second bind of the same port would fail, or worse, join the other run).
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def describe_load(scenario: Scenario) -> str:
    """One line on what the load is (for the terminal)."""
    load = scenario.load
    field = load.target_field
    if load.find_max is not None:
        what = f"{load.model}, find-max from {load.find_max.start:g} {field}"
    elif load.stages:
        what = f"{load.model}, {len(load.stages)} stage(s) of {field}"
    elif load.is_rate:
        what = f"{load.model}, {getattr(load, field):g} {field}"
    else:
        what = f"{load.model}, {load.users} users"
    if load.is_rate:
        what += f" ({load.users} connections in the pool)"
    if load.held is not None:
        what += f", {load.held.connections} held connections ({load.held.tls_connections} TLS)"
    return f"{what}, {processes_of(scenario)} process(es)"


def processes_of(scenario: Scenario) -> int:
    """Locust processes of a scenario (``auto`` resolves to one per core; bench/load/fit.py resolves it earlier)."""
    n = scenario.load.processes
    return (os.cpu_count() or 1) if n == "auto" else int(n)


def locustfile_for(scenario: Scenario) -> Path:
    """The locustfile a scenario uses."""
    if scenario.locustfile:
        path = paths.SCENARIOS / scenario.locustfile
        if not path.exists():
            raise UserError(f"scenario {scenario.name}: locustfile {path} not found", "fix `locustfile:` in the scenario")
        return path
    return DEFAULT_LOCUSTFILE


def start_locust(
    scenario: Scenario,
    host: str,
    ca_pem: Path,
    run_dir: Path,
    duration: float,
    extra: dict[str, Any] | None = None,
    master: tuple[str, int, int] | None = None,
    root: Path | None = None,
    warm: WarmLocust | None = None,
) -> LocustProcess:
    """Start headless Locust for ``scenario`` against ``host`` (the VIP URL); returns at once.

    ``root``: run the load generator of another lbbench checkout (its ``bench``
    package and default locustfile; ``bench calibrate --baseline``).

    ``extra`` adds to the settings every process reads (for example ``held_interval``).
    ``master`` = (bind address, port, workers): run as Locust's master for that many
    workers (bench/load/workers.py) instead of sending load from this machine.
    ``warm``: a Locust process that imported ahead (:func:`start_warm`) runs this
    command line instead of a new one (one that exited meanwhile is replaced by one).
    """
    load = scenario.load
    rd = RunDir(run_dir)
    out = rd.locust
    out.mkdir(parents=True, exist_ok=True)
    settings = load_settings(scenario, host, ca_pem, run_dir, extra)
    senders = processes_of(scenario) * (master[2] if master is not None else 1)
    users = max(load.users, senders) if load.is_rate else load.users
    if load.model == "keep-alive" and load.stages:
        users = max(round(load.stages[0].users or 0), 1) if not load.stages[0].ramp else 1
    # a rate model's users are an idle pool until slots come: start them all at once
    spawn_rate = float(min(users, 100 * senders)) if load.is_rate else load.spawn_rate
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(root / "bench" / "load" / "locustfile.py" if root is not None and not scenario.locustfile else locustfile_for(scenario)),
        "--headless",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        f"{max(1, round(duration))}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(out / LOCUST_CSV_PREFIX),
        "--csv-full-history",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
        user_class(scenario),
    ]
    if master is not None:
        bind, port, _count = master
        # every sending process: each worker container forks its --processes, each of them a worker of this master
        cmd[5:5] = [  # after "-f FILE"
            "--master", "--master-bind-host", bind, "--master-bind-port", str(port),
            "--expect-workers", str(senders), "--expect-workers-max-wait", str(WORKERS_START_TIMEOUT),
        ]  # fmt: skip
    elif processes_of(scenario) > 1:
        # Locust's forked processes meet on a master port, 5557 unless told otherwise: a second run
        # at the same time could not bind it, and its processes would join the first run's master.
        # Each run takes a free loopback port of its own.
        port = free_port(LOOPBACK)
        cmd[5:5] = [  # after "-f FILE"
            "--processes", str(processes_of(scenario)),
            "--master-bind-host", LOOPBACK, "--master-bind-port", str(port),
            "--master-host", LOOPBACK, "--master-port", str(port),
        ]  # fmt: skip
    env = {**os.environ, "LBBENCH_LOAD": json.dumps(settings), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root or paths.ROOT), env.get("PYTHONPATH", "")]))
    log_path = rd.locust_log
    if warm is not None and root is None and warm.launch(cmd[3:], {"LBBENCH_LOAD": env["LBBENCH_LOAD"]}, run_dir, log_path):
        proc = warm.proc  # cmd[3:]: Locust's arguments, after `python -m locust`
    else:
        log = open(log_path, "wb")  # noqa: SIM115 - the child owns it until it exits
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=run_dir)
        finally:
            log.close()
    rd.locust_settings.write_text(json.dumps(settings, indent=2) + "\n")
    return LocustProcess(proc, log_path, time.time(), settings)
