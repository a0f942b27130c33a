"""What limited the run: every kind of limit a load-balancer run meets, ranked.

A result is a result for the load balancer only when the load generator and the
dummy servers were not the limit. Each candidate limit is measured against its
own capacity and becomes a :class:`Limit` with its numbers and the knob that
moves it:

==============  ===========  ==========================================================
component       limit        reached when (steady window)
==============  ===========  ==========================================================
loadgen         cpu          the load generator's processes used >= 90 % of their cores
loadgen         schedule     a rate model fell behind its own schedule (``load.limited_by``)
frontend,       cpu          the process used >= 90 % of the cores it may use (``nbthread``,
backend,                     capped by its cpuset, its CPU quota ``cpu_limit`` and the host),
monolith                     or its ``Idle_pct`` averaged <= 10 %
frontend, ...   maxconn      its ``CurrConns`` reached >= 95 % of its effective ``Maxconn``
                             (``fd`` when the file-descriptor limit lowered that below the
                             configured ``maxconn``)
server-pool     pool         the servers' connections (``scur``) averaged >= 90 % of the pool
                             (``servers.maxconn`` x servers) or requests queued (``qcur``)
server          cpu          a dummy server used >= 90 % of its cores
ports           ports        a (source, destination) pair held >= 95 % of the port range
client-pool     users        every user was busy: closed loop, requests in flight (rate x
                             mean latency, Little's law) >= 90 % of ``load.users``; rate
                             models: > 5 % of sends found every connection busy
==============  ===========  ==========================================================

Several limits can hold at once. They are ranked: a saturated load generator
first (it voids the rest), then the load balancer's and the servers' limits by how
far past their capacity they were, and the client's pool last, because slow
responses keep every user busy whatever limited them: the pool is the limit only
when nothing else was. A host whose cores were >= :data:`CONTENDED_PCT` busy
(every process on the machine counts, other labs too) taints every figure: with no
limit reached the component is ``contended``, otherwise the verdict says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .common import num

#: A role at or above this share of its usable cores (mean over the steady window) is saturated.
SATURATED_PCT = 90.0
#: A HAProxy process whose mean Idle_pct is at or below this is saturated.
IDLE_SATURATED_PCT = 10.0
#: Ephemeral-port use (busiest source address) at or above this share of the range is exhaustion.
PORTS_SATURATED_PCT = 95.0
#: A process with CurrConns at or above this share of its Maxconn is at its connection limit.
MAXCONN_SATURATED_PCT = 95.0
#: The server pool at or above this share of its slots (mean) is full.
POOL_SATURATED_PCT = 90.0
#: A closed loop with at least this share of its users waiting for a response is pool-bound.
USERS_BUSY_PCT = 90.0
#: Host cores at least this busy on average make the run contended.
CONTENDED_PCT = 80.0
#: Limits at or above this use are listed (reached or not).
LISTED_PCT = 50.0
#: Roles whose CPU is judged, in order of precedence on ties.
ROLES = ("loadgen", "frontend", "backend", "monolith", "server")
#: Ranking tiers: the load generator voids everything; the client's pool only limits when nothing else did.
TIER = {"loadgen": 0, "client-pool": 2}


@dataclass
class Limit:
    """One limit of the run: where (``component``), what (``limit``), how close and what moves it."""

    component: str
    limit: str
    subject: str
    used_pct: float
    reached: bool
    detail: str
    knob: str

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["used_pct"] = num(self.used_pct, 1)
        return d

    def sentence(self) -> str:
        return f"{self.component} ({self.limit}): {self.detail}; {self.knob}"


def _cpuset_size(cpus: str | None) -> int | None:
    if not cpus:
        return None
    n = 0
    for part in str(cpus).split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def capacities(run: dict[str, Any]) -> dict[str, float]:
    """Cores each role's container can use, from run.json (threads, cpusets, CPU quotas, host cores)."""
    host = float((run.get("machine") or {}).get("cpus") or 0) or None
    topo = run.get("topology") or {}
    lb = topo.get("lb") or {}

    def cap(threads: Any, cpus: Any = None, quota: Any = None) -> float:
        n = float(threads or 1)
        pinned = _cpuset_size(cpus)
        if pinned:
            n = min(n, pinned)
        if quota:
            n = min(n, float(quota))
        return min(n, host) if host else n

    fe, be = lb.get("frontend") or {}, lb.get("backend") or {}
    out = {
        "frontend": cap(fe.get("nbthread"), fe.get("cpus"), fe.get("cpu_limit")),
        "monolith": cap(fe.get("nbthread"), fe.get("cpus"), fe.get("cpu_limit")),
        "backend": cap(be.get("nbthread"), be.get("cpus"), be.get("cpu_limit")),
        "server": cap((topo.get("servers") or {}).get("nbthread")),
        # the load generators' `cpu` row sums all Locust processes of this machine
        "loadgen": cap(((run.get("scenario") or {}).get("load") or {}).get("processes")),
    }
    if host:
        out["host"] = host
    return out


