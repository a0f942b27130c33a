"""`bench calibrate`: how fast is the load generator, next to wrk, on one HAProxy.

One HAProxy (the lab image, one thread, ``--network host``) listens on loopback
with TLS (ECDSA P-256 certificate from a throw-away trustme CA) and answers
every request itself (``http-request return status 200``), so the only thing
that varies is the client. Two TLS listeners:

``full``    no session cache, no tickets: every handshake is a full one
``resume``  session tickets on: a client that offers its session resumes

Clients, run one after the other in interleaved rounds (A B, then B A, ...), each for
the same time against the same listener:

``wrk-ka``        wrk -t1 -cN, keep-alive (the reference)
``lean-ka``       Locust + :class:`bench.load.lean.LeanHttpsUser`, keep-alive
``fasthttp-ka``   Locust + FastHttpUser (``KeepAliveUser``), keep-alive
``wrk-close``     wrk -t1 -cN ``-H 'Connection: close'``: a new TLS connection per request
``lean-close``    lean engine, a new TLS connection per request, resumption off
``lean-resume``   lean engine, a new connection per request with session resumption,
                  on the ``resume`` listener; HAProxy's SslFrontendSessionReuse_pct is sampled

and, on request (``--client``), the rate models at fixed rates, to see what a
request costs on their path (their per-core figure is that of a client that
is not saturated; compare them between versions, not with wrk):

``lean-open``       open model, ``OPEN_RATE`` requests/s on keep-alive connections
``lean-connrate``   connection-rate model, ``CONN_RATE`` TLS connections/s of ``CONN_REQUESTS``
                    requests each, sessions resumed (``resume`` listener)
``lean-handshake``  handshake-rate model, ``HANDSHAKE_RATE`` full TLS handshakes/s
``lean-held``       ``HELD`` held connections, a request per second on each

The figure that matters is requests per client CPU-second ("per client core"):
the client's user+system CPU time comes from ``/proc/<pid>/stat`` (Locust) or the
child's rusage (wrk), so a client that idles while waiting is not flattered and
one that shares its core with others is not punished. Ratios are taken per round
(lean/wrk, fasthttp/wrk of the same round) and summarised as the median of the
rounds with their spread (min-max).

The HAProxy container carries ``org.lbbench.project=lbbench`` and
``org.lbbench.run=<run name>`` and is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trustme

from . import __version__, engine, images, paths
from .collect.statsock import stats_command
from .errors import UserError
from .inputs import check_output_file
from .proc import sigterm_as_interrupt
from .topology.render import LABEL_PROJECT, LABEL_RUN, PROJECT_VALUE

SCHEMA_VERSION = 1

LABEL_ROLE = "org.lbbench.role"
CONTAINER_MOUNT = "/etc/lbbench-calibrate"
READY_TIMEOUT = 20.0
#: Seconds a Locust client gets to start and spawn its users before the window opens.
LOCUST_START_TIMEOUT = 30.0
#: Settling time after the first requests appear, before the measuring window opens.
WARMUP = 1.0
#: Seconds after the window closes that a client may take to stop before it is killed.
STOP_GRACE = 15.0

CLIENTS = ("wrk-ka", "lean-ka", "fasthttp-ka", "wrk-close", "lean-close", "lean-resume")
#: Requests/s of ``lean-open``, connections/s (and requests per connection) of ``lean-connrate``,
#: full handshakes/s of ``lean-handshake``: below what one client core sustains here.
OPEN_RATE = 20_000.0
CONN_RATE = 500.0
CONN_REQUESTS = 10
HANDSHAKE_RATE = 500.0
HELD = 1000
#: The rate models' clients (only when asked for with --client): listener and load settings.
RATE_CLIENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lean-open": ("full", {"model": "open", "requests_per_s": OPEN_RATE}),
    "lean-connrate": (
        "resume",
        {"model": "connection-rate", "connections_per_s": CONN_RATE, "handshakes_per_s": CONN_RATE, "requests_per_connection": CONN_REQUESTS},
    ),
    "lean-handshake": ("full", {"model": "handshake-rate", "handshakes_per_s": HANDSHAKE_RATE, "resumption": False}),
    # HELD connections, one request per second each (beside an open model at 10/s), opened with resumed sessions
    "lean-held": ("resume", {"model": "open", "requests_per_s": 10.0, "held": {"connections": HELD, "interval": "1s", "rate": 4 * HELD}}),
}
LEAN_CLIENTS = tuple(c for c in (*CLIENTS, *RATE_CLIENTS) if c.startswith("lean-"))
#: With --baseline DIR: the same lean clients, run from that other lbbench checkout.
BASELINE_CLIENTS = tuple("base-" + c.removeprefix("lean-") for c in LEAN_CLIENTS)
ALL_CLIENTS = CLIENTS + tuple(RATE_CLIENTS) + BASELINE_CLIENTS

HAPROXY_CFG = """\
# Rendered by `bench calibrate`; one HAProxy thread answers every request itself.
global
    nbthread {nbthread}
    maxconn 8000
    stats socket {mount}/haproxy.sock mode 600 level admin
    stats timeout 30s
    ssl-default-bind-options ssl-min-ver TLSv1.2
    # no stateful session cache: with `no-tls-tickets` below, `full` can never resume
    tune.ssl.cachesize 0
{global_extra}
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout http-request 10s

