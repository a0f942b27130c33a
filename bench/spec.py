"""Scenario and topology specs: typed, validated, one error type.

A *topology* (``topology/NAME.yaml``) describes the lab: the LB nodes and their
HAProxy processes, the dummy servers, TLS, keepalived and kernel settings, plus
named *variants* that override parts of it. A *scenario*
(``scenarios/NAME.yaml``) names a topology and variant, the load to drive and
for how long.

Every mistake in either file becomes one :class:`~bench.errors.UserError` whose
message names the file, the field and the fix, for example::

    topology/split.yaml: lb.backend.processes: Input should be greater than or equal to 1 (got 0)
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import paths
from .errors import Problems, UserError
from .inputs import read_text

SCHEMA_VERSION = 1
#: The longest duration any field may ask for (a run, a ramp, a timeout): a week.
MAX_DURATION_S = 7 * 86400

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Parse ``"10s"``, ``"500ms"``, ``"2m"``, ``"1h"`` or a number of seconds into seconds.

    >>> parse_duration("1m")
    60.0
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use for example 500ms, 10s, 2m)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {value!r} (use for example 500ms, 10s, 2m)")
    if seconds < 0:
        raise ValueError(f"duration must not be negative: {value!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration {value!r} is longer than {MAX_DURATION_S // 86400:g} days: split it into several runs")
    return seconds


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` for the values we render into configs (``3s``, ``500ms``)."""
    ms = round(seconds * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


class _Model(BaseModel):
    # allow_inf_nan: no field of a scenario or topology means anything as infinite or NaN
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


Duration = float  # seconds, parsed by the validators below


def _duration_fields(*names: str):
    return field_validator(*names, mode="before")(lambda cls, v: parse_duration(v))


def _must_be_positive(cls: type, v: float) -> float:
    if v <= 0:
        raise ValueError("must be longer than 0s")
    return v


def _positive_fields(*names: str):
    return field_validator(*names)(_must_be_positive)


# --------------------------------------------------------------------------- topology


class Timeouts(_Model):
    """HAProxy timeouts used by every LB process (values like ``30s``)."""

    connect: Duration = 3.0
    client: Duration = 30.0
    server: Duration = 30.0
    http_keep_alive: Duration = 10.0
    http_request: Duration = 10.0
    queue: Duration = 10.0

    parse_durations = _duration_fields("connect", "client", "server", "http_keep_alive", "http_request", "queue")  # type: ignore[pydantic-field]  # a shared validator, not a field


class Process(_Model):
    """One kind of HAProxy process on an LB node."""

    nbthread: int = Field(1, ge=1, le=64)
    cpus: str | None = Field(None, description="cpuset for the container, e.g. '0' or '0-1'; null = no pinning")
    cpu_limit: float | None = Field(None, gt=0, le=64, description="CPU quota of the container in cores (Compose `cpus`), e.g. 0.2; null = none")
    maxconn: int = Field(8000, ge=1, le=1_000_000)

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str) and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", v):
            raise ValueError(f"expected a cpuset like '0', '0-1' or '0,2', got {v!r}")
        return v


class Backend(Process):
    """The backend processes (K of them) behind the frontend in the ``split`` layout."""

    processes: int = Field(2, ge=1, le=16)


class Sysctls(_Model):
    """Kernel settings of each LB node's network namespace."""

    ip_local_port_range: str = "32768 60999"
    tcp_tw_reuse: int = Field(2, ge=0, le=2)

    @field_validator("ip_local_port_range")
    @classmethod
    def _range(cls, v: str) -> str:
        parts = str(v).split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"expected two port numbers like '32768 60999', got {v!r}")
        low, high = (int(p) for p in parts)
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"need 1024 <= low <= high <= 65535, got {v!r}")
        return f"{low} {high}"


#: Where the files of ``lb.haproxy.files`` appear inside every LB HAProxy container.
USER_FILES_MOUNT = "/etc/lbbench-files"
#: HAProxy roles a user's configuration can address (``lb.haproxy.<role>``).
HAPROXY_ROLES = ("all", "frontend", "backend", "monolith")


def _lines(v: Any) -> Any:
    """A section's extra lines: a list of strings, or one block of text (one line per line)."""
    if isinstance(v, str):
        v = v.splitlines()
    if not isinstance(v, list):
        return v
    out = []
    for line in v:
        if not isinstance(line, str):
            raise ValueError(f"expected config lines as text, got {line!r}")
        if "\n" in line.strip():
            raise ValueError(f"one config line per list item, got {line!r}")
        if line.strip():
            out.append(line.strip())
    return out