def container_cap(run: dict[str, Any], name: str, role: str, caps: dict[str, float]) -> float:
    """Cores one container may use: its role's, except for load-generator worker containers
    (``bench run --workers``: each runs ``load.processes`` processes) and the master beside them (one)."""
    workers = run.get("load_workers") or {}
    if role == "loadgen" and workers.get("count"):
        if name.startswith("loadgen-worker"):
            return float(workers.get("processes") or 1)
        return 1.0
    return caps[role]


def _cpu_knob(role: str, run: dict[str, Any]) -> str:
    topo = run.get("topology") or {}
    lb = topo.get("lb") or {}
    fe, be, srv = lb.get("frontend") or {}, lb.get("backend") or {}, topo.get("servers") or {}
    load = (run.get("scenario") or {}).get("load") or {}

    def quota(p: dict[str, Any]) -> str:
        return f", cpu_limit {p['cpu_limit']:g}" if p.get("cpu_limit") else ""

    def pinned(p: dict[str, Any]) -> str:
        return f", cpus {p['cpus']}" if p.get("cpus") else ""

    return {
        "frontend": f"raise lb.frontend.nbthread (now {fe.get('nbthread', 1)}{pinned(fe)}{quota(fe)}) and give it the cores",
        "monolith": f"raise lb.frontend.nbthread (now {fe.get('nbthread', 1)}{pinned(fe)}{quota(fe)}) or split the layout",
        "backend": f"raise lb.backend.processes (now {be.get('processes', 2)}) or lb.backend.nbthread (now {be.get('nbthread', 1)}{pinned(be)}{quota(be)})",
        "server": f"raise servers.count (now {srv.get('count', 3)}) or servers.nbthread (now {srv.get('nbthread', 1)}): the run measured the dummy servers",
        "loadgen": f"raise load.processes (now {load.get('processes', 1)}) or add --workers: the run measured the load generator",
    }[role]


def cpu_limits(run: dict[str, Any], cpu: dict[str, Any], idle: dict[str, dict[str, float | None]]) -> tuple[list[Limit], dict[str, float], list[str]]:
    """CPU per process against the cores it may use, and HAProxy's Idle_pct; plus ``utilisation_pct`` per role and evidence."""
    caps = capacities(run)
    by_container = cpu.get("by_container") or {}
    limits: dict[str, Limit] = {}
    utilisation: dict[str, float] = {}
    evidence: list[str] = []
    for name, c in sorted(by_container.items()):
        role, mean = c.get("role"), c.get("total_mean_pct")
        if role not in ROLES or mean is None:
            continue
        cores = container_cap(run, name, role, caps)
        u = mean / cores
        evidence.append(f"{name} ({role}) used {u:.0f}% of its {cores:g} core(s)")
        utilisation[role] = max(utilisation.get(role, -1.0), u)
        limits[name] = Limit(role, "cpu", name, u, u >= SATURATED_PCT, f"{name} used {mean:.0f}% CPU, {u:.0f}% of the {cores:g} core(s) it may use", _cpu_knob(role, run))
    role_of = {name: c.get("role") for name, c in by_container.items()}
    for service, v in sorted(idle.items()):
        mean = v.get("mean")
        if mean is None:
            continue
        role = role_of.get(service) or ("backend" if "backend" in service else "frontend")
        evidence.append(f"{service} Idle_pct {mean:.0f}% (min {v.get('min')})")
        if mean <= IDLE_SATURATED_PCT:
            busy = 100.0 - mean
            old = limits.get(service)
            detail = f"{service} was idle only {mean:.0f}% of the time (Idle_pct)" + (f"; {old.detail}" if old else "")
            limits[service] = Limit(role, "cpu", service, max(busy, old.used_pct if old else 0.0), True, detail, _cpu_knob(role, run))
            utilisation[role] = max(utilisation.get(role, 0.0), busy)
    return [x for x in limits.values() if x.used_pct >= LISTED_PCT or x.reached], utilisation, evidence


