"""From the fitted costs and a target profile to what the load balancer needs, with intervals, and what runs out first.

For a profile (:mod:`.profile`) the model gives, each as (estimate, low, high) at the
fit's confidence level:

- **cores per role**: the role's idle intercept plus cost x rate over every operation
  (:class:`~bench.capacity.fit.LinearFit.predict`); the total is the sum, its interval
  the roles' intervals added end to end (:func:`sum_estimates`);
- **memory per role**: the lab's idle memory plus bytes per plain and per TLS
  connection open (fitted on the held-connection steps), plus two buffers
  (``tune.bufsize``, 16 kB) per request in flight on each side of each process
  (requests/s x the profile's ``server_time``; an estimate, not measured);
- **processes** the file descriptors ask for: HAProxy reserves two per connection it
  may hold (``maxconn``) plus a few, so one process holds at most
  ``(fd_limit - 100) / 2`` connections: the frontend all client connections open, the
  backends the frontend -> backend connections;
- **ephemeral ports**: frontend -> backend sockets (open + TIME_WAIT; fitted on the
  sweep's socket counts, or the profile's ``hop_connections``) spread over M localhost
  addresses x K backend processes, each (source, destination) pair with its own
  ``ip_local_port_range``; the addresses M needed; backend -> server sockets per server;
- **headroom** of each resource (have / need, and at the pessimistic end of the need)
  and the one that runs out first;
- **extrapolation**: every operation the profile asks for at more than the largest
  rate the sweep measured it at (:func:`extrapolation`). A linear model says nothing
  about what happens past its data (a cache that stops fitting, a lock, a NIC queue):
  beyond :data:`FAR` x the measured range the prediction is marked ``extrapolated``
  and says so on every output; its intervals are the fit's, not the truth's.

The cores are cores of the CPU the sweep ran on. Another CPU's cores differ (clock,
generation, AES-NI, OpenSSL version): compare through a ratio, never as a promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .fit import LinearFit
from .profile import Deployment, Machine, Profile, operations

#: HAProxy's default buffer size: a request in flight holds one per direction in each process it crosses.
BUFSIZE = 16384
#: File descriptors a HAProxy process keeps besides connections (listeners, stats socket, logs, checks).
FD_RESERVE = 100
#: An operation asked for at more than this many times the largest rate the sweep measured: "far" extrapolation.
FAR = 3.0


@dataclass(frozen=True)
class Estimate:
    """A figure with its interval."""

    value: float
    low: float
    high: float

    def scaled(self, k: float) -> Estimate:
        return Estimate(self.value * k, self.low * k, self.high * k)

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Resource:
    """One resource: what the profile needs of it (with its interval), what there is, and why."""

    name: str
    unit: str
    need: Estimate
    have: float | None
    detail: str

    @property
    def headroom(self) -> float | None:
        """have / need: the factor the load could grow by (inf when nothing is needed)."""
        if self.have is None:
            return None
        return math.inf if self.need.value <= 0 else self.have / self.need.value

    @property
    def headroom_low(self) -> float | None:
        """have / the high end of the need: the headroom if the model errs on the costly side."""
        if self.have is None:
            return None
        return math.inf if self.need.high <= 0 else self.have / self.need.high


@dataclass
class CostModel:
    """The fitted model: cores per role, memory per role, sockets per hop."""

    cpu: dict[str, LinearFit]
    memory: dict[str, LinearFit] = field(default_factory=dict)
    hop_sockets: LinearFit | None = None
    server_sockets: LinearFit | None = None
    #: the largest rate (or level) of each operation among the steps the fit used (empty: unknown)
    measured_max: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """What a profile needs (see the module docstring)."""

    profile: Profile
    machine: Machine
    operations: dict[str, float]
    cores: dict[str, Estimate]
    total_cores: Estimate
    memory: dict[str, Estimate]
    total_memory: Estimate
    processes: dict[str, int]
    resources: list[Resource]
    reference: dict[str, Any] | None
    notes: list[str]
    #: operations asked beyond the measured range (:func:`extrapolation`)
    beyond: list[dict[str, Any]] = field(default_factory=list)

    @property
    def extrapolated(self) -> bool:
        """Some operation is asked for at more than :data:`FAR` x the largest rate measured."""
        return any(b["far"] for b in self.beyond)

    @property
    def first_limit(self) -> Resource | None:
        """The resource with the least headroom (at the pessimistic end of its need)."""
        rated = [r for r in self.resources if r.headroom_low is not None]
        return min(rated, key=lambda r: r.headroom_low) if rated else None  # type: ignore[arg-type,return-value]


def sum_estimates(estimates: list[Estimate]) -> Estimate:
    """Estimates added: their values, and their half-widths added as if their errors went together.

    The roles are fitted on the same steps, so their errors are not independent (a
    contended second slows every process); adding the half-widths is the safe side.
    """
    value = sum(e.value for e in estimates)
    return Estimate(value, max(0.0, sum(e.low for e in estimates)), sum(e.high for e in estimates))


def _fit_predict(fit: LinearFit, x: dict[str, float]) -> Estimate:
    known = {k: v for k, v in x.items() if k in fit.names}
    return Estimate(*fit.predict(known))


def unmeasured(model: CostModel, ops: dict[str, float]) -> list[str]:
    """Operations the profile asks for that no role's fit measured (their cost is missing from the answer)."""
    out = []
    for name, value in ops.items():
        if name.startswith("_") or not value:
            continue
        if any(name in f.dropped for f in model.cpu.values()) and not any(name in f.names for f in model.cpu.values()):
            out.append(name)
    return out