class HAProxyRole(_Model):
    """A user's configuration for one HAProxy role (docs/own-config.md).

    ``lines`` appends lines to named sections of the role's rendered config
    (``global``, ``defaults``, or a ``frontend``/``backend``/``listen`` name such as
    ``clients`` or ``servers``); ``sections`` appends whole sections to the file;
    ``template`` replaces the role's shipped template with the user's own.
    """

    lines: dict[str, list[str]] = Field(
        default_factory=dict,
        description="section name -> config lines appended to that section, e.g. {clients: ['http-response set-header X-A 1']}",
    )
    sections: str = Field("", description="whole config sections (backend, userlist, ...) appended to the role's file")
    template: str | None = Field(
        None, description="a Jinja template replacing the role's shipped one; a relative path is relative to the file naming it"
    )

    @field_validator("lines", mode="before")
    @classmethod
    def _lines_by_section(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            return v
        out = {}
        for section, lines in v.items():
            name = " ".join(str(section).split())
            if not name:
                raise ValueError("a section name is empty")
            out[name] = _lines(lines if lines is not None else [])
        return out

    @field_validator("sections", mode="before")
    @classmethod
    def _sections(cls, v: Any) -> Any:
        return "" if v is None else v


class HAProxy(_Model):
    """The user's own HAProxy configuration and build (``lb.haproxy``; docs/own-config.md)."""

    image: str | None = Field(
        None,
        description="image whose haproxy binary runs the LB processes (a local tag or one the engine can pull, "
        "e.g. haproxy:3.0); null = the node image's Debian build. keepalived and the dummy servers stay on the node image",
    )
    all: HAProxyRole = Field(HAProxyRole(), description="every LB process (frontend, backends, monolith)")
    frontend: HAProxyRole = Field(HAProxyRole(), description="the split layout's frontend process")
    backend: HAProxyRole = Field(HAProxyRole(), description="each backend process of the split layout")
    monolith: HAProxyRole = Field(HAProxyRole(), description="the monolith layout's one process")
    files: list[str] = Field(
        default_factory=list,
        description=f"files or folders (maps, ACL lists, Lua, error pages) copied to {USER_FILES_MOUNT}/<name> in every "
        "LB HAProxy container; relative paths are relative to the file naming them",
    )

    @model_validator(mode="after")
    def _checks(self) -> HAProxy:
        if self.all.template is not None:
            raise ValueError("all.template: a template replaces one role's file; set frontend, backend or monolith .template")
        names = [Path(f).name for f in self.files]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"files: two files named {twice[0]!r} (each lands in {USER_FILES_MOUNT}/<name>)")
        if self.image is not None and not self.image.strip():
            raise ValueError("image: empty; give an image reference such as haproxy:3.0, or null")
        return self

    def roles_for(self, kind: str) -> tuple[HAProxyRole, ...]:
        """The user configuration that applies to a process of ``kind`` (frontend, backend, monolith): ``all`` first."""
        return (self.all, getattr(self, kind))

    @property
    def customised(self) -> bool:
        """Whether anything is set (the shipped configs are then not what runs)."""
        return self != HAProxy()


class LB(_Model):
    """The load-balancer nodes."""

    layout: Literal["split", "monolith"] = "split"
    nodes: int = Field(2, ge=1, le=2, description="1 = no standby; 2 = lb-a MASTER + lb-b BACKUP")
    frontend: Process = Process()
    backend: Backend = Backend()
    local_addresses: int = Field(4, ge=1, le=16, description="M: 127.0.0.1..M between frontend and backends")
    http_reuse: Literal["never", "safe", "aggressive", "always"] = "always"
    server_close: bool = Field(True, description="option http-server-close towards the servers")
    timeouts: Timeouts = Timeouts()
    sysctls: Sysctls = Sysctls()
    haproxy: HAProxy = Field(HAProxy(), description="the user's own HAProxy configuration and build (docs/own-config.md)")


class Servers(_Model):
    """The dummy servers behind the load balancer."""

    count: int = Field(3, ge=1, le=32)
    maxconn: int = Field(100, ge=1, le=100_000, description="per-server pool size on each backend process")
    nbthread: int = Field(1, ge=1, le=64)


class TLS(_Model):
    """TLS offload at the frontend."""

    key_type: Literal["ecdsa-p256", "rsa-2048"] = "ecdsa-p256"
    resumption: bool = Field(True, description="session cache and tickets on; off = every handshake is full")
    tickets: bool = Field(
        True,
        description="session tickets on the TLS bind; false = `no-tls-tickets`: sessions resume from the "
        "frontend's session cache only (session IDs in TLS 1.2, stateful tickets in TLS 1.3)",
    )
    certificate: str | None = Field(
        None,
        description="your own server certificate (PEM: the certificate, then its intermediates) instead of the run's CA; "
        "needs key and ca too",
    )
    key: str | None = Field(None, description="the private key of `certificate` (PEM, unencrypted); never copied into a report")
    ca: str | None = Field(None, description="the CA certificate(s) (PEM) the clients verify the chain against")
    server_name: str | None = Field(
        None,
        description="with your own certificate: the name the clients send (SNI) and check it against; "
        "default: the certificate's first DNS name",
    )

    @model_validator(mode="after")
    def _own_certificate(self) -> TLS:
        given = [name for name in ("certificate", "key", "ca") if getattr(self, name)]
        if given and len(given) < 3:
            missing = sorted({"certificate", "key", "ca"} - set(given))
            raise ValueError(f"{', '.join(given)} given without {', '.join(missing)}: your own certificate needs all three")
        if self.server_name is not None and not given:
            raise ValueError("server_name: only used with your own certificate (certificate, key, ca)")
        return self

    @property
    def own_certificate(self) -> bool:
        """Whether the user's certificate replaces the run's CA."""
        return self.certificate is not None