def connection_limits(run: dict[str, Any], limits_by_process: dict[str, dict[str, Any]]) -> tuple[list[Limit], list[str]]:
    """Each LB process's CurrConns against its effective Maxconn (lowered by the file-descriptor limit or not)."""
    lb = (run.get("topology") or {}).get("lb") or {}
    out, evidence = [], []
    for service, p in sorted(limits_by_process.items()):
        maxconn, peak = p.get("maxconn"), p.get("conns_max")
        if not maxconn or peak is None:
            continue
        kind = p.get("kind") or "frontend"
        section = "backend" if kind == "backend" else "frontend"
        configured = (lb.get(section) or {}).get("maxconn")
        u = 100.0 * peak / maxconn
        evidence.append(f"{service} held up to {peak:g} of {maxconn:g} connections (maxconn)")
        if configured and maxconn < configured:
            limit = "fd"
            detail = f"{service} held up to {peak:g} connections; maxconn {configured} was lowered to {maxconn:g} by the file-descriptor limit (ulimit-n {p.get('ulimit_n')})"
            knob = "raise the containers' file-descriptor limit (ulimit -n) or spread connections over more processes"
        else:
            limit = "maxconn"
            detail = f"{service} held up to {peak:g} of its {maxconn:g} connections (maxconn); more wait in the kernel's accept queue"
            knob = f"raise lb.{section}.maxconn (now {configured if configured else maxconn:g})"
        if u >= LISTED_PCT:
            out.append(Limit(kind, limit, service, u, u >= MAXCONN_SATURATED_PCT, detail, knob))
    return out, evidence


def pool_limits(run: dict[str, Any], pool: dict[str, dict[str, Any]], latency_mean_ms: float | None) -> tuple[list[Limit], list[str]]:
    """The server pool of each server-side process: connections busy against ``servers.maxconn`` x servers, and its queue."""
    servers = (run.get("topology") or {}).get("servers") or {}
    out, evidence = [], []
    for service, p in sorted(pool.items()):
        slots, busy, queue = p.get("slots"), p.get("busy_mean"), p.get("queue_mean") or 0.0
        if not slots or busy is None:
            continue
        u = 100.0 * busy / slots
        queued = queue >= 1.0 or (p.get("queue_max") or 0) >= 2
        qtime = p.get("qtime_ms")
        evidence.append(f"{service} server pool: {busy:g} of {slots:g} connections busy on average, queue {queue:g} (max {p.get('queue_max')}), qtime {qtime} ms")
        if u < LISTED_PCT and not queued:
            continue
        detail = f"{service}: {busy:.0f} of {slots:g} connections busy on average, {queue:.0f} queued (max {p.get('queue_max') or 0:g})"
        if qtime and latency_mean_ms:
            detail += f", {min(100.0, 100.0 * qtime / latency_mean_ms):.0f}% of each request's time in the queue ({qtime:g} of {latency_mean_ms:.1f} ms)"
        elif qtime:
            detail += f", {qtime:g} ms in the queue per request"
        knob = f"raise servers.maxconn (now {servers.get('maxconn', '?')}) or servers.count (now {servers.get('count', '?')})"
        out.append(Limit("server-pool", "pool", service, max(u, 100.0 if queued else u), u >= POOL_SATURATED_PCT or queued, detail, knob))
    return out, evidence


def ports_limit(ports: dict[str, Any]) -> tuple[list[Limit], list[str]]:
    """The busiest (source, destination) pair's ephemeral ports against ``ip_local_port_range``."""
    u = ports.get("max_utilisation_pct")
    if u is None:
        return [], []
    evidence = [f"busiest source address used {u:.1f}% of {ports.get('range_size')} ephemeral ports"]
    if u < LISTED_PCT:
        return [], evidence
    pair = (ports.get("exhausted_pairs") or [None])[0] or "the busiest source address"
    detail = f"{pair} held {ports.get('max_in_use')} of {ports.get('range_size')} ephemeral ports ({u:.0f}%)"
    knob = "add lb.local_addresses (one port range per source address) or widen lb.sysctls.ip_local_port_range"
    return [Limit("ports", "ports", pair, u, u >= PORTS_SATURATED_PCT, detail, knob)], evidence


