"""The plan of one lab: every container, address and port, derived from a
validated :class:`~bench.spec.Topology` and the subnets given to the run.

The plan is pure data, so rendering and tests need no Docker.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..spec import Topology

#: Host part of addresses inside each /24 lab subnet.
GATEWAY_HOST = 1
NODE_HOST_BASE = 11  # lb-a .11, lb-b .12
SERVER_HOST_BASE = 21  # srv1 .21, srv2 .22, ...
LOADGEN_HOST_BASE = 51  # load-generator containers, when used
VIP_HOST = 100

FRONTEND_BACKEND_PORT_BASE = 8000  # backend process k listens on 127.0.0.m:(8000 + k)
MONITOR_PORT = 8404  # frontend's monitor-uri on 127.0.0.1, for keepalived's track_script
MONITOR_URI = "/lbbench-health"  # what lbbench-check-frontend asks (topology/images/node)
SERVER_PORT = 8080
HTTPS_PORT = 443
HTTP_PORT = 80
NODE_NAMES = ("lb-a", "lb-b")


@dataclass(frozen=True)
class Process:
    """One HAProxy process on an LB node, in its own container."""

    service: str  # compose service name, e.g. lb-a-frontend
    kind: str  # frontend | backend | monolith
    config: str  # file name inside the node's config folder, e.g. frontend.cfg
    index: int = 0  # k for backend processes (1-based)
    nbthread: int = 1
    cpus: str | None = None
    cpu_limit: float | None = None  # CPU quota in cores

    @property
    def socket(self) -> str:
        """Stats socket file name inside the lab's shared run folder."""
        return f"{self.service}.sock"


@dataclass(frozen=True)
class Node:
    """An LB node: a container owning the network namespace (service ``lb-a``, a
    process that only sleeps, like a Kubernetes pod's pause container), keepalived
    (``lb-a-keepalived``) and the HAProxy processes, all joined to it.

    Keeping the namespace in a container of its own means keepalived or an
    HAProxy process can stop and start again without taking the node's network
    with it; only a crash of the whole node does.
    """

    name: str  # lb-a | lb-b
    state: str  # MASTER | BACKUP
    priority: int
    client_addr: str
    server_addr: str
    processes: tuple[Process, ...]

    @property
    def keepalived_service(self) -> str:
        return f"{self.name}-keepalived"

    @property
    def services(self) -> tuple[str, ...]:
        """Every container of the node, namespace owner first (the order to start them in)."""
        return (self.name, self.keepalived_service, *(p.service for p in self.processes))


@dataclass(frozen=True)
class Server:
    """A dummy server."""

    name: str  # srv1..
    addr: str
    port: int = SERVER_PORT

    @property
    def socket(self) -> str:
        return f"{self.name}.sock"


@dataclass(frozen=True)
class Plan:
    """Everything a renderer and a lifecycle need to know about one lab."""

    project: str
    topology: Topology
    variant: str | None
    client_subnet: str
    server_subnet: str
    vip: str
    nodes: tuple[Node, ...]
    servers: tuple[Server, ...]
    local_addresses: tuple[str, ...] = field(default=())

    @property
    def client_gateway(self) -> str:
        return _host(self.client_subnet, GATEWAY_HOST)

    @property
    def server_gateway(self) -> str:
        return _host(self.server_subnet, GATEWAY_HOST)

    @property
    def services(self) -> tuple[str, ...]:
        out: list[str] = []
        for node in self.nodes:
            out.extend(node.services)
        out.extend(s.name for s in self.servers)
        return tuple(out)

    @property
    def haproxy_processes(self) -> tuple[tuple[Node, Process], ...]:
        return tuple((n, p) for n in self.nodes for p in n.processes)

    def url(self, scheme: str = "https", path: str = "/") -> str:
        """URL of the VIP; the only address load is ever sent to."""
        return f"{scheme}://{self.vip}{path}"


def _host(subnet: str, host: int) -> str:
    net = ipaddress.ip_network(subnet)
    return str(net.network_address + host)


def make_plan(
    topology: Topology,
    project: str,
    client_subnet: str,
    server_subnet: str,
    variant: str | None = None,
) -> Plan:
    """Lay out containers and addresses for ``topology`` in the two given /24 subnets."""
    lb = topology.lb
    ka = topology.keepalived
    nodes = []
    for i in range(lb.nodes):
        name = NODE_NAMES[i]
        if lb.layout == "split":
            procs = [Process(f"{name}-frontend", "frontend", "frontend.cfg", 0, lb.frontend.nbthread, lb.frontend.cpus, lb.frontend.cpu_limit)]
            procs += [
                Process(f"{name}-backend{k}", "backend", f"backend{k}.cfg", k, lb.backend.nbthread, lb.backend.cpus, lb.backend.cpu_limit)
                for k in range(1, lb.backend.processes + 1)
            ]
        else:
            procs = [Process(f"{name}-haproxy", "monolith", "haproxy.cfg", 0, lb.frontend.nbthread, lb.frontend.cpus, lb.frontend.cpu_limit)]
        master = i == 0
        nodes.append(
            Node(
                name=name,
                # nopreempt only works when both start as BACKUP; the higher priority still wins the first election.
                state="MASTER" if master and ka.preempt else "BACKUP",
                priority=ka.priority_master if master else ka.priority_backup,
                client_addr=_host(client_subnet, NODE_HOST_BASE + i),
                server_addr=_host(server_subnet, NODE_HOST_BASE + i),
                processes=tuple(procs),
            )
        )
    servers = tuple(
        Server(f"srv{j}", _host(server_subnet, SERVER_HOST_BASE + j - 1)) for j in range(1, topology.servers.count + 1)
    )
    return Plan(
        project=project,
        topology=topology,
        variant=variant,
        client_subnet=client_subnet,
        server_subnet=server_subnet,
        vip=_host(client_subnet, VIP_HOST),
        nodes=tuple(nodes),
        servers=servers,
        local_addresses=tuple(f"127.0.0.{m}" for m in range(1, lb.local_addresses + 1)),
    )