class Keepalived(_Model):
    """VRRP between the LB nodes."""

    advert_int: float = Field(1.0, gt=0, le=255)
    virtual_router_id: int = Field(51, ge=1, le=255)
    priority_master: int = Field(
        255, ge=1, le=255, description="lb-a's priority; 255 = the VIP's owner: takes it as soon as its frontend answers, not after the master-down interval"
    )
    priority_backup: int = Field(100, ge=1, le=254)
    preempt: bool = True
    track_frontend: bool = Field(True, description="demote a node whose HAProxy frontend stops answering")

    @model_validator(mode="after")
    def _priorities(self) -> Keepalived:
        if self.priority_backup >= self.priority_master:
            raise ValueError("priority_backup must be lower than priority_master")
        if self.priority_master == 255 and not self.preempt:
            # keepalived drops nopreempt for an address owner: lb-a would take the VIP back anyway
            raise ValueError("priority_master 255 (the VIP's owner) always preempts: with preempt: false set priority_master to 254 or lower")
        return self


class Variant(_Model):
    """A named set of overrides of the base topology."""

    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict)


class Topology(_Model):
    """A lab topology (``topology/*.yaml``)."""

    schema_version: int = SCHEMA_VERSION
    name: str
    description: str = ""
    image: Literal["node", "node-trixie"] = Field("node", description="image flavour: node = Debian 12 (HAProxy 2.6), node-trixie = Debian 13 (HAProxy 3.0)")
    lb: LB = LB()
    servers: Servers = Servers()
    tls: TLS = TLS()
    keepalived: Keepalived = Keepalived()
    variants: dict[str, Variant] = Field(default_factory=dict)


# --------------------------------------------------------------------------- scenario


#: Load models (``load.model``); see README "Load models".
LoadModel = Literal["keep-alive", "open", "connection-rate", "handshake-rate"]
#: Models paced by a schedule of intended send times (open loop), as opposed to N users in a closed loop.
RATE_MODELS = ("open", "connection-rate", "handshake-rate")
#: The field each model's target is given in (also the key of ``load.target`` in summary.json).
TARGET_FIELDS = {
    "keep-alive": "users",
    "open": "requests_per_s",
    "connection-rate": "connections_per_s",
    "handshake-rate": "handshakes_per_s",
}


class Stage(_Model):
    """One stage of ``load.stages``: the model's target over ``duration``.

    A stage sets the model's target field (``users`` for keep-alive,
    ``requests_per_s`` for open, ``connections_per_s`` for connection-rate,
    ``handshakes_per_s`` for handshake-rate). With ``ramp: true`` the target
    moves linearly from the previous stage's (0 before the first stage) to this
    one over the stage; otherwise it steps there at once and holds.
    """

    duration: Duration
    ramp: bool = False
    users: int | None = Field(None, ge=0, le=100_000)
    requests_per_s: float | None = Field(None, ge=0)
    connections_per_s: float | None = Field(None, ge=0)
    handshakes_per_s: float | None = Field(None, ge=0)

    parse_durations = _duration_fields("duration")  # type: ignore[pydantic-field]  # a shared validator, not a field

    check_positive = _positive_fields("duration")  # type: ignore[pydantic-field]  # a shared validator, not a field

    def target(self, field: str) -> float | None:
        value = getattr(self, field)
        return None if value is None else float(value)


class FindMax(_Model):
    """``load.find_max``: search the highest rate within bounds, then hold a plateau at a fraction of it.

    Steps start at ``start`` and grow by ``growth`` until one fails (errors above
    ``error_pct``, p99 above ``p99_ms``, or less than 95 % of the target sent);
    then the rate is bisected between the last good and the first bad step until
    they are within ``precision`` of each other. The plateau (``plateau`` long,
    at ``fraction`` x the highest good rate) is the run's steady window.
    """

    start: float = Field(gt=0, description="target of the first step, in the model's unit")
    limit: float | None = Field(None, gt=0, description="highest target tried; null = no limit")
    growth: float = Field(2.0, gt=1.0, le=10.0)
    precision: float = Field(0.1, gt=0, lt=1, description="stop bisecting when (bad - good) / good is at most this")
    step: Duration = Field(5.0, description="length of one search step")
    settle: Duration = Field(1.0, description="seconds at the start of each step left out of its verdict")
    p99_ms: float = Field(200.0, gt=0, description="bound on the step's p99 latency (from the intended send time)")
    error_pct: float = Field(1.0, ge=0, le=100, description="bound on the step's failed requests, %")
    fraction: float = Field(0.7, gt=0, le=1, description="the plateau runs at this fraction of the highest good rate")
    plateau: Duration = Field(10.0, description="length of the plateau at the end of the run")

    parse_durations = _duration_fields("step", "settle", "plateau")  # type: ignore[pydantic-field]  # a shared validator, not a field

    @model_validator(mode="after")
    def _times(self) -> FindMax:
        if self.step <= 0 or self.plateau <= 0:
            raise ValueError("step and plateau must be longer than 0s")
        if self.settle >= self.step:
            raise ValueError(f"settle ({self.settle:g}s) must be shorter than step ({self.step:g}s)")
        if self.limit is not None and self.limit < self.start:
            raise ValueError(f"limit ({self.limit:g}) must not be below start ({self.start:g})")
        return self