def client_pool_limit(run: dict[str, Any], load: dict[str, Any], requests_per_s: float | None, latency_mean_ms: float | None) -> Limit | None:
    """The client's own pool: every user (closed loop) or every connection (rate models) busy."""
    sc = (run.get("scenario") or {}).get("load") or {}
    model = load.get("model") or sc.get("model")
    users = sc.get("users")
    pace = load.get("pacing") or {}
    if model == "keep-alive":
        if not users or not requests_per_s or latency_mean_ms is None:
            return None
        in_flight = requests_per_s * latency_mean_ms / 1000.0
        u = 100.0 * in_flight / float(users)
        think = float(sc.get("think_time") or 0)
        detail = (
            f"{users} users, {in_flight:.1f} of them waiting for a response on average ({requests_per_s:g} req/s x {latency_mean_ms:.1f} ms, "
            + ("Little's law), the others in the load generator or thinking" if think else "Little's law) and the others in the load generator")
            + f": a closed loop sends at most users / (latency + client time{' + think time' if think else ''}), {requests_per_s:g} req/s here"
        )
        # without think time every user always has a request going: the loop's rate is its users' pace
        busy = u >= USERS_BUSY_PCT or not think
        return Limit("client-pool", "users", "load.users", u, busy, detail, f"raise load.users (now {users}) or use an open model (model: open)")
    waited = pace.get("waited_pct")
    if waited is None:
        return None
    detail = f"{pace.get('waited')} of {pace.get('due')} sends ({waited:g}%) found every one of the {users} connections busy"
    knob = f"raise load.users (now {users}): the pool of connections the schedule sends on"
    return Limit("client-pool", "users", "load.users", 100.0 if waited > 5.0 else 100.0 * waited / 5.0, waited > 5.0, detail, knob)


def schedule_limit(run: dict[str, Any], load: dict[str, Any]) -> Limit | None:
    """A rate model that could not keep its own schedule (``load.limited_by`` = ``loadgen``)."""
    if load.get("limited_by") != "loadgen":
        return None
    knob = _cpu_knob("loadgen", run)
    if str(load.get("verdict") or "").startswith("THE SCHEDULE BROKE"):
        # a process without its schedule is a fault of the harness, not a lack of client cores
        knob = "rerun: the load generator itself failed (see locust/locust.log and events.jsonl), more processes would not help"
    return Limit("loadgen", "schedule", "load generator", 100.0, True, f"could not reach the target ({load.get('verdict')})", knob)


def rank(limits: list[Limit]) -> list[Limit]:
    """Reached limits first; among them the load generator, then by use; the client's pool after the others."""
    return sorted(limits, key=lambda x: (not x.reached, TIER.get(x.component, 1), -x.used_pct, x.subject))


def find_bottleneck(
    run: dict[str, Any],
    cpu: dict[str, Any],
    idle: dict[str, dict[str, float | None]],
    ports: dict[str, Any],
    pool: dict[str, dict[str, Any]] | None = None,
    process_limits: dict[str, dict[str, Any]] | None = None,
    latency_mean_ms: float | None = None,
) -> dict[str, Any]:
    """``bottleneck`` from the load balancer's, the servers' and the host's side (see the module docstring).

    ``cpu`` is the ``cpu`` summary section, ``idle`` ``haproxy.idle_pct``, ``ports`` the
    ``ports`` section, ``pool`` ``haproxy.pool`` and ``process_limits`` ``haproxy.limits``.
    :func:`apply_load_verdict` adds the client's side and writes the final verdict.
    """
    limits, utilisation, evidence = cpu_limits(run, cpu, idle)
    more, ev = connection_limits(run, process_limits or {})
    limits += more
    evidence += ev
    more, ev = pool_limits(run, pool or {}, latency_mean_ms)
    limits += more
    evidence += ev
    more, ev = ports_limit(ports)
    limits += more
    evidence += ev
    if more:
        utilisation["ports"] = more[0].used_pct
    host_mean = cpu.get("host_mean_pct")
    if host_mean is not None:
        evidence.append(f"host cores {host_mean:.0f}% busy on average ({cpu.get('host_per_core_pct')})")
    out = {
        "limits": [x.as_dict() for x in rank(limits)],
        "host_busy_pct": num(host_mean, 1),
        "contended": bool(host_mean is not None and host_mean >= CONTENDED_PCT),
        "utilisation_pct": {r: num(u, 1) for r, u in sorted(utilisation.items())},
        "evidence": evidence,
        "_judged": bool(utilisation or host_mean is not None or limits),
    }
    return decide(out)


