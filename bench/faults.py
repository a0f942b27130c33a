"""Fault injection on a running lab, every injection and recovery timestamped.

Faults act on real containers and namespaces:

==================  ==========================================================  ==========================
kind                injection                                                    recovery
==================  ==========================================================  ==========================
crash               SIGKILL of every container of the node at once (no advert)  start them again
freeze              ``docker pause`` of every container of the node (no RST)    ``docker unpause``
link-down           the node's client-side interface goes down (``ip link``)    the interface goes up
keepalived-stop     graceful stop of keepalived (SIGTERM: priority-0 advert)    start keepalived again
haproxy-kill        SIGKILL of the node's HAProxy frontend; keepalived stays     start the frontend again
backend-kill        SIGKILL of one backend process                              start it again
server-kill         SIGKILL of one dummy server                                 start it again
==================  ==========================================================  ==========================

Targets: ``master`` (the node holding the VIP at the moment of injection),
``backup`` (a node not holding it), a node name (``lb-a``), or for
``backend-kill`` / ``server-kill`` a service name (``lb-a-backend1``, ``srv2``).

Every event is appended to ``events.jsonl`` of the run directory (one JSON
object per line, fsynced), on the host's clock like every sample::

    {"t": 1795697631.123, "kind": "fault", "name": "crash", "id": 1,
     "target": "lb-a", "node": "lb-a", "services": [...], "done_at": ...}
    {"t": ..., "kind": "recovery", "name": "crash", "id": 1, ...}
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError
from .results.events import EventLog

FAULT_KINDS: dict[str, str] = {
    "crash": "SIGKILL of every process of the node at once (no goodbye advert)",
    "freeze": "docker pause of the whole node: a hung machine, no RST, no advert",
    "link-down": "the node's client-side interface goes down",
    "keepalived-stop": "graceful stop of keepalived (it sends a priority-0 advert)",
    "haproxy-kill": "SIGKILL of the HAProxy frontend only; keepalived's tracking must demote the node",
    "backend-kill": "SIGKILL of one backend process",
    "server-kill": "SIGKILL of one dummy server",
}
SIGKILL_KINDS = ("crash", "haproxy-kill", "backend-kill", "server-kill")
#: Faults after which the VIP is expected to move to the other node.
VIP_MOVING = {"crash", "freeze", "link-down", "keepalived-stop", "haproxy-kill"}


@dataclass
class Injection:
    """One injected fault, to recover later."""

    id: int
    kind: str
    target: str
    node: str | None
    services: list[str]
    t: float
    extra: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False


class FaultInjector:
    """Inject and recover faults on one lab (``bench.topology.lab.Lab``)."""

    def __init__(self, lab: Any, events: EventLog, log: Callable[[str], None] = print):
        self.lab = lab
        self.events = events
        self.log = log
        self._next_id = 1

    # ------------------------------------------------------------------ targets

    def _node(self, name: str) -> Any:
        for node in self.lab.plan.nodes:
            if node.name == name:
                return node
        raise UserError(f"no LB node {name!r} in this lab", f"use one of: {', '.join(n.name for n in self.lab.plan.nodes)}, master, backup")

    def resolve_node(self, target: str) -> Any:
        """The node a target names (``master``/``backup`` resolved now, from who holds the VIP)."""
        if target in ("master", "backup"):
            holders = self.lab.vip_holders()
            if target == "master":
                if not holders:
                    raise UserError("no node holds the VIP right now, so there is no master to hit", "wait for the lab to settle")
                return self._node(holders[0])
            others = [n for n in self.lab.plan.nodes if n.name not in holders]
            if not others:
                raise UserError("no backup node (single-node lab or both hold the VIP)", "use a two-node topology")
            return others[0]
        return self._node(target)

    def _services_for(self, kind: str, target: str) -> tuple[str | None, list[str]]:
        plan = self.lab.plan
        if kind in ("backend-kill", "server-kill"):
            all_services = set(plan.services)
            if target in all_services:
                node = next((n.name for n in plan.nodes if target in n.services), None)
                return node, [target]
            if kind == "server-kill":
                if target in ("master", "backup"):
                    return None, [plan.servers[0].name]
                raise UserError(f"server-kill: no server {target!r}", f"use one of: {', '.join(s.name for s in plan.servers)}")
            node = self.resolve_node(target)
            backends = [p.service for p in node.processes if p.kind == "backend"]
            if not backends:
                raise UserError(f"backend-kill: node {node.name} has no backend processes (monolith layout)", "use the split layout")
            return node.name, [backends[0]]
        node = self.resolve_node(target)
        if kind == "haproxy-kill":
            return node.name, [p.service for p in node.processes if p.kind in ("frontend", "monolith")]
        if kind == "keepalived-stop":
            return node.name, [node.keepalived_service]
        # crash, freeze, link-down: the whole node
        return node.name, list(node.services)

    # ------------------------------------------------------------------ actions

    def _containers(self, services: list[str]) -> list[Any]:
        containers = self.lab.containers()
        missing = [s for s in services if s not in containers]
        if missing:
            raise UserError(f"containers {missing} not found in lab {self.lab.project}", "is the lab up? `bench status`")
        return [containers[s] for s in services]

    @staticmethod
    def _parallel(fn: Callable[[Any], None], items: list[Any]) -> None:
        from docker.errors import APIError  # here: the analysis imports this module for its fault kinds, not docker

        errors: list[BaseException] = []

        def run(item: Any) -> None:
            try:
                fn(item)
            except APIError as exc:  # already dead/stopped is fine
                if exc.status_code not in (304, 404, 409):
                    errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in items]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        if errors:
            raise UserError(f"fault action failed: {errors[0]}", "see `bench status`")

    @staticmethod
    def _main_pids(containers: list[Any]) -> list[int]:
        pids = []
        for c in containers:
            c.reload()
            pid = int(c.attrs["State"].get("Pid") or 0)
            if pid <= 0:
                raise UserError(f"{c.name} is not running, nothing to kill", "recover the previous fault first")
            pids.append(pid)
        return pids

    def _netns_pid(self, node: str) -> int:
        container = self.lab.containers()[node]
        container.reload()
        return int(container.attrs["State"]["Pid"])

    def _client_iface(self, node_name: str) -> str:
        node = self._node(node_name)
        pid = self._netns_pid(node_name)
        out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "-4", "addr", "show"], capture_output=True, check=False, text=True, timeout=10)
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[3].split("/")[0] == node.client_addr:
                return parts[1].split("@")[0]
        raise UserError(f"cannot find the client interface of {node_name}", "is the node up?")

    def _link(self, node_name: str, state: str) -> str:
        iface = self._client_iface(node_name)
        pid = self._netns_pid(node_name)
        proc = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "link", "set", "dev", iface, state], capture_output=True, check=False, text=True, timeout=10)
        if proc.returncode != 0:
            raise UserError(f"link {state} on {node_name}/{iface} failed: {proc.stderr.strip()}", "run as root")
        return iface

    def inject(self, kind: str, target: str = "master") -> Injection:
        """Inject one fault now; returns what is needed to recover it."""
        if kind not in FAULT_KINDS:
            raise UserError(f"unknown fault kind {kind!r}", f"use one of: {', '.join(FAULT_KINDS)}")
        node, services = self._services_for(kind, target)
        containers = [] if kind == "link-down" else self._containers(services)
        extra: dict[str, Any] = {}
        pids = self._main_pids(containers) if kind in SIGKILL_KINDS else []
        t = time.time()
        if kind in SIGKILL_KINDS:
            # Straight from the host, all within microseconds: a crash is one instant,
            # not the second the Docker API would take for five containers.
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif kind == "freeze":
            self._parallel(lambda c: c.pause(), containers)
        elif kind == "keepalived-stop":
            self._parallel(lambda c: c.stop(timeout=10), containers)
        elif kind == "link-down":
            assert node is not None
            extra["iface"] = self._link(node, "down")
        done = time.time()
        inj = Injection(self._next_id, kind, target, node, services, t, extra)
        self._next_id += 1
        self.events.write(
            {"t": t, "done_at": done, "kind": "fault", "name": kind, "id": inj.id, "target": target, "node": node, "services": services, **extra}
        )
        self.log(f"fault {inj.id}: {kind} on {node or services[0]} at {t:.3f}")
        return inj

    def recover(self, inj: Injection) -> None:
        """Undo an injection (failback follows from keepalived's preempt setting)."""
        if inj.recovered:
            return
        t = time.time()
        if inj.kind == "freeze":
            self._parallel(lambda c: c.unpause(), self._containers(inj.services))
        elif inj.kind == "link-down":
            assert inj.node is not None
            self._link(inj.node, "up")
        else:
            from docker.errors import APIError  # see _parallel

            containers = self._containers(inj.services)
            # Docker may not have reaped a killed container yet; starting it then would be a no-op.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                for c in containers:
                    c.reload()
                if all(c.status != "running" for c in containers):
                    break
                time.sleep(0.05)
            # Start in plan order: the namespace owner first, then who joins it.
            for c in containers:
                try:
                    c.start()
                except APIError as exc:
                    if exc.status_code not in (304,):
                        raise UserError(f"recovering {c.name} failed: {exc.explanation}", "see `bench status`") from None
        inj.recovered = True
        done = time.time()
        self.events.write(
            {"t": t, "done_at": done, "kind": "recovery", "name": inj.kind, "id": inj.id, "target": inj.target, "node": inj.node, "services": inj.services}
        )
        self.log(f"recovery {inj.id}: {inj.kind} on {inj.node or inj.services[0]} at {t:.3f}")


class FaultSchedule:
    """A scenario's faults on the clock of the load: ``poll()`` injects and recovers what is due.

    ``faults`` are :class:`bench.spec.Fault` (``at`` and ``recover_after`` in
    seconds after ``start``). Injections still unrecovered at the end are
    recovered by :meth:`finish` so the lab's logs show the whole story.
    """

    def __init__(self, injector: FaultInjector, faults: list[Any], start: float):
        self.injector = injector
        self.start = start
        self.pending = sorted(faults, key=lambda f: f.at)
        self.active: list[tuple[float | None, Injection]] = []

    def poll(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        while self.pending and self.start + self.pending[0].at <= now:
            fault = self.pending.pop(0)
            inj = self.injector.inject(fault.kind, fault.target)
            due = None if fault.recover_after is None else inj.t + fault.recover_after
            self.active.append((due, inj))
        for due, inj in list(self.active):
            if due is not None and due <= now and not inj.recovered:
                self.injector.recover(inj)
                self.active.remove((due, inj))

    def next_due(self) -> float | None:
        times = [self.start + f.at for f in self.pending] + [d for d, i in self.active if d is not None and not i.recovered]
        return min(times) if times else None

    def finish(self) -> None:
        """Recover whatever is still injected (the end of the run)."""
        for _due, inj in self.active:
            if not inj.recovered:
                try:
                    self.injector.recover(inj)
                except UserError as exc:
                    self.injector.log(f"could not recover fault {inj.id}: {exc}")
        self.active.clear()