def extrapolation(model: CostModel, ops: dict[str, float]) -> list[dict[str, Any]]:
    """Operations ``ops`` asks for at more than the largest rate the sweep measured, largest factor first.

    Each: operation, asked, measured_max, factor (asked / measured_max) and far (factor
    > :data:`FAR`). Operations the sweep never measured are :func:`unmeasured`'s, not here.
    """
    out = []
    for name, asked in ops.items():
        top = model.measured_max.get(name)
        if name.startswith("_") or not asked or not top or top <= 0 or asked <= top:
            continue
        factor = asked / top
        out.append({"operation": name, "asked": float(asked), "measured_max": float(top), "factor": factor, "far": factor > FAR})
    return sorted(out, key=lambda b: -b["factor"])


def extrapolation_note(beyond: list[dict[str, Any]]) -> str | None:
    """One line for the operations asked beyond the measured range (None: none)."""
    if not beyond:
        return None
    parts = ", ".join(f"{b['operation']} {b['asked']:,.4g} ({b['factor']:,.3g}x the largest measured, {b['measured_max']:,.4g})" for b in beyond)
    if any(b["far"] for b in beyond):
        return f"EXTRAPOLATED far beyond the measured range: {parts}. A straight line drawn past its data: the intervals are the fit's, not the truth's; measure nearer the target before relying on it"
    return f"beyond the measured range (within {FAR:g}x): {parts}"