def decide(b: dict[str, Any]) -> dict[str, Any]:
    """Set ``component``, ``limit``, ``saturated`` and ``verdict`` from the ranked ``limits``.

    The client's pool is the verdict only when no other limit was reached and the
    host was not contended (a busy host, not more users, would have been the cure).
    """
    limits = [Limit(**{**x, "used_pct": x["used_pct"] or 0.0}) for x in b.get("limits") or []]
    ranked = rank(limits)
    b["limits"] = [x.as_dict() for x in ranked]
    reached = [x for x in ranked if x.reached]
    b["saturated"] = list(dict.fromkeys(x.component for x in reached))
    host = b.get("host_busy_pct")
    contended = (
        f"the host's cores were {host:.0f}% busy (every process on the machine counts, other labs too): components competed "
        "for CPU, so rates are lower and latencies longer and noisier than on a quiet machine"
    ) if b.get("contended") else ""  # fmt: skip
    own = [x for x in reached if x.component != "client-pool"]
    if own or (reached and not contended):
        top = (own or reached)[0]
        b["component"], b["limit"] = top.component, top.limit
        verdict = top.sentence()
        if top.component == "loadgen":
            verdict += "; the figures measure the load generator, not the load balancer"
        others = [f"{x.component} ({x.limit}, {x.subject})" for x in reached if x is not top]
        if others:
            verdict += f". {len(reached)} limits held at once, ranked: then " + ", ".join(others)
        if contended:
            verdict += f". Contended: {contended}"
    elif contended:
        b["component"], b["limit"] = "contended", "host"
        verdict = contended + "; no component hit its own limit"
        if reached:
            verdict += f" (the client's pool was full too: {reached[0].detail})"
    elif b.get("_judged", b.get("component") is not None):
        b["component"], b["limit"] = "none", None
        verdict = "no limit reached: there is headroom, push harder" + (f" (closest: {ranked[0].sentence()})" if ranked else "")
    else:
        b["component"], b["limit"] = None, None
        verdict = "no CPU samples: cannot tell"
    b["verdict"] = verdict
    return b


def apply_load_verdict(
    bottleneck: dict[str, Any],
    load: dict[str, Any],
    cpu: dict[str, Any],
    run: dict[str, Any] | None = None,
    requests_per_s: float | None = None,
    latency_mean_ms: float | None = None,
) -> dict[str, Any]:
    """Add the client's side (the load generator's schedule, the client's pool) and decide the verdict.

    ``load`` is the ``load`` summary section (:mod:`bench.analysis.load`): when a
    target was missed because the generator fell behind its schedule or ran out of
    CPU, every figure of the run is the client's, whatever the CPU shares say.
    """
    run = run or {}
    out = dict(bottleneck)
    limits = list(out.get("limits") or [])
    extra = [schedule_limit(run, load), client_pool_limit(run, load, requests_per_s, latency_mean_ms)]
    limits += [x.as_dict() for x in extra if x is not None and (x.reached or x.used_pct >= LISTED_PCT)]
    out["limits"] = limits
    if load.get("limited_by") == "loadgen":
        loadgen_cpu = [
            f"{name} used {c.get('total_mean_pct')}% CPU (of one core; per core {c.get('mean_pct')})"
            for name, c in (cpu.get("by_container") or {}).items()
            if c.get("role") == "loadgen"
        ]
        out["evidence"] = [f"load: {load.get('verdict')}", *loadgen_cpu, *(out.get("evidence") or [])]
    out = decide(out)
    out.pop("_judged", None)
    return out
