"""Will this load fit this machine? File descriptors, ephemeral ports and cores, checked before anything starts.

The lab machines allow 20,000 file descriptors per process (hard limit, for
containers too), have a few cores shared by the load generator and the lab, and
one client address with one ephemeral-port range per destination. A scenario
asking for more than that would not fail cleanly half-way: it would measure
the machine's limits and call them the load balancer's. So :func:`prepare_load`
checks a scenario's needs (:class:`Needs`) against the machine
(:class:`Machine`) and refuses, in one line, what does not fit; for a scalable
scenario (``scalable: true``, ``bench run --scale F``) it also finds the largest
scale that fits and picks the default.

What is counted (every figure linear in the scale):

- **client file descriptors per load-generator process**: its share of the held
  connections and of the connection pool (``users``), plus
  :data:`FD_RESERVE`. ``processes: auto`` takes as many
  processes as that needs (at least one per core), up to :data:`MAX_PROCESSES`;
- **HAProxy frontend file descriptors**: the VIP holder's one frontend process
  holds every client connection (held + pool), and HAProxy reserves two file
  descriptors per connection it may hold (2 x maxconn + a few): it refuses to
  start when ``maxconn`` asks for more than the limit (measured: HAProxy 2.6 at
  20,000 starts with maxconn 9991, not 9992). Its ``maxconn`` must admit held +
  pool, and 2 x ``maxconn`` of every HAProxy process must fit the limit;
- **ephemeral ports per destination** (VIP:443 and VIP:80, from the client
  address, or per worker container with ``--workers``): held connections + pool +
  connections still closing (new connections/s x :data:`CLOSE_HOLD_S`; HAProxy
  closes first, so TIME_WAIT is on its side), against the host's
  ``ip_local_port_range``;
- **cores** (scalable scenarios only, an estimate): CPU seconds per second the
  generator needs at the lean engine's measured costs (:data:`COST_S`), against
  :data:`LOADGEN_CORE_SHARE` of the machine's cores (the rest is the lab's).
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..spec import Load, Scenario, Topology
from .stages import flow_shares, phases

#: Most Locust processes `processes: auto` starts on one machine.
MAX_PROCESSES = 64
#: Seconds of new connections counted as still holding their client port after the close. The client
#: asks `Connection: close` on a connection's last request and HAProxy closes first, so TIME_WAIT (60 s)
#: stays on HAProxy's side (measured: no TIME_WAIT socket on the client at 300 new connections/s);
#: one second covers the closing handshake.
CLOSE_HOLD_S = 1.0
#: Share of the machine's cores the load generator may plan on (the lab needs the rest).
LOADGEN_CORE_SHARE = 0.5
#: File descriptors a load-generator process keeps for itself (Python, Locust, capture files, sockets to the master).
FD_RESERVE = 200
#: File descriptors a HAProxy process needs besides connections (listeners, stats socket, logs, checks).
HAPROXY_FD_RESERVE = 100
#: CPU seconds of the lean engine per event, measured with `bench calibrate` on the 2-core lab VM
#: (docs/load-engine.md), rounded up: full and resumed TLS handshakes, plain new connections, requests.
COST_S = {
    "tls_connection": 1 / 550.0,
    "plain_connection": 1 / 3000.0,
    "request": 1 / 20000.0,
    "held_open": 1 / 550.0,
}
#: The default scale is this share of the largest that fits, rounded down to 1, 2 or 5 x 10^k.
DEFAULT_SHARE = 0.5


@dataclass(frozen=True)
class Machine:
    """What the load may use: cores, file descriptors per process, ports per destination."""

    cores: int
    fd_limit: int
    haproxy_fd_limit: int
    port_range: int
    addresses: int = 1  # client addresses (worker containers each have their own)

    @classmethod
    def here(cls, workers: int = 0) -> Machine:
        """This machine (HAProxy in containers gets the same per-process limit here)."""
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = hard if hard != resource.RLIM_INFINITY else 1_048_576
        try:
            low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
            ports = high - low + 1
        except (OSError, ValueError):
            ports = 28232
        return cls(cores=os.cpu_count() or 1, fd_limit=limit, haproxy_fd_limit=limit, port_range=ports, addresses=max(workers, 1))


@dataclass(frozen=True)
class Needs:
    """What a load asks for at its peak (all processes together)."""

    pool: int  # connections of the model open at once, at most (users)
    held: int
    held_tls: int
    tls_connections_per_s: float
    plain_connections_per_s: float
    requests_per_s: float
    tls_pool: int  # of the pool, connections to VIP:443
    plain_pool: int

    def cpu_s(self) -> float:
        """CPU seconds per second the generator needs (an estimate, :data:`COST_S`)."""
        return (
            self.tls_connections_per_s * COST_S["tls_connection"]
            + self.plain_connections_per_s * COST_S["plain_connection"]
            + self.requests_per_s * COST_S["request"]
        )


def peak(load: Load, duration: float) -> float:
    """The highest target of the model over the run (its stages, or find-max's limit/start)."""
    field = load.target_field
    if load.find_max is not None:
        fm = load.find_max
        return fm.limit if fm.limit is not None else fm.start * fm.growth ** max(1, int(duration // fm.step))
    values = [max(p.target_start, p.target_end) for p in phases(load, duration)]
    value = max(values, default=0.0)
    return value if value else float(getattr(load, field) or 0.0)


def needs_of(load: Load, duration: float, held_interval: float | None) -> Needs:
    """What ``load`` needs at its peak."""
    model = load.model
    top = peak(load, duration)
    shares = flow_shares(load) if load.is_rate else {load.scheme: 1.0}
    tls_share = shares.get("https", 0.0)
    rpc = max(load.requests_per_connection, 1)
    tls_cps = plain_cps = requests = 0.0
    if model in ("connection-rate", "handshake-rate"):
        tls_cps, plain_cps = top * tls_share, top * (1.0 - tls_share)
        requests = top * rpc
    elif model == "open":
        requests = top
        if load.requests_per_connection:
            tls_cps, plain_cps = requests / rpc * tls_share, requests / rpc * (1.0 - tls_share)
    elif load.requests_per_connection:
        # keep-alive with a limit per connection: unknown rate; counted by the pool only
        pass
    held = load.held.connections if load.held else 0
    held_tls = load.held.tls_connections if load.held else 0
    if load.held and held_interval:
        requests += held / held_interval
    pool = load.users
    tls_pool = math.ceil(pool * tls_share) if load.is_rate else (pool if load.scheme == "https" else 0)
    return Needs(
        pool=pool,
        held=held,
        held_tls=held_tls,
        tls_connections_per_s=tls_cps,
        plain_connections_per_s=plain_cps,
        requests_per_s=requests,
        tls_pool=tls_pool,
        plain_pool=pool - tls_pool if load.is_rate else (0 if load.scheme == "https" else pool),
    )


@dataclass(frozen=True)
class Limit:
    """One resource: what the load needs of it, what there is, and why."""

    name: str
    need: float
    have: float
    detail: str

    @property
    def fits(self) -> bool:
        return self.need <= self.have


def limits(needs: Needs, machine: Machine, topology: Topology, processes: int, cores_check: bool) -> list[Limit]:
    """Every limit the load meets on this machine (see the module docstring)."""
    out = []
    per_process = math.ceil(needs.held / processes) + math.ceil(needs.pool / processes) + FD_RESERVE
    out.append(
        Limit(
            "load-generator file descriptors",
            per_process,
            machine.fd_limit,
            f"{needs.held} held + {needs.pool} pool connections over {processes} process(es) need {per_process} "
            f"file descriptors per process, the limit is {machine.fd_limit}",
        )
    )
    clients = needs.held + needs.pool
    fe = 2 * clients + HAPROXY_FD_RESERVE
    out.append(
        Limit(
            "HAProxy frontend file descriptors",
            fe,
            machine.haproxy_fd_limit,
            f"the VIP holder's one frontend process holds every client connection ({needs.held} held + {needs.pool} pool) "
            f"and HAProxy reserves two file descriptors per connection: {fe} needed, the limit per process is {machine.haproxy_fd_limit}",
        )
    )
    maxconn = topology.lb.frontend.maxconn
    out.append(Limit("HAProxy frontend maxconn", clients, maxconn, f"{clients} client connections at once, lb.frontend.maxconn is {maxconn}"))
    for kind, process in (("frontend", topology.lb.frontend), ("backend", topology.lb.backend)):
        sock = 2 * process.maxconn + HAPROXY_FD_RESERVE
        out.append(
            Limit(
                f"HAProxy {kind} maxconn vs file descriptors",
                sock,
                machine.haproxy_fd_limit,
                f"lb.{kind}.maxconn {process.maxconn} makes HAProxy ask for {sock} file descriptors and refuse to start "
                f"above its limit of {machine.haproxy_fd_limit}",
            )
        )
    per_addr = max(machine.addresses, 1)
    for port, held, pool, cps in (
        ("443", needs.held_tls, needs.tls_pool, needs.tls_connections_per_s),
        ("80", needs.held - needs.held_tls, needs.plain_pool, needs.plain_connections_per_s),
    ):
        need = (held + pool + cps * CLOSE_HOLD_S) / per_addr
        if need <= 0:
            continue
        out.append(
            Limit(
                f"ephemeral ports to VIP:{port}",
                need,
                machine.port_range,
                f"{held} held + {pool} pool + {cps:g} new connections/s x {CLOSE_HOLD_S:g}s closing to VIP:{port} need "
                f"{need:.0f} ports per client address ({per_addr} address(es)), the range holds {machine.port_range}",
            )
        )
    if cores_check:
        budget = machine.cores * LOADGEN_CORE_SHARE
        cpu = needs.cpu_s()
        out.append(
            Limit(
                "load-generator cores",
                cpu,
                budget,
                f"{needs.tls_connections_per_s:g} TLS + {needs.plain_connections_per_s:g} plain new connections/s and "
                f"{needs.requests_per_s:g} requests/s need about {cpu:.2f} cores of the lean engine, "
                f"{LOADGEN_CORE_SHARE:.0%} of {machine.cores} core(s) = {budget:g} are the load generator's",
            )
        )
    return out


def processes_needed(needs: Needs, machine: Machine) -> int:
    """Fewest processes whose file descriptors hold the held connections and the pool."""
    room = max(machine.fd_limit - FD_RESERVE, 1)
    return max(1, math.ceil((needs.held + needs.pool) / room))


def nice_floor(x: float) -> float:
    """The largest 1, 2 or 5 x 10^k at or below ``x`` (0 for nothing positive).

    >>> nice_floor(0.37), nice_floor(0.019), nice_floor(3)
    (0.2, 0.01, 2.0)
    """
    if x <= 0 or not math.isfinite(x):
        return 0.0
    k = math.floor(math.log10(x))
    for m in (5, 2, 1):
        v = m * 10.0**k
        if v <= x * (1 + 1e-9):
            return float(f"{v:.12g}")
    return float(f"{10.0 ** k:.12g}")


def floor_digits(x: float, digits: int = 2) -> float:
    """``x`` rounded down to ``digits`` significant digits (a scale that still fits).

    >>> floor_digits(0.081154), floor_digits(1.239)
    (0.081, 1.2)
    """
    if x <= 0 or not math.isfinite(x):
        return 0.0
    k = math.floor(math.log10(x)) - digits + 1
    return float(f"{math.floor(x / 10.0**k + 1e-9) * 10.0**k:.12g}")


@dataclass
class Fit:
    """What :func:`prepare_load` decided: the scale, the processes, every limit met."""

    scale: float | None
    max_scale: float | None
    processes: int
    limits: list[dict[str, Any]]
    binding: str | None  # the limit that bounds the scale

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scaled_limits(scenario: Scenario, topology: Topology, machine: Machine, factor: float, held_interval: float | None, workers: int) -> tuple[list[Limit], int]:
    load = scenario.load.scaled(factor)
    needs = needs_of(load, scenario.duration, held_interval)
    procs = resolve_processes(load, needs, machine, workers)
    return limits(needs, machine, topology, procs * max(workers, 1), cores_check=True), procs


def max_scale(scenario: Scenario, topology: Topology, machine: Machine, held_interval: float | None, workers: int = 0) -> tuple[float, str]:
    """The largest scale at which every limit holds, and the limit that bounds it (bisection: limits grow with the scale)."""
    lo, hi = 0.0, 1.0
    while all(lim.fits for lim in _scaled_limits(scenario, topology, machine, hi, held_interval, workers)[0]) and hi < 1e4:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if all(lim.fits for lim in _scaled_limits(scenario, topology, machine, mid, held_interval, workers)[0]):
            lo = mid
        else:
            hi = mid
    failing = [lim for lim in _scaled_limits(scenario, topology, machine, hi, held_interval, workers)[0] if not lim.fits]
    return lo, (failing[0].name if failing else "none")


def resolve_processes(load: Load, needs: Needs, machine: Machine, workers: int = 0) -> int:
    """Locust processes per machine (or per worker container): ``auto`` = max(cores, what the file descriptors need)."""
    need = math.ceil(processes_needed(needs, machine) / max(workers, 1))
    if load.processes == "auto":
        per_host = 1 if workers else machine.cores
        return min(max(per_host, need), MAX_PROCESSES)
    return int(load.processes)


def held_interval_of(load: Load, topology: Topology) -> float | None:
    """Seconds between requests on a held connection: the scenario's, or half of HAProxy's keep-alive timeout."""
    if load.held is None:
        return None
    keep_alive = topology.lb.timeouts.http_keep_alive
    interval = load.held.interval if load.held.interval is not None else keep_alive / 2.0
    if interval * 1.2 >= keep_alive:
        raise UserError(
            f"load.held.interval ({interval:g}s, +20% jitter) is not shorter than lb.timeouts.http_keep_alive ({keep_alive:g}s): "
            "HAProxy would close the held connections between their requests",
            "shorten load.held.interval or raise lb.timeouts.http_keep_alive in the scenario's overrides",
        )
    return interval


def prepare_load(
    scenario: Scenario,
    topology: Topology,
    scale: float | None = None,
    workers: int = 0,
    machine: Machine | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Scenario, dict[str, Any], Fit]:
    """Scale and resolve a scenario's load for this machine, or refuse it in one line (:class:`UserError`).

    Returns the scenario to run (scaled, ``processes`` resolved), extra settings
    for the Locust processes, and what was decided.
    """
    if workers < 0:
        raise UserError(f"--workers {workers}: must be 0 or more", "for example --workers 2")
    machine = machine or Machine.here(workers)
    if scale is not None and not scenario.scalable:
        raise UserError(
            f"--scale: scenario {scenario.name} is not scalable (its load is not given as production figures)",
            "use --scale with a scalable scenario such as seed-peak",
        )
    held_interval = held_interval_of(scenario.load, topology)
    chosen: float | None = None
    best: float | None = None
    binding: str | None = None
    if scenario.scalable:
        best, binding = max_scale(scenario, topology, machine, held_interval, workers)
        if scale is None:
            chosen = nice_floor(best * DEFAULT_SHARE)
            if chosen <= 0:
                raise UserError(
                    f"scenario {scenario.name} does not fit this machine at any scale ({binding})",
                    "run it on a machine with more cores or file descriptors",
                )
            log(f"scale {chosen:g} (the default: {DEFAULT_SHARE:.0%} of the largest that fits, {floor_digits(best):g}, limited by {binding})")
        else:
            chosen = scale
        scenario = scenario.scaled(chosen)
    load = scenario.load
    needs = needs_of(load, scenario.duration, held_interval)
    processes = resolve_processes(load, needs, machine, workers)
    found = limits(needs, machine, topology, processes * max(workers, 1), cores_check=scenario.scalable)
    broken = [lim for lim in found if not lim.fits]
    if broken:
        first = broken[0]
        where = f" at --scale {chosen:g}" if chosen is not None else ""
        largest = f"; the largest scale that fits is {floor_digits(best):g} (limited by {binding})" if best is not None else ""
        fix = "use a smaller --scale" if best is not None else _fix_for(first.name)
        raise UserError(f"scenario {scenario.name}{where} does not fit this machine: {first.detail}{largest}", fix)
    if processes != load.processes:
        scenario = scenario.model_copy(update={"load": load.model_copy(update={"processes": processes})})
    extra: dict[str, Any] = {}
    if held_interval is not None:
        extra["held_interval"] = held_interval
    fit = Fit(
        scale=chosen,
        max_scale=None if best is None else round(best, 6),
        processes=processes,
        limits=[{**asdict(lim), "fits": lim.fits} for lim in found],
        binding=binding,
    )
    return scenario, extra, fit


def _fix_for(name: str) -> str:
    if "load-generator file descriptors" in name:
        return "raise load.processes (or set it to auto), or hold fewer connections"
    if "maxconn" in name:
        return "raise lb.frontend.maxconn in the scenario's overrides"
    if "maxconn vs" in name:
        return "lower lb.frontend.maxconn / lb.backend.maxconn to at most half the file-descriptor limit"
    if "HAProxy" in name:
        return "hold fewer connections: one HAProxy frontend process holds them all"
    if "ports" in name:
        return "fewer connections, or --workers N (each worker container has its own address)"
    return "ask for less load"