def predict(model: CostModel, profile: Profile, machine: Machine | None = None) -> Prediction:
    """What ``profile`` needs on ``machine`` (default: the profile's, else this machine)."""
    machine = machine or profile.machine or Machine.here()
    dep: Deployment = profile.deployment
    w = profile.workload
    ops = operations(w, dep)
    notes: list[str] = []
    missing = unmeasured(model, ops)
    if missing:
        notes.append(f"not measured by the sweep, so not in the cores: {', '.join(missing)}")
    beyond = extrapolation(model, ops)
    line = extrapolation_note(beyond)
    if line:
        notes.insert(0, line)
    cores = {role: _fit_predict(fit, ops) for role, fit in model.cpu.items()}
    for role, est in cores.items():
        if est.value < 0:
            notes.append(f"{role}: the fit's answer is negative ({est.value:,.3g} cores), counted as 0: its costs cannot carry this profile")
            cores[role] = Estimate(0.0, 0.0, est.high)
    total = sum_estimates(list(cores.values()))

    # memory: fitted idle + per connection, plus buffers of requests in flight (estimated)
    memory: dict[str, Estimate] = {}
    for role, fit in model.memory.items():
        bases = [n for n in fit.names if n.startswith("base_")]
        x = {n: 1.0 / len(bases) for n in bases}
        x["plain_connection"] = max(ops["_client_open"] - ops["_tls_open"], 0.0)
        x["tls_connection"] = ops["_tls_open"]
        est = _fit_predict(fit, x)
        buffers = ops["_in_flight"] * 2 * BUFSIZE if role in ("frontend", "backend", "monolith") else 0.0
        memory[role] = Estimate(est.value + buffers, est.low + buffers, est.high + buffers)
    total_mem = sum_estimates(list(memory.values())) if memory else Estimate(0.0, 0.0, 0.0)

    # connections per process (file descriptors)
    per_process = max((machine.fd_limit - FD_RESERVE) // 2, 1)
    client_open = ops["_client_open"]
    hop = _hop_sockets(model, ops, w.hop_connections)
    processes = {
        "frontend": max(1, math.ceil(client_open / per_process)),
        "backend": max(1, math.ceil(hop.high / per_process)),
    }
    resources: list[Resource] = []
    if cores:
        have = machine.cores * machine.max_cpu_utilisation
        resources.append(
            Resource(
                "cpu", "cores", total, have,
                f"{total.value:.2f} cores ({total.low:.2f}-{total.high:.2f}) of the sweep's CPU; "
                f"{machine.max_cpu_utilisation:.0%} of {machine.cores:g} cores = {have:g}",
            )
        )  # fmt: skip
    if memory:
        have_b = None if machine.memory_gb is None else machine.memory_gb * 1e9
        resources.append(
            Resource(
                "memory",
                "bytes",
                total_mem,
                have_b,
                f"{total_mem.value / 1e9:.2f} GB ({total_mem.low / 1e9:.2f}-{total_mem.high / 1e9:.2f})"
                + (f" of {machine.memory_gb:g} GB" if machine.memory_gb is not None else " (the machine's memory not given)"),
            )
        )
    resources.append(
        Resource(
            "frontend connections per process", "connections", Estimate(client_open, client_open, client_open),
            dep.frontend_processes * per_process,
            f"{client_open:,.0f} client connections open; {dep.frontend_processes} frontend process(es) x {per_process:,} "
            f"(HAProxy reserves 2 file descriptors per connection, limit {machine.fd_limit:,}): {processes['frontend']} process(es) needed",
        )
    )  # fmt: skip
    resources.append(
        Resource(
            "backend connections per process", "connections", hop, dep.backend_processes * per_process,
            f"{hop.value:,.0f} frontend -> backend connections ({hop.low:,.0f}-{hop.high:,.0f}); {dep.backend_processes} backend "
            f"process(es) x {per_process:,}: {processes['backend']} process(es) needed",
        )
    )  # fmt: skip
    pairs = dep.local_addresses * dep.backend_processes
    m_needed = max(1, math.ceil(hop.high / (dep.backend_processes * machine.port_range)))
    resources.append(
        Resource(
            "ephemeral ports frontend -> backend", "sockets", hop, float(pairs * machine.port_range),
            f"{hop.value:,.0f} sockets ({hop.low:,.0f}-{hop.high:,.0f}) over M={dep.local_addresses} localhost address(es) x "
            f"K={dep.backend_processes} backend(s), {machine.port_range:,} ports each pair: M={m_needed} needed",
        )
    )  # fmt: skip
    srv = _server_sockets(model, ops)
    if srv is not None:
        resources.append(
            Resource(
                "ephemeral ports backend -> server", "sockets", srv, float(dep.servers * machine.port_range),
                f"{srv.value:,.0f} sockets ({srv.low:,.0f}-{srv.high:,.0f}) to {dep.servers} server(s) from one address, "
                f"{machine.port_range:,} ports each",
            )
        )  # fmt: skip
    processes["local_addresses"] = m_needed
    reference = None
    if profile.reference is not None:
        ref = profile.reference
        answer = total if ref.role == "total" else cores.get(ref.role)
        if answer is not None:
            reference = {
                "text": ref.text,
                "cpu": ref.cpu,
                "role": ref.role,
                "cores": ref.cores,
                "model": answer,
                "ratio": Estimate(answer.value / ref.cores, answer.low / ref.cores, answer.high / ref.cores),
            }
    return Prediction(profile, machine, ops, cores, total, memory, total_mem, processes, resources, reference, notes, beyond)


def _hop_sockets(model: CostModel, ops: dict[str, float], given: int | None) -> Estimate:
    if given is not None:
        return Estimate(float(given), float(given), float(given))
    floor = ops["_in_flight"]
    if model.hop_sockets is None:
        return Estimate(floor, floor, floor)
    est = _fit_predict(model.hop_sockets, ops)
    return Estimate(max(est.value, floor), max(est.low, floor), max(est.high, floor))


def _server_sockets(model: CostModel, ops: dict[str, float]) -> Estimate | None:
    if model.server_sockets is None:
        return None
    est = _fit_predict(model.server_sockets, ops)
    floor = ops["_in_flight"]
    return Estimate(max(est.value, floor), max(est.low, floor), max(est.high, floor))
