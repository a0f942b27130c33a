"""Which component limited the run: the load generator, a HAProxy process, the servers, ports, or none.

A result is a result for the load balancer only when the load generators and the
dummy servers were not saturated. Each role's CPU is measured against what it can
use: a HAProxy process with ``nbthread`` N (or pinned to N cores) can use at most N
cores, a Locust process one core. A role is saturated when its busiest container
averaged at least :data:`SATURATED_PCT` of that over the steady window, or (HAProxy)
when its ``Idle_pct`` averaged at most :data:`IDLE_SATURATED_PCT`.
"""

from __future__ import annotations

from typing import Any

from .common import num

#: A role at or above this share of its usable cores (mean over the steady window) is saturated.
SATURATED_PCT = 90.0
#: A HAProxy process whose mean Idle_pct is at or below this is saturated.
IDLE_SATURATED_PCT = 10.0
#: Ephemeral-port use (busiest source address) at or above this share of the range is exhaustion.
PORTS_SATURATED_PCT = 95.0
#: Order of precedence on ties: a saturated load generator invalidates everything else.
ROLES = ("loadgen", "frontend", "backend", "monolith", "server")


def _cpuset_size(cpus: str | None) -> int | None:
    if not cpus:
        return None
    n = 0
    for part in str(cpus).split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def capacities(run: dict[str, Any]) -> dict[str, float]:
    """Cores each role's container can use, from run.json (threads, cpusets, host cores)."""
    host = float((run.get("machine") or {}).get("cpus") or 0) or None
    topo = run.get("topology") or {}
    lb = topo.get("lb") or {}

    def cap(threads: Any, cpus: Any = None) -> float:
        n = float(threads or 1)
        pinned = _cpuset_size(cpus)
        if pinned:
            n = min(n, pinned)
        return min(n, host) if host else n

    fe, be = lb.get("frontend") or {}, lb.get("backend") or {}
    out = {
        "frontend": cap(fe.get("nbthread"), fe.get("cpus")),
        "monolith": cap(fe.get("nbthread"), fe.get("cpus")),
        "backend": cap(be.get("nbthread"), be.get("cpus")),
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


def find_bottleneck(
    run: dict[str, Any],
    cpu: dict[str, Any],
    idle: dict[str, dict[str, float | None]],
    ports: dict[str, Any],
) -> dict[str, Any]:
    """``bottleneck``: the limiting component with the evidence (see the module docstring).

    ``cpu`` is the ``cpu`` summary section, ``idle`` the ``haproxy.idle_pct`` section and
    ``ports`` the ``ports`` section. ``component`` is null when there is nothing to judge by.
    """
    caps = capacities(run)
    by_container = cpu.get("by_container") or {}
    utilisation: dict[str, float] = {}
    busiest: dict[str, str] = {}
    for name, c in by_container.items():
        role, mean = c.get("role"), c.get("total_mean_pct")
        if role not in caps or role == "host" or mean is None:
            continue
        u = 100.0 * mean / (100.0 * container_cap(run, name, role, caps))
        if u > utilisation.get(role, -1.0):
            utilisation[role], busiest[role] = u, name
    evidence: list[str] = []
    saturated: list[str] = []
    for role in ROLES:
        if role in utilisation:
            u = utilisation[role]
            evidence.append(f"{busiest[role]} ({role}) used {u:.0f}% of its {container_cap(run, busiest[role], role, caps):g} core(s)")
            if u >= SATURATED_PCT:
                saturated.append(role)
    role_of = {name: c.get("role") for name, c in by_container.items()}
    for service, v in sorted(idle.items()):
        mean = v.get("mean")
        if mean is None:
            continue
        role = role_of.get(service) or ("backend" if "backend" in service else "frontend")
        evidence.append(f"{service} Idle_pct {mean:.0f}% (min {v.get('min')})")
        if mean <= IDLE_SATURATED_PCT and role not in saturated:
            saturated.append(role)
            utilisation[role] = max(utilisation.get(role, 0.0), 100.0 - mean)
    host_mean = cpu.get("host_mean_pct")
    if host_mean is not None:
        evidence.append(f"host cores {host_mean:.0f}% busy on average ({cpu.get('host_per_core_pct')})")
    port_util = ports.get("max_utilisation_pct")
    if port_util is not None:
        evidence.append(f"busiest source address used {port_util:.1f}% of {ports.get('range_size')} ephemeral ports")
        if port_util >= PORTS_SATURATED_PCT:
            saturated.append("ports")
            utilisation["ports"] = port_util
    if saturated:
        component = max(saturated, key=lambda r: (utilisation.get(r, 0.0), -saturated.index(r)))
        verdict = f"{component} saturated ({utilisation[component]:.0f}% of its capacity)"
        if component == "loadgen":
            verdict += ": the figures measure the load generator, not the load balancer"
    elif host_mean is not None and host_mean >= SATURATED_PCT:
        component = "host"
        verdict = (
            f"the host's cores were {host_mean:.0f}% busy (every process on the machine counts, other labs too): "
            "components competed for CPU, none hit its own limit"
        )
    elif utilisation or host_mean is not None:
        component = "none"
        verdict = "no component saturated"
    else:
        component = None
        verdict = "no CPU samples: cannot tell"
    return {
        "component": component,
        "verdict": verdict,
        "saturated": saturated,
        "utilisation_pct": {r: num(u, 1) for r, u in sorted(utilisation.items())},
        "evidence": evidence,
    }


def apply_load_verdict(bottleneck: dict[str, Any], load: dict[str, Any], cpu: dict[str, Any]) -> dict[str, Any]:
    """Name the load generator as the bottleneck when it could not reach the scenario's target.

    ``load`` is the ``load`` summary section (:mod:`bench.analysis.load`): when a
    target was missed because the generator fell behind its schedule or ran out of
    CPU, every figure of the run is the client's, whatever the CPU shares say.
    """
    if load.get("limited_by") != "loadgen":
        return bottleneck
    out = dict(bottleneck)
    saturated = list(out.get("saturated") or [])
    if "loadgen" not in saturated:
        saturated.insert(0, "loadgen")
    loadgen_cpu = [
        f"{name} used {c.get('total_mean_pct')}% CPU (of one core; per core {c.get('mean_pct')})"
        for name, c in (cpu.get("by_container") or {}).items()
        if c.get("role") == "loadgen"
    ]
    out["component"] = "loadgen"
    out["saturated"] = saturated
    out["verdict"] = (
        "loadgen could not reach the target: the figures measure the load generator, not the load balancer "
        f"({load.get('verdict')})"
    )
    out["evidence"] = [f"load: {load.get('verdict')}", *loadgen_cpu, *(out.get("evidence") or [])]
    return out