class Held(_Model):
    """``load.held``: N mostly idle keep-alive connections, established and held while the model runs.

    They are spread over the load-generator processes; each sends one request
    every ``interval`` (jittered) so HAProxy's ``timeout http-keep-alive`` does
    not close it, and is re-opened when it closes anyway.
    """

    connections: int = Field(ge=1, le=10_000_000, description="connections to hold, all processes together")
    tls: bool | int = Field(
        True,
        description="true = all over TLS (VIP:443); false = all plain HTTP (VIP:80); a number = that many of them TLS",
    )
    interval: Duration | None = Field(
        None,
        description="one request per held connection this often; null = half of the topology's "
        "lb.timeouts.http_keep_alive",
    )
    rate: float = Field(500.0, gt=0, description="new held connections per second while establishing them (all processes)")
    path: str | None = Field(None, description="request path of the held connections; null = load.path")
    resumption: bool = Field(True, description="resume the process's last TLS session when opening a held connection")

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _tls(self) -> Held:
        if not isinstance(self.tls, bool) and not 0 <= self.tls <= self.connections:
            raise ValueError(f"tls ({self.tls}) must be between 0 and connections ({self.connections})")
        if self.interval is not None and self.interval <= 0:
            raise ValueError("interval must be longer than 0s")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        return self

    @property
    def tls_connections(self) -> int:
        """How many of the held connections use TLS."""
        if isinstance(self.tls, bool):
            return self.connections if self.tls else 0
        return int(self.tls)


