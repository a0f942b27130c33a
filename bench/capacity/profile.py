"""Target profiles (``profiles/*.yaml``): the load a capacity prediction is asked for, and the machine it is for.

A profile names production figures, not a test::

    schema_version: 1
    name: seed-peak
    workload:
      connections_per_s: 15000        # new client connections per second (plain + TLS)
      tls_connections_per_s: 600      # of them over TLS: one handshake each
      resumed_share: 0.0              # share of those handshakes that resume a session
      requests_per_connection: 2
      held_connections: 120000        # client connections held open, mostly idle
      held_tls: 40000
      held_request_interval: 30s      # each sends one request this often
      tls_traffic_mbit_per_s: 1000    # TLS traffic, both directions (else requests x sizes)
    machine: {cores: 16, memory_gb: 24, fd_limit: 20000}
    deployment: {frontend_processes: 1, backend_processes: 2, local_addresses: 4}

:func:`operations` turns the workload into the rates the cost model knows
(:mod:`bench.capacity.operations`); :func:`profile_of_scenario` makes a profile of a
scenario's load, so the model can be checked against a run of it
(:mod:`bench.capacity.validate`). Every mistake in a profile file is one
:class:`~bench.errors.UserError` naming the file and the field.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .. import paths
from ..errors import UserError, from_validation_error
from ..spec import Scenario, Topology, _Model, parse_duration, read_yaml

SCHEMA_VERSION = 1
#: Where the shipped profiles live.
PROFILES = paths.ROOT / "profiles"
#: Bytes of a request's line and headers the lean engine sends (GET, Host, User-Agent), about.
REQUEST_HEAD_BYTES = 80
#: Bytes of the dummy server's response head (status, content-type, content-length, two X- headers), about.
RESPONSE_HEAD_BYTES = 170


def _duration(v: Any) -> Any:
    return None if v is None else parse_duration(v)


class Workload(_Model):
    """The load at its peak: per second unless said otherwise."""

    connections_per_s: float = Field(0.0, ge=0, description="new client connections per second, plain and TLS")
    tls_connections_per_s: float = Field(0.0, ge=0, description="of them, connections over TLS (one handshake each)")
    resumed_share: float = Field(0.0, ge=0, le=1, description="share of the TLS handshakes that resume a session")
    requests_per_connection: float = Field(1.0, ge=1, description="requests on each new connection")
    held_connections: int = Field(0, ge=0, description="client connections held open (idle keep-alive)")
    held_tls: int = Field(0, ge=0, description="of them, over TLS")
    held_request_interval: float | None = Field(None, description="each held connection sends a request this often; null = none")
    keepalive_requests_per_s: float = Field(0.0, ge=0, description="more requests on long-lived keep-alive connections")
    keepalive_tls_share: float = Field(1.0, ge=0, le=1, description="share of those over TLS")
    request_bytes: float = Field(REQUEST_HEAD_BYTES, ge=0, description="bytes a client sends per request, head included")
    response_bytes: float = Field(1200.0, ge=0, description="bytes sent back per response, head included")
    tls_traffic_mbit_per_s: float | None = Field(None, ge=0, description="TLS traffic, both directions; null = TLS requests x sizes")
    plain_traffic_mbit_per_s: float | None = Field(None, ge=0, description="plain HTTP traffic, both directions; null = plain requests x sizes")
    upload_share: float = Field(0.05, ge=0, le=1, description="share of the traffic given in Mbit/s that clients send")
    connection_lifetime: float = Field(0.1, ge=0, description="how long a new (not held) connection stays open, seconds")
    server_time: float = Field(0.01, ge=0, description="a server's response time: requests in flight = requests/s x this")
    hop_connections: int | None = Field(None, ge=0, description="frontend -> backend connections open at the peak, when known; null = the model's estimate")

    _durations = field_validator("held_request_interval", "connection_lifetime", "server_time", mode="before")(lambda cls, v: _duration(v))

    @model_validator(mode="after")
    def _shares(self) -> Workload:
        if self.tls_connections_per_s > self.connections_per_s:
            raise ValueError(f"tls_connections_per_s ({self.tls_connections_per_s:g}) must not exceed connections_per_s ({self.connections_per_s:g})")
        if self.held_tls > self.held_connections:
            raise ValueError(f"held_tls ({self.held_tls}) must not exceed held_connections ({self.held_connections})")
        if self.held_request_interval is not None and self.held_request_interval <= 0:
            raise ValueError("held_request_interval must be longer than 0s")
        return self


class Machine(_Model):
    """What the load balancer runs on."""

    name: str = ""
    cores: float = Field(gt=0, description="cores (hardware threads) the load balancer may use")
    memory_gb: float | None = Field(None, gt=0, description="memory, GB; null = not known (no memory headroom)")
    fd_limit: int = Field(20_000, ge=100, description="file descriptors per process (hard limit)")
    port_range: int = Field(28_232, ge=1, description="ephemeral ports per (source, destination) pair: ip_local_port_range")
    max_cpu_utilisation: float = Field(0.8, gt=0, le=1, description="plan to keep the cores at most this busy")

    @classmethod
    def here(cls) -> Machine:
        """This machine: its cores, memory, file-descriptor limit and port range (as bench/load/fit.py sees them)."""
        from ..load.fit import Machine as LoadMachine

        m = LoadMachine.here()
        return cls(name="this machine", cores=float(m.cores), memory_gb=_memory_gb(), fd_limit=min(m.fd_limit, 10**9), port_range=m.port_range)


def _memory_gb() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 1.0
    m = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) * 1024 / 1e9 if m else 1.0


class Deployment(_Model):
    """The load balancer's processes and addresses as deployed (what the headroom is measured against)."""

    frontend_processes: int = Field(1, ge=1, le=1024)
    backend_processes: int = Field(2, ge=1, le=1024)
    local_addresses: int = Field(4, ge=1, le=256, description="M: localhost addresses between frontend and backends")
    servers: int = Field(3, ge=1, description="real servers behind the backends")
    server_close: bool = Field(True, description="http-server-close: a new server connection per request")
    key_type: Literal["ecdsa-p256", "rsa-2048"] = "ecdsa-p256"