frontend full
    bind 127.0.0.1:{port_full} ssl crt {mount}/server.pem no-tls-tickets
    http-request return status 200

frontend resume
    bind 127.0.0.1:{port_resume} ssl crt {mount}/server.pem
    http-request return status 200
{extra}"""


# --------------------------------------------------------------------------- the endpoint


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def show_info(sock_path: Path) -> dict[str, str]:
    """HAProxy's ``show info`` as a dict of strings."""
    out: dict[str, str] = {}
    for line in stats_command(sock_path, "show info", timeout=2.0).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


@dataclass
class Endpoint:
    """A running loopback HAProxy."""

    name: str
    folder: Path
    ca_pem: Path
    port_full: int
    port_resume: int
    ports: dict[str, int]
    container: Any = None

    @property
    def stats_socket(self) -> Path:
        return self.folder / "haproxy.sock"

    def url(self, listener: str = "full") -> str:
        return f"https://127.0.0.1:{self.ports[listener]}"

    def info(self) -> dict[str, str]:
        return show_info(self.stats_socket)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.container.logs(tail=lines).decode(errors="replace").strip()
        except Exception:  # noqa: BLE001 - best effort, only for an error message
            return "(no log)"
        return " | ".join(text.splitlines()) or "(empty log)"


def new_run_name() -> str:
    """A unique name for one calibrate run (the ``org.lbbench.run`` label)."""
    return f"lbbench-calibrate-{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def write_haproxy_files(
    folder: Path,
    mount: str,
    nbthread: int = 1,
    extra_config: str = "",
    extra_ports: tuple[str, ...] = (),
    extra_files: dict[str, str] | None = None,
    global_extra: str = "",
) -> dict[str, int]:
    """Write a throw-away CA, the server certificate and ``haproxy.cfg`` into ``folder``; returns the ports.

    ``mount`` is where HAProxy sees ``folder`` (in a container, or ``folder`` itself).
    """
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.ECDSA)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    fd = os.open(folder / "server.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"".join(blob.bytes() for blob in cert.cert_chain_pems) + cert.private_key_pem.bytes())
    for fname, text in (extra_files or {}).items():
        (folder / fname).write_text(text)
    ports = {"full": free_port(), "resume": free_port()}
    for extra in extra_ports:
        ports[extra] = free_port()
    fmt = {"mount": mount, **{f"port_{k}": v for k, v in ports.items()}}
    cfg = HAPROXY_CFG.format(
        nbthread=nbthread,
        global_extra=global_extra.format(**fmt),
        extra=extra_config.format(**fmt),
        **fmt,
    )
    (folder / "haproxy.cfg").write_text(cfg)
    return ports


@contextlib.contextmanager
def loopback_haproxy(
    name: str | None = None,
    nbthread: int = 1,
    extra_config: str = "",
    extra_ports: tuple[str, ...] = (),
    extra_files: dict[str, str] | None = None,
    global_extra: str = "",
    log: Callable[[str], None] = lambda _msg: None,
) -> Iterator[Endpoint]:
    """Run one HAProxy of the lab image on loopback (``--network host``); remove it on exit.

    ``extra_config`` is appended to the config; it may use ``{port_NAME}`` for each
    name in ``extra_ports`` (free loopback ports allocated here) and ``{mount}`` for
    the folder that holds ``extra_files`` inside the container. The container is
    removed when the block ends, also on exceptions and Ctrl-C.
    """
    name = name or new_run_name()
    ref = images.ensure_images(log=log)
    folder = paths.STATE / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    container = None
    try:
        ports = write_haproxy_files(folder, CONTAINER_MOUNT, nbthread, extra_config, extra_ports, extra_files, global_extra)
        container = engine.client().containers.run(
            ref.node_tag,
            ["haproxy", "-db", "-f", f"{CONTAINER_MOUNT}/haproxy.cfg"],
            name=name,
            detach=True,
            network_mode="host",
            volumes={str(folder): {"bind": CONTAINER_MOUNT, "mode": "rw"}},
            labels={LABEL_PROJECT: PROJECT_VALUE, LABEL_RUN: name, LABEL_ROLE: "calibrate"},
        )
        ep = Endpoint(name, folder, folder / "ca.pem", ports["full"], ports["resume"], ports, container)
        _wait_ready(ep)
        yield ep
    finally:
        # Ctrl-C during cleanup must not leave the container behind.
        with engine.signals_deferred():
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(ep: Endpoint) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ep.container.reload()
        if ep.container.status in ("exited", "dead"):
            raise UserError(f"calibrate HAProxy exited while starting: {ep.log_tail()}", "see the HAProxy message")
        try:
            if "Name:" in stats_command(ep.stats_socket, "show info", timeout=0.5):
                with socket.create_connection(("127.0.0.1", ep.port_full), timeout=0.5):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise UserError(f"calibrate HAProxy not ready after {READY_TIMEOUT:g}s: {ep.log_tail()}", "see `bench doctor`")


# --------------------------------------------------------------------------- measuring one client


@dataclass
class Measurement:
    """One client's run of one round."""

    client: str
    round: int
    seconds: float  # length of the measuring window
    requests: int
    errors: int
    cpu_seconds: float  # client user+system CPU time in the window
    haproxy: dict[str, float] = field(default_factory=dict)  # medians of `show info` samples in the window
    note: str = ""
    time_wait: int = -1  # TCP sockets in TIME_WAIT on this machine when the client started (-1: unknown)

    @property
    def rate(self) -> float:
        """Requests per second (wall clock)."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_core(self) -> float:
        """Requests per client CPU-second."""
        return self.requests / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 1), "per_core": round(self.per_core, 1), "cpu_pct": round(self.cpu_pct, 1)}


_CLK_TCK = os.sysconf("SC_CLK_TCK")
INFO_FIELDS = ("SslFrontendSessionReuse_pct", "SslFrontendKeyRate", "SslRate", "ConnRate", "SessRate", "Idle_pct")


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in process group ``pgid`` (from /proc)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        # the command name (field 2) may contain spaces: split after its closing parenthesis
        fields = raw[raw.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / _CLK_TCK


class InfoSampler:
    """Samples HAProxy's `show info` twice a second in a thread while a window is open."""

    def __init__(self, ep: Endpoint):
        self.ep = ep
        self.samples: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError):
                self.samples.append(self.ep.info())

    def __enter__(self) -> InfoSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def medians(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in INFO_FIELDS:
            values = [float(s[key]) for s in self.samples if s.get(key, "").replace(".", "", 1).isdigit()]
            if values:
                out[key] = statistics.median(values)
        return out


_WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> tuple[int, float, int]:
    """(requests, seconds, errors) from wrk's report."""
    m = _WRK_REQUESTS.search(text)
    if not m:
        raise UserError(f"could not read wrk's report: {text.strip()[-300:]!r}", "run wrk by hand to see what it says")
    errors = 0
    if s := _WRK_SOCKET_ERRORS.search(text):
        errors += sum(int(g) for g in s.groups())
    if n := _WRK_NON2XX.search(text):
        errors += int(n.group(1))
    return int(m.group(1)), float(m.group(2)) * _UNIT[m.group(3)], errors


def run_wrk(ep: Endpoint, listener: str, connections: int, seconds: float, close: bool, round_: int, client: str) -> Measurement:
    """wrk -t1 for ``seconds``; CPU from the child's rusage (wait4)."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise UserError("wrk is not installed", "apt-get install wrk")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(ep.url(listener) + "/")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + seconds + STOP_GRACE
    try:
        with InfoSampler(ep) as sampler:
            out = b""
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            while True:
                chunk = proc.stdout.read() or b""
                out += chunk
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    out += proc.stdout.read() or b""
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    raise UserError(f"wrk did not finish within {seconds + STOP_GRACE:g}s", "see `bench doctor`")
                time.sleep(0.1)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise UserError(f"wrk exited with status {proc.returncode}: {text.strip()[-300:]}", "run wrk by hand to see why")
    requests, took, errors = parse_wrk(text)
    return Measurement(client, round_, took, requests, errors, usage.ru_utime + usage.ru_stime, sampler.medians())


def run_locust(
    ep: Endpoint,
    listener: str,
    engine_name: str,
    connections: int,
    seconds: float,
    round_: int,
    client: str,
    lean: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Measurement:
    """Locust headless with ``engine_name``'s user; count requests from our capture inside the window.

    ``root``: the lbbench checkout whose load generator runs (None: this one).
    """
    from .load.runner import start_locust
    from .results.store import part_files, read_table
    from .spec import Load, Scenario

    load = Load(engine=engine_name, users=connections, spawn_rate=float(connections), path="/", **(lean or {}))
    scenario = Scenario(name="calibrate", duration=LOCUST_START_TIMEOUT + seconds + WARMUP + 5, load=load)
    run_dir = ep.folder / f"locust-{client}-{round_}"
    locust = start_locust(scenario, ep.url(listener), ep.ca_pem, run_dir, scenario.duration, root=root)
    try:
        deadline = time.monotonic() + LOCUST_START_TIMEOUT
        while not part_files(run_dir, "requests"):
            if locust.proc.poll() is not None:
                raise UserError(f"locust ({client}) exited early: {locust.log_tail()}", f"see {locust.log_path}")
            if time.monotonic() > deadline:
                raise UserError(f"locust ({client}) sent no request within {LOCUST_START_TIMEOUT:g}s: {locust.log_tail()}", "see `bench doctor`")
            time.sleep(0.1)
        time.sleep(WARMUP)
        with InfoSampler(ep) as sampler:
            t0, cpu0 = time.time(), group_cpu_seconds(locust.proc.pid)
            time.sleep(seconds)
            t1, cpu1 = time.time(), group_cpu_seconds(locust.proc.pid)
    finally:
        locust.stop()
    df = read_table(run_dir, "requests", ["t", "error"])
    window = df[(df["t"] >= t0) & (df["t"] < t1)]
    errors = int((window["error"] != "").sum())
    return Measurement(client, round_, t1 - t0, len(window), errors, cpu1 - cpu0, sampler.medians())


# --------------------------------------------------------------------------- the benchmark


def round_order(clients: list[str], round_: int) -> list[str]:
    """The clients of round ``round_`` in order: as given in odd rounds, reversed in even ones.

    Each client runs after others that may leave the machine in another state
    (thousands of TIME_WAIT sockets after a connection-per-request client make
    the next connects dearer); alternating the order (A B, B A, ...) keeps that
    from always favouring the same client.
    """
    return list(clients) if round_ % 2 else list(reversed(clients))


def time_wait_sockets() -> int:
    """TCP sockets in TIME_WAIT on this machine (network namespace) now, from /proc/net/sockstat (-1 if unreadable)."""
    try:
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("tw") + 1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


#: The lean clients' listener and lean settings (rate models: RATE_CLIENTS).
LEAN_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "lean-ka": ("full", {}),
    "lean-close": ("full", {"requests_per_connection": 1, "resumption": False}),
    "lean-resume": ("resume", {"requests_per_connection": 1, "resumption": True}),
    **RATE_CLIENTS,
}


def measure(ep: Endpoint, client: str, connections: int, seconds: float, round_: int, baseline: Path | None = None) -> Measurement:
    """One client, one round (``base-*``: the same lean client, run from the ``baseline`` checkout)."""
    if client == "wrk-ka":
        return run_wrk(ep, "full", connections, seconds, close=False, round_=round_, client=client)
    if client == "wrk-close":
        return run_wrk(ep, "full", connections, seconds, close=True, round_=round_, client=client)
    if client == "fasthttp-ka":
        return run_locust(ep, "full", "fasthttp", connections, seconds, round_, client)
    root = None
    name = client
    if client.startswith("base-"):
        if baseline is None:
            raise UserError(f"calibrate client {client} needs --baseline", "give --baseline DIR (another lbbench checkout)")
        root, name = baseline, "lean-" + client.removeprefix("base-")
    if name not in LEAN_SETTINGS:
        raise UserError(f"unknown calibrate client {client!r}", f"use some of: {', '.join(ALL_CLIENTS)}")
    listener, settings = LEAN_SETTINGS[name]
    return run_locust(ep, listener, "lean", connections, seconds, round_, client, settings, root=root)


#: (name, numerator client, denominator client): ratios of per-core rates, one per round.
RATIOS = (
    ("lean/wrk keep-alive", "lean-ka", "wrk-ka"),
    ("fasthttp/wrk keep-alive", "fasthttp-ka", "wrk-ka"),
    ("lean/wrk new connection", "lean-close", "wrk-close"),
    # with --baseline: the other checkout's lean engine against wrk and against this one
    ("base/wrk keep-alive", "base-ka", "wrk-ka"),
    ("base/wrk new connection", "base-close", "wrk-close"),
    ("lean/base keep-alive", "lean-ka", "base-ka"),
    ("lean/base new connection", "lean-close", "base-close"),
    ("lean/base resumed connection", "lean-resume", "base-resume"),
    ("lean/base open", "lean-open", "base-open"),
    ("lean/base connection-rate", "lean-connrate", "base-connrate"),
    ("lean/base handshake-rate", "lean-handshake", "base-handshake"),
    ("lean/base held", "lean-held", "base-held"),
)
#: Issue 17's targets (issue 8 had 0.6 and 0.8).
TARGETS = {"lean/wrk keep-alive": 0.9, "lean/wrk new connection": 0.9}
REUSE_TARGET = 90.0


def _opens_connections(client: str) -> bool:
    """Whether ``client`` makes new TLS connections all the time (its TLS reuse figure means something)."""
    # base-*: the same client from the --baseline checkout
    return client.replace("base-", "lean-", 1) in ("wrk-close", "lean-close", "lean-resume", "lean-connrate", "lean-handshake")


def _spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles (interquartile range q1-q3), min, max and count of ``values``."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values), "n": len(values)}


def summarise(measurements: list[Measurement]) -> dict[str, Any]:
    """Per-client medians and per-round ratios (median of the pairs, with min-max)."""
    clients: dict[str, Any] = {}
    for name in dict.fromkeys(m.client for m in measurements):
        ms = [m for m in measurements if m.client == name]
        entry: dict[str, Any] = {
            "rate": _spread([m.rate for m in ms]),
            "per_core": _spread([m.per_core for m in ms]),
            "cpu_pct": _spread([m.cpu_pct for m in ms]),
            "errors": sum(m.errors for m in ms),
        }
        for key in INFO_FIELDS:
            values = [m.haproxy[key] for m in ms if key in m.haproxy]
            if values:
                entry[f"haproxy_{key}"] = statistics.median(values)
        clients[name] = entry
    ratios: dict[str, Any] = {}
    rounds = sorted({m.round for m in measurements})
    for label, num, den in RATIOS:
        pairs = []
        for r in rounds:
            a = [m for m in measurements if m.client == num and m.round == r]
            b = [m for m in measurements if m.client == den and m.round == r]
            if a and b and b[0].per_core > 0:
                pairs.append(a[0].per_core / b[0].per_core)
        if pairs:
            ratios[label] = {**_spread(pairs), "pairs": pairs, "target": TARGETS.get(label)}
    reuse = clients.get("lean-resume", {}).get("haproxy_SslFrontendSessionReuse_pct")
    return {"clients": clients, "ratios": ratios, "lean_resume_reuse_pct": reuse, "reuse_target_pct": REUSE_TARGET}


def run_calibrate(
    seconds: float = 5.0,
    rounds: int = 3,
    connections: int = 50,
    clients: list[str] | None = None,
    haproxy_threads: int = 1,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    baseline: Path | None = None,
    endpoint: contextlib.AbstractContextManager[Endpoint] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its result (also written to ``out`` as JSON when given).

    ``baseline``: another lbbench checkout whose lean engine runs as the
    ``base-*`` clients (all the lean clients' twins by default), interleaved
    with this one's: the way to measure a change of the engine.
    ``endpoint``: the HAProxy to measure against (default: :func:`loopback_haproxy`
    in a container; scripts/lean_cpu.py gives a HAProxy binary of this machine).
    """
    if baseline is not None:
        baseline = baseline.expanduser().resolve()
        if not (baseline / "bench" / "load" / "locustfile.py").is_file():
            raise UserError(f"--baseline {baseline}: not an lbbench checkout (no bench/load/locustfile.py)", "give the folder of another checkout, e.g. from `git worktree add /tmp/before main`")
    clients = list(clients or (CLIENTS if baseline is None else CLIENTS + tuple("base-" + c.removeprefix("lean-") for c in CLIENTS if c.startswith("lean-"))))
    unknown = [c for c in clients if c not in ALL_CLIENTS]
    if unknown:
        raise UserError(f"unknown calibrate client(s): {', '.join(unknown)}", f"use some of: {', '.join(ALL_CLIENTS)}")
    if baseline is None and any(c.startswith("base-") for c in clients):
        raise UserError("calibrate: base-* clients need --baseline DIR", "give --baseline (another lbbench checkout) or drop the base-* clients")
    if not 1 <= rounds <= 20 or not 1 <= seconds <= 120 or not 1 <= connections <= 5000:
        raise UserError("calibrate: need 1 <= --rounds <= 20, 1 <= --seconds <= 120, 1 <= --connections <= 5000", "see `bench calibrate --help`")
    if out is not None:
        check_output_file(Path(out), "--out", create_parents=True)
    started = time.time()
    load_before = os.getloadavg()
    measurements: list[Measurement] = []
    if endpoint is None:
        endpoint = loopback_haproxy(nbthread=haproxy_threads, log=log)
    with sigterm_as_interrupt(), endpoint as ep:
        version = ep.info().get("Version", "?")
        log(f"calibrate: HAProxy {version} ({haproxy_threads} thread) on {ep.url('full')}; {rounds} rounds x {len(clients)} clients x {seconds:g}s, {connections} connections")
        for r in range(1, rounds + 1):
            for client in round_order(clients, r):
                time_wait = time_wait_sockets()
                m = measure(ep, client, connections, seconds, r, baseline)
                m.time_wait = time_wait
                measurements.append(m)
                reuse = m.haproxy.get("SslFrontendSessionReuse_pct")
                log(
                    f"  round {r} {client:<12} {m.rate:>9.0f} req/s  cpu {m.cpu_pct:>4.0f}%  {m.per_core:>9.0f} req/s per core"
                    f"  errors {m.errors}" + (f"  reuse {reuse:.0f}%" if reuse is not None and _opens_connections(client) else "")
                )
    result = {
        "schema_version": SCHEMA_VERSION,
        "lbbench": __version__,
        "started": started,
        "haproxy": version,
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "connections": connections,
            "clients": clients,
            "haproxy_threads": haproxy_threads,
            "baseline": str(baseline) if baseline is not None else None,
        },
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "measurements": [m.to_dict() for m in measurements],
        "summary": summarise(measurements),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def render_table(result: dict[str, Any]) -> str:
    """The result as terminal text (rich tables)."""
    from rich.console import Console
    from rich.table import Table

    summary = result["summary"]
    table = Table(title=f"bench calibrate: {result['settings']['connections']} connections, HAProxy {result['haproxy']} one thread, loopback TLS")
    for col in ("client", "req/s", "client CPU", "req/s per client core: median (IQR; min-max)", "errors", "HAProxy idle", "TLS reuse"):
        table.add_column(col, justify="left" if col == "client" else "right")
    for name, c in summary["clients"].items():
        pc = c["per_core"]
        reuse = c.get("haproxy_SslFrontendSessionReuse_pct")
        idle = c.get("haproxy_Idle_pct")
        table.add_row(
            name,
            f"{c['rate']['median']:,.0f}",
            f"{c['cpu_pct']['median']:.0f}%",
            f"{pc['median']:,.0f} ({pc['q1']:,.0f}-{pc['q3']:,.0f}; {pc['min']:,.0f}-{pc['max']:,.0f})",
            str(c["errors"]),
            "-" if idle is None else f"{idle:.0f}%",
            "-" if reuse is None or not _opens_connections(name) else f"{reuse:.0f}%",
        )
    ratios = Table(title="ratios of req/s per client core, median of the rounds' pairs")
    for col in ("ratio", "median", "IQR", "min-max", "rounds", "target"):
        ratios.add_column(col, justify="left" if col == "ratio" else "right")
    for label, r in summary["ratios"].items():
        target = r.get("target")
        verdict = "" if target is None else (f">= {target:g} met" if r["median"] >= target else f">= {target:g} NOT met")
        ratios.add_row(label, f"{r['median']:.2f}", f"{r['q1']:.2f}-{r['q3']:.2f}", f"{r['min']:.2f}-{r['max']:.2f}", str(r["n"]), verdict)
    reuse = summary.get("lean_resume_reuse_pct")
    if reuse is not None:
        verdict = "met" if reuse > summary["reuse_target_pct"] else "NOT met"
        ratios.add_row("lean-resume SslFrontendSessionReuse_pct", f"{reuse:.0f}%", "", "", "", f"> {summary['reuse_target_pct']:g}% {verdict}")
    console = Console(record=True, width=120)
    with console.capture() as cap:
        console.print(table)
        console.print(ratios)
        m = result["machine"]
        console.print(f"machine: {m['cpus']} CPUs, load average before {m['loadavg_before'][0]:.2f}, after {m['loadavg_after'][0]:.2f}")
    return cap.get()