class Load(_Model):
    """The load a scenario drives through the VIP (README "Load models" describes each model)."""

    engine: Literal["fasthttp", "lean"] = Field(
        "fasthttp",
        description="fasthttp = Locust FastHttpUser; lean = bench.load.lean.LeanHttpsUser (plain sockets + ssl, "
        "several times cheaper per request; see docs/load-engine.md). Every model but keep-alive needs lean "
        "(and gets it when engine is not given)",
    )
    model: LoadModel = Field(
        "keep-alive",
        description="keep-alive = N users in a closed loop; open = requests/s on keep-alive connections; "
        "connection-rate = new connections/s with R requests each; handshake-rate = new TLS connections/s",
    )
    scheme: Literal["https", "http"] = "https"
    users: int = Field(
        20,
        ge=1,
        le=100_000,
        description="keep-alive: users (one connection each); rate models: the pool of connections that may be "
        "busy at once (a send that finds none free waits and is counted late)",
    )
    spawn_rate: float = Field(20.0, gt=0)
    path: str = "/?size=1024"
    think_time: Duration = 0.0
    processes: int | Literal["auto"] = Field(
        1,
        description="Locust processes on this machine; auto = one per core, more when held connections need "
        "the file descriptors",
    )
    timeout: Duration = Field(5.0, gt=0, description="response timeout: from sending a request to the end of its response")
    connect_timeout: Duration = Field(5.0, gt=0, description="lean engine: TCP connect + TLS handshake timeout")
    requests_per_connection: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="lean engine: requests on one connection before it is closed (the last one says "
        "`Connection: close`) and the next request opens a new one; 0 = unlimited keep-alive, "
        "1 = a new connection (and TLS handshake) per request. connection-rate and handshake-rate: R, default 1",
    )
    resumption: bool = Field(
        True,
        description="lean engine: offer the TLS session of the user's previous connection when it reconnects "
        "(resumed handshake); false = every new connection does a full handshake",
    )
    request_body: int = Field(
        0,
        ge=0,
        le=16 * 1024 * 1024,
        description="lean engine: bytes of a POST body sent with every request (client -> server traffic); "
        "0 = a GET without a body",
    )
    tls_version: Literal["1.2", "1.3"] | None = Field(
        None, description="lean engine: highest TLS version offered (1.2 = classic session IDs when tickets are off); null = 1.3"
    )
    requests_per_s: float | None = Field(None, gt=0, description="open: target requests per second, all processes")
    connections_per_s: float | None = Field(None, gt=0, description="connection-rate: target new connections per second")
    handshakes_per_s: float | None = Field(
        None,
        gt=0,
        description="handshake-rate: target new TLS connections per second (full or resumed per `resumption`); "
        "connection-rate: how many of connections_per_s are TLS (VIP:443), the rest plain HTTP (VIP:80)",
    )
    stages: list[Stage] = Field(default_factory=list, description="the target over time: steps, ramps, plateaus")
    find_max: FindMax | None = Field(None, description="search the highest rate within bounds, then hold a plateau")
    held: Held | None = Field(None, description="idle keep-alive connections held while the model runs")
    trace_every: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="requests traced through every hop (an X-Lbbench-Id header; each HAProxy process logs its "
        "timers for them): 1 in N; 0 = none; null = automatic (N follows each load-generator process's rate so that "
        "about 100 requests/s per process are traced; 1 in 20 in the first second)",
    )
    max_lag: Duration = Field(
        1.0,
        gt=0,
        description="rate models: a send more than this late (no free connection, or the generator too busy) "
        "is dropped and counted instead of sent",
    )

    parse_durations = _duration_fields("think_time", "timeout", "connect_timeout", "max_lag")  # type: ignore[pydantic-field]  # a shared validator, not a field

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_model(cls, data: Any) -> Any:
        """Rate models and held connections run on the lean engine; connection models open one connection per request by default."""
        if not isinstance(data, dict):
            return data
        model = data.get("model", "keep-alive")
        out = dict(data)
        if (model in RATE_MODELS or out.get("held")) and "engine" not in out:
            out["engine"] = "lean"
        if model in ("connection-rate", "handshake-rate") and "requests_per_connection" not in out:
            out["requests_per_connection"] = 1
        return out

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("expected a number of processes or 'auto'")
        if isinstance(v, int) and not 1 <= v <= 64:
            raise ValueError(f"must be between 1 and 64 (or 'auto'), got {v}")
        return v

    @field_validator("processes")
    @classmethod
    def _processes_in_range(cls, v: Any) -> Any:
        # a value that only became an int here ("0", 0.0) was not checked above
        if isinstance(v, int) and not 1 <= v <= 64:
            raise ValueError(f"must be between 1 and 64 (or 'auto'), got {v}")
        return v

    @model_validator(mode="after")
    def _engine_fields(self) -> Load:
        # Only what differs from its default counts: a Load dumped and validated again
        # (the Locust process does that) marks every field as set.
        fields = type(self).model_fields
        lean_only = {
            name
            for name in ("connect_timeout", "requests_per_connection", "resumption", "tls_version", "held", "request_body")
            if name in self.model_fields_set and getattr(self, name) != fields[name].get_default(call_default_factory=True)
        }
        if self.engine != "lean" and lean_only:
            raise ValueError(f"{', '.join(sorted(lean_only))}: only the lean engine supports this; set engine: lean")
        if self.model in RATE_MODELS and self.engine != "lean":
            raise ValueError(f"model {self.model} runs on the lean engine only; set engine: lean (or leave engine out)")
        return self

    @model_validator(mode="after")
    def _model_fields(self) -> Load:
        field = TARGET_FIELDS[self.model]
        rate_fields = {"requests_per_s", "connections_per_s", "handshakes_per_s"}
        allowed = {field} | ({"handshakes_per_s"} if self.model == "connection-rate" else set())
        stray = sorted((rate_fields - allowed) & {f for f in rate_fields if getattr(self, f) is not None})
        if stray:
            raise ValueError(f"{', '.join(stray)}: not a field of model {self.model} (its target is {field})")
        if self.model in RATE_MODELS:
            if getattr(self, field) is None and not self.stages and self.find_max is None:
                raise ValueError(f"model {self.model} needs a target: set {field} (or stages, or find_max)")
            if self.think_time:
                raise ValueError(f"think_time: not used by model {self.model} (its schedule sets when requests go out)")
        elif self.find_max is not None:
            raise ValueError("find_max searches a rate: use model open, connection-rate or handshake-rate")
        if self.model in ("connection-rate", "handshake-rate") and self.requests_per_connection < 1:
            raise ValueError(f"requests_per_connection must be at least 1 for model {self.model} (0 = unlimited keeps one connection)")
        if self.model == "handshake-rate" and self.scheme != "https":
            raise ValueError("model handshake-rate needs scheme: https")
        if self.model == "connection-rate" and self.handshakes_per_s is not None:
            if self.connections_per_s is not None and self.handshakes_per_s > self.connections_per_s:
                raise ValueError(f"handshakes_per_s ({self.handshakes_per_s:g}) must not exceed connections_per_s ({self.connections_per_s:g})")
            if self.connections_per_s is None:
                raise ValueError("handshakes_per_s (the TLS share of connection-rate) needs connections_per_s")
        if self.stages and self.find_max is not None:
            raise ValueError("stages and find_max both given: find_max makes its own steps")
        for i, stage in enumerate(self.stages):
            set_targets = [f for f in ("users", *rate_fields) if getattr(stage, f) is not None]
            if set_targets != [field]:
                raise ValueError(f"stages.{i}: set exactly the model's target, {field} (got {', '.join(set_targets) or 'none'})")
        return self

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"must start with '/', got {v!r}")
        return v

    @property
    def target_field(self) -> str:
        """The field this model's target is given in."""
        return TARGET_FIELDS[self.model]

    @property
    def is_rate(self) -> bool:
        """Whether this is an open-loop (paced) model."""
        return self.model in RATE_MODELS

    def scaled(self, factor: float) -> Load:
        """This load with every count and rate multiplied by ``factor`` (``bench run --scale``)."""

        def rate(v: float | None) -> float | None:
            return None if v is None else max(v * factor, 0.001)

        def count(v: int) -> int:
            return max(1, round(v * factor))

        update: dict[str, Any] = {
            "requests_per_s": rate(self.requests_per_s),
            "connections_per_s": rate(self.connections_per_s),
            "handshakes_per_s": rate(self.handshakes_per_s),
            "users": min(count(self.users), 100_000),
        }
        if self.stages:
            update["stages"] = [
                s.model_copy(
                    update={
                        "users": None if s.users is None else count(s.users),
                        "requests_per_s": rate(s.requests_per_s),
                        "connections_per_s": rate(s.connections_per_s),
                        "handshakes_per_s": rate(s.handshakes_per_s),
                    }
                )
                for s in self.stages
            ]
        if self.find_max is not None:
            update["find_max"] = self.find_max.model_copy(
                update={"start": rate(self.find_max.start), "limit": rate(self.find_max.limit)}
            )
        if self.held is not None:
            held_update: dict[str, Any] = {"connections": count(self.held.connections), "rate": rate(self.held.rate)}
            if not isinstance(self.held.tls, bool):
                held_update["tls"] = min(round(self.held.tls * factor), held_update["connections"])
            update["held"] = self.held.model_copy(update=held_update)
        return self.model_copy(update=update)