class Reference(_Model):
    """A figure someone measured for this profile, printed beside the model's answer."""

    text: str
    role: Literal["frontend", "backend", "monolith", "total"] = "frontend"
    cores: float = Field(gt=0, description="cores busy in that figure")
    cpu: str = Field(description="the processor the figure was measured on")


class Profile(_Model):
    """A target profile (``profiles/NAME.yaml``)."""

    schema_version: int = SCHEMA_VERSION
    name: str
    description: str = ""
    workload: Workload
    machine: Machine | None = Field(None, description="null = this machine")
    deployment: Deployment = Deployment()
    reference: Reference | None = None

    def scaled(self, factor: float) -> Profile:
        """The workload's rates, counts and traffic times ``factor`` (sizes, shares and times stay)."""
        if not factor > 0 or not math.isfinite(factor):
            raise UserError(f"--scale {factor:g}: must be greater than 0", "for example --scale 0.05")
        w = self.workload

        def r(v: float | None) -> float | None:
            return None if v is None else v * factor

        update: dict[str, Any] = {
            "connections_per_s": w.connections_per_s * factor,
            "tls_connections_per_s": w.tls_connections_per_s * factor,
            "held_connections": round(w.held_connections * factor),
            "held_tls": round(w.held_tls * factor),
            "keepalive_requests_per_s": w.keepalive_requests_per_s * factor,
            "tls_traffic_mbit_per_s": r(w.tls_traffic_mbit_per_s),
            "plain_traffic_mbit_per_s": r(w.plain_traffic_mbit_per_s),
            "hop_connections": None if w.hop_connections is None else round(w.hop_connections * factor),
        }
        name = self.name if factor == 1 else f"{self.name} x{factor:g}"
        return self.model_copy(update={"workload": w.model_copy(update=update), "name": name})


def operations(w: Workload, deployment: Deployment) -> dict[str, float]:
    """The workload as the cost model's operations (rates per second; ``held_kconn`` a level)."""
    plain_cps = w.connections_per_s - w.tls_connections_per_s
    tls_cps = w.tls_connections_per_s
    held_rate = (w.held_connections / w.held_request_interval) if w.held_request_interval else 0.0
    held_tls_rate = (w.held_tls / w.held_request_interval) if w.held_request_interval else 0.0
    tls_requests = tls_cps * w.requests_per_connection + held_tls_rate + w.keepalive_requests_per_s * w.keepalive_tls_share
    requests = w.connections_per_s * w.requests_per_connection + held_rate + w.keepalive_requests_per_s
    plain_requests = requests - tls_requests

    def traffic(mbit: float | None, reqs: float) -> tuple[float, float]:
        if mbit is not None:
            mb = mbit / 8.0
            return mb * w.upload_share, mb * (1.0 - w.upload_share)
        return reqs * w.request_bytes / 1e6, reqs * w.response_bytes / 1e6

    tls_in, tls_out = traffic(w.tls_traffic_mbit_per_s, tls_requests)
    plain_in, plain_out = traffic(w.plain_traffic_mbit_per_s, plain_requests)
    full = tls_cps * (1.0 - w.resumed_share)
    open_new = w.connections_per_s * w.connection_lifetime
    return {
        "request": requests,
        "tls_request": tls_requests,
        "connection": w.connections_per_s,
        "handshake_full_ecdsa": full if deployment.key_type == "ecdsa-p256" else 0.0,
        "handshake_full_rsa": full if deployment.key_type == "rsa-2048" else 0.0,
        "handshake_resumed": tls_cps * w.resumed_share,
        "mb_in": tls_in + plain_in,
        "mb_out": tls_out + plain_out,
        "tls_mb": tls_in + tls_out,
        "held_kconn": (w.held_connections + open_new) / 1000.0,
        "server_connection": requests if deployment.server_close else 0.0,
        # not costed, used for memory, file descriptors and ports
        "_plain_cps": plain_cps,
        "_client_open": w.held_connections + open_new,
        "_tls_open": w.held_tls + tls_cps * w.connection_lifetime,
        "_in_flight": requests * w.server_time,
    }