FaultKind = Literal["crash", "freeze", "link-down", "keepalived-stop", "haproxy-kill", "backend-kill", "server-kill"]


class Fault(_Model):
    """One fault a scenario injects during the load (see bench/faults.py for each kind)."""

    kind: FaultKind
    at: Duration = Field(description="seconds after the load started")
    target: str = Field("master", description="master | backup | lb-a | lb-b | a service such as lb-a-backend1 or srv1")
    recover_after: Duration | None = Field(None, description="undo the fault this long after injecting it; null = never")

    parse_durations = _duration_fields("at")  # type: ignore[pydantic-field]  # a shared validator, not a field

    @field_validator("recover_after", mode="before")
    @classmethod
    def _recover(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)


class Repeat(_Model):
    """How a scenario's fault cycle repeats with ``--repeat N``."""

    every: Duration = Field(30.0, description="cycle length: cycle i shifts every fault by i * every")

    parse_durations = _duration_fields("every")  # type: ignore[pydantic-field]  # a shared validator, not a field

    check_positive = _positive_fields("every")  # type: ignore[pydantic-field]  # a shared validator, not a field


class Scenario(_Model):
    """A runnable scenario (``scenarios/*.yaml``)."""

    schema_version: int = SCHEMA_VERSION
    name: str
    description: str = ""
    topology: str = "split"
    variant: str | None = None
    duration: Duration = 30.0
    ramp_up: Duration = 2.0
    locustfile: str | None = Field(None, description="relative to scenarios/; default bench/load/locustfile.py")
    load: Load = Load()
    faults: list[Fault] = Field(default_factory=list)
    repeat: Repeat = Repeat()
    overrides: dict[str, Any] = Field(default_factory=dict, description="topology fields this scenario always changes")
    variants: dict[str, Variant] = Field(default_factory=dict, description="variants of this scenario; they win over the topology's")
    scalable: bool = Field(
        False,
        description="the load's counts and rates are production figures: `bench run --scale F` multiplies them "
        "(default: the largest scale that fits the machine, see bench/load/fit.py)",
    )
    thresholds: dict[str, Any] = Field(
        default_factory=dict,
        description='SLOs checked against summary.json at the end, k6 style: {latency_ms.p99: "< 50"} (docs/thresholds.md)',
    )

    parse_durations = _duration_fields("duration", "ramp_up")  # type: ignore[pydantic-field]  # a shared validator, not a field

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            return v  # nothing to check: spares `bench run`'s start the summary models' import (0.3-0.6 s)
        from .thresholds import parse_thresholds

        parse_thresholds(v)  # one line naming the metric or expression, with "did you mean"
        return v

    @model_validator(mode="after")
    def _faults_fit(self) -> Scenario:
        for i, fault in enumerate(self.faults):
            if fault.at >= self.duration:
                raise ValueError(f"faults.{i}.at ({fault.at:g}s) must be before the end of the load ({self.duration:g}s)")
        return self

    @model_validator(mode="after")
    def _find_max_fits(self) -> Scenario:
        fm = self.load.find_max
        if fm is not None and self.duration < fm.plateau + 2 * fm.step:
            raise ValueError(
                f"duration ({self.duration:g}s) is too short for find_max: the plateau ({fm.plateau:g}s) "
                f"plus at least two steps ({fm.step:g}s each)"
            )
        return self

    def scaled(self, factor: float) -> Scenario:
        """This scenario with the load's counts and rates multiplied by ``factor`` (see :meth:`Load.scaled`)."""
        if factor <= 0:
            raise UserError(f"--scale {factor:g}: must be greater than 0", "for example --scale 0.02")
        return self.model_copy(update={"load": self.load.scaled(factor)})

    def with_repeats(self, repeats: int) -> Scenario:
        """This scenario with its fault cycle repeated ``repeats`` times (the load lengthened to fit)."""
        if repeats <= 1 or not self.faults:
            return self
        cycle = max(f.at + (f.recover_after or 0.0) for f in self.faults)
        if cycle > self.repeat.every:
            raise UserError(
                f"scenario {self.name}: repeat.every ({self.repeat.every:g}s) is shorter than one fault cycle ({cycle:g}s)",
                "raise repeat.every in the scenario",
            )
        faults = [f.model_copy(update={"at": f.at + i * self.repeat.every}) for i in range(repeats) for f in self.faults]
        duration = self.duration + (repeats - 1) * self.repeat.every
        return self.model_copy(update={"faults": faults, "duration": duration})

    check_positive = _positive_fields("duration")  # type: ignore[pydantic-field]  # a shared validator, not a field


# --------------------------------------------------------------------------- loading


def _model_at(model: Any, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (dict keys and list indexes stepped over)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X`` out of ``X | None``, ``list[X]`` and ``dict[str, X]`` (one level each, as configs nest them)."""
    import typing

    for _ in range(3):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
        if origin in (list, dict) and args:
            annotation = args[-1]
        elif len(args) == 1:
            annotation = args[0]
        else:
            break
    return annotation


def did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """``"; did you mean 'x'?"`` for an unknown field at ``loc`` of ``model``, or ``""``."""
    import difflib

    holder = _model_at(model, loc[:-1])
    if holder is None or not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(holder.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def validation_problems(source: str, err: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """Every error of ``err`` as ``(problem, fix)``, naming the file and the field (and the closest field for a misspelt one)."""
    out: list[tuple[str, str]] = []
    for error in err.errors():
        loc = tuple(error["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = error["msg"]
        fix = "correct that field; docs/scenarios.md and docs/lab.md list every field"
        if error["type"] == "extra_forbidden":
            hint = did_you_mean(model, loc) if model is not None else ""
            msg = "unknown field" + hint
            if hint:
                fix = "rename the field"
        elif error["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif "input" in error and error["type"] not in ("missing",):
            shown = error["input"]
            if not isinstance(shown, dict | list):
                text = repr(shown)
                msg = f"{msg} (got {text[:60] + '...' if len(text) > 60 else text})"
        problem = (f"{source}: {where}: {msg}", fix)
        if problem not in out:
            out.append(problem)
    return out


def format_validation_error(source: str, err: ValidationError, model: type[BaseModel] | None = None) -> UserError:
    """A :class:`~bench.errors.Problems` listing every validation error of ``err`` (one line each)."""
    return Problems(validation_problems(source, err, model))


def read_yaml(path: Path) -> dict[str, Any]:
    text = read_text(path, "YAML file", "check the name; `bench scenarios` lists what ships")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise UserError(f"{path}{where}: not valid YAML ({problem})", "fix the YAML syntax") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a scenario or topology", "see scenarios/smoke.yaml for the shape") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level", "see scenarios/smoke.yaml for the shape")
    version = data.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise UserError(
            f"{path}: schema_version {version} is newer than this lbbench understands ({SCHEMA_VERSION})",
            "upgrade lbbench",
        )
    return data


def relname(path: Path) -> str:
    """``path`` relative to the lbbench root when it is inside it (for messages)."""
    try:
        return str(path.resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def _resolve(name_or_path: str, folder: Path, kind: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return candidate
    path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise UserError(f"no {kind} named {name_or_path!r}", f"use one of: {', '.join(known) or '(none shipped)'}")
    return path


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in recursively (mappings merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: Topology fields holding paths of the user's files; a relative one is relative to the file that sets it.
PATH_FIELDS: tuple[tuple[str, ...], ...] = (
    *(("lb", "haproxy", role, "template") for role in HAPROXY_ROLES),
    ("lb", "haproxy", "files"),
    ("tls", "certificate"),
    ("tls", "key"),
    ("tls", "ca"),
)


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value.strip():
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else Path(os.path.normpath(base / path)))
    return value


def resolve_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    """``layer`` (a topology, or overrides of one) with every path of :data:`PATH_FIELDS` made absolute against ``base``.

    Each layer is resolved against its own file before layers merge, so a
    scenario's ``overrides`` name files next to the scenario and a topology's next
    to the topology; ``--set`` values are relative to the working directory.
    """
    out = copy.deepcopy(layer)
    for fieldpath in PATH_FIELDS:
        cursor: Any = out
        for key in fieldpath[:-1]:
            cursor = cursor.get(key) if isinstance(cursor, dict) else None
        last = fieldpath[-1]
        if not isinstance(cursor, dict) or last not in cursor:
            continue
        value = cursor[last]
        cursor[last] = [_absolute(v, base) for v in value] if isinstance(value, list) else _absolute(value, base)
    return out


def resolve_variant_paths(variants: Any, base: Path) -> Any:
    """A ``variants`` mapping with each variant's overrides resolved against ``base`` (see :func:`resolve_paths`)."""
    if not isinstance(variants, dict):
        return variants
    out = {}
    for name, body in variants.items():
        if isinstance(body, dict) and isinstance(body.get("overrides"), dict):
            out[name] = {**body, "overrides": resolve_paths(body["overrides"], base)}
        else:
            out[name] = body
    return out


def parse_set(assignment: str) -> dict[str, Any]:
    """Turn ``--set lb.backend.processes=4`` into ``{"lb": {"backend": {"processes": 4}}}``.

    The value is parsed as YAML, so ``true``, ``4`` and ``"32768 60999"`` keep their types.
    """
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise UserError(f"--set {assignment!r}: expected KEY=VALUE with a dotted key", "for example --set lb.backend.processes=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    cursor = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return out


def load_topology(
    name_or_path: str,
    variant: str | None = None,
    sets: list[str] | None = None,
    base_overrides: dict[str, Any] | None = None,
    extra_variants: dict[str, Variant] | None = None,
) -> tuple[Topology, dict[str, Any]]:
    """Load a topology, apply overrides, a variant and ``--set`` overrides, validate.

    Order: the topology file, then ``base_overrides`` (a scenario's ``overrides``),
    then the variant (``extra_variants``, a scenario's own, win over the
    topology's), then each ``--set``. Returns the validated topology and the
    overrides that were applied on top of the file (for run.json).
    """
    path = _resolve(name_or_path, paths.TOPOLOGY, "topology")
    source = relname(path)
    raw = resolve_paths(read_yaml(path), path.parent)
    if "variants" in raw:
        raw["variants"] = resolve_variant_paths(raw["variants"], path.parent)
    try:
        base = Topology.model_validate(raw)
    except ValidationError as err:
        raise format_validation_error(source, err, Topology) from None
    overrides: dict[str, Any] = deep_merge({}, base_overrides or {})
    variants = {**base.variants, **(extra_variants or {})}
    if variant:
        if variant not in variants:
            raise UserError(
                f"{source}: no variant named {variant!r}",
                f"use one of: {', '.join(sorted(variants)) or '(none declared)'}",
            )
        overrides = deep_merge(overrides, variants[variant].overrides)
    for assignment in sets or []:
        overrides = deep_merge(overrides, resolve_paths(parse_set(assignment), Path.cwd()))
    if "variants" in overrides or "name" in overrides:
        raise UserError(f"{source}: overrides may not change 'name' or 'variants'", "override topology fields only")
    merged = deep_merge(raw, overrides)
    try:
        topo = Topology.model_validate(merged)
    except ValidationError as err:
        label = f"variant {variant!r}" if variant else ("--set" if sets else "scenario overrides")
        raise format_validation_error(f"{source} ({label})", err, Topology) from None
    return topo, overrides


def read_scenario_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A scenario's YAML with ``extends: OTHER`` resolved (OTHER's fields, then this file's on top)."""
    raw = read_yaml(path)
    if isinstance(raw.get("overrides"), dict):
        raw["overrides"] = resolve_paths(raw["overrides"], path.parent)
    if "variants" in raw:
        raw["variants"] = resolve_variant_paths(raw["variants"], path.parent)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise UserError(f"{relname(path)}: extends: expected a scenario name", "for example extends: failover")
    base_path = _resolve(parent, paths.SCENARIOS, "scenario")
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise UserError(f"{relname(path)}: extends {parent!r} loops back", "break the cycle of extends")
    return deep_merge(read_scenario_yaml(base_path, (*seen, path.resolve())), raw)


def scenario_file(name_or_path: str) -> Path | None:
    """The file a scenario name or path refers to, or None when there is none."""
    try:
        path = _resolve(name_or_path, paths.SCENARIOS, "scenario")
    except UserError:
        return None
    return path if path.is_file() else None


def load_scenario(name_or_path: str, duration: str | None = None) -> tuple[Scenario, Path]:
    """Load and validate a scenario; ``duration`` (e.g. ``"10s"``) overrides the file's."""
    path = _resolve(name_or_path, paths.SCENARIOS, "scenario")
    source = relname(path)
    raw = read_scenario_yaml(path)
    if duration is not None:
        try:
            parse_duration(duration)
        except ValueError as exc:
            raise UserError(f"--duration: {exc}", "use for example --duration 10s") from None
        raw = {**raw, "duration": duration}
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as err:
        raise format_validation_error(source, err, Scenario) from None
    if scenario.ramp_up >= scenario.duration:
        raise UserError(
            f"{source}: ramp_up ({scenario.ramp_up:g}s) must be shorter than duration ({scenario.duration:g}s)",
            "lengthen --duration or shorten ramp_up",
        )
    return scenario, path


def list_scenarios() -> list[Scenario]:
    """Every shipped scenario, validated (a broken one raises)."""
    return [load_scenario(str(p))[0] for p in sorted(paths.SCENARIOS.glob("*.yaml"))]


def scenario_topology(
    scenario: Scenario, variant: str | None = None, sets: list[str] | None = None
) -> tuple[Topology, dict[str, Any]]:
    """The topology a scenario runs on, with its overrides, the variant and ``--set`` applied."""
    return load_topology(scenario.topology, variant, sets, scenario.overrides, scenario.variants)


def variant_names(scenario: Scenario) -> list[str]:
    """Every variant a scenario can run: its own and its topology's."""
    path = _resolve(scenario.topology, paths.TOPOLOGY, "topology")
    raw = read_yaml(path)
    return sorted({*(raw.get("variants") or {}), *scenario.variants})