def read_profile(name_or_path: str) -> tuple[Profile, Path]:
    """A profile by name (``profiles/NAME.yaml``) or path; one line naming the problem otherwise."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        path = candidate
    else:
        path = PROFILES / f"{name_or_path}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
            raise UserError(f"no profile named {name_or_path!r}", f"use one of: {', '.join(known) or '(none shipped)'}, or a path to a profile YAML")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a profile file", "give a profile YAML file (see profiles/seed-peak.yaml)")
    data = read_yaml(path)
    try:
        return Profile.model_validate(data), path
    except ValidationError as err:
        raise from_validation_error(str(path), err, "fix that field; docs/capacity.md lists every profile field") from None


def list_profiles() -> list[Profile]:
    """The shipped profiles."""
    return [read_profile(str(p))[0] for p in sorted(PROFILES.glob("*.yaml"))]


def profile_of_scenario(scenario: Scenario, topology: Topology, held_interval: float | None) -> Profile:
    """The profile of a scenario's (already scaled) load on its topology, for validating the model with a run of it.

    What the load generator does is spelled out: a TLS connection of a load with
    ``resumption: true`` resumes its user's previous session (only each user's first is
    full); a request of ``path: /?size=N`` gets N bytes back plus the dummy server's head.
    """
    load = scenario.load
    if load.model not in ("connection-rate", "open", "handshake-rate"):
        raise UserError(
            f"scenario {scenario.name}: model {load.model} has no fixed rate to predict",
            "validate with a rate model (connection-rate, open, handshake-rate), such as seed-peak",
        )
    if load.stages or load.find_max is not None:
        raise UserError(f"scenario {scenario.name}: stages and find_max change the rate over the run", "validate with a constant-rate scenario")
    size = _response_size(load.path)
    rpc = max(load.requests_per_connection, 1)
    conns = tls = keepalive = 0.0
    ka_tls = 1.0 if load.scheme == "https" else 0.0
    if load.model == "connection-rate":
        conns = float(load.connections_per_s or 0.0)
        tls = float(load.handshakes_per_s) if load.handshakes_per_s is not None else (conns if load.scheme == "https" else 0.0)
    elif load.model == "handshake-rate":
        conns = tls = float(load.handshakes_per_s or 0.0)
    else:  # open: keep-alive unless requests_per_connection limits it
        if load.requests_per_connection:
            conns = float(load.requests_per_s or 0.0) / rpc
            tls = conns * ka_tls
        else:
            keepalive = float(load.requests_per_s or 0.0)
    held = load.held
    workload = Workload(
        connections_per_s=conns,
        tls_connections_per_s=tls,
        resumed_share=1.0 if load.resumption else 0.0,
        requests_per_connection=float(rpc) if conns else 1.0,
        held_connections=held.connections if held else 0,
        held_tls=held.tls_connections if held else 0,
        held_request_interval=held_interval if held else None,
        keepalive_requests_per_s=keepalive,
        keepalive_tls_share=ka_tls,
        request_bytes=REQUEST_HEAD_BYTES + load.request_body,
        response_bytes=RESPONSE_HEAD_BYTES + size,
        connection_lifetime=0.0,
    )
    lb = topology.lb
    deployment = Deployment(
        frontend_processes=1,
        backend_processes=lb.backend.processes,
        local_addresses=lb.local_addresses,
        servers=topology.servers.count,
        server_close=lb.server_close,
        key_type=topology.tls.key_type,
    )
    return Profile(name=f"{scenario.name} (scenario)", description=scenario.description, workload=workload, machine=None, deployment=deployment)


def _response_size(path: str) -> int:
    m = re.search(r"[?&]size=(\d+)", path)
    return int(m.group(1)) if m else 0
