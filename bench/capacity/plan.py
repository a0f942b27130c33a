"""Which steps the capacity sweep runs: phases (a lab each), groups (a load generator each), stages (one rate each).

Every group drives one operation at a few fixed rates with the project's own load models
(README "Load models"): ``open`` for keep-alive requests and large bodies,
``connection-rate`` for plain new connections, ``handshake-rate`` for full and resumed
TLS handshakes, held connections on top of a light ``open`` load. Each rate is a stage
of the group's schedule; the measuring window of a stage leaves out its first
:data:`SETTLE_S` seconds and its last :data:`TAIL_S`.

Two labs, so that every operation varies on its own somewhere:

- ``base`` (the topology as given: ECDSA key, ``http-server-close``): held TLS
  connections first (memory is measured on a fresh lab: HAProxy keeps freed memory in
  its pools), then keep-alive requests over TLS and plain, plain new connections, full
  and resumed handshakes, megabytes out (TLS, plain) and in (TLS);
- ``rsa-reuse`` (RSA-2048 key, keep-alive to the servers): held plain connections first,
  full RSA handshakes, keep-alive requests without a new server connection each (what
  separates the cost of a server connection from the cost of a request).

The rates fit the 2-core lab machine with the load generator on it (its lean engine
costs, bench/load/fit.py ``COST_S``); :data:`QUICK` is a tiny sweep for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Seconds at the start of a stage left out of its window (the rate has just changed).
SETTLE_S = 2.5
#: Seconds at the end of a stage left out.
TAIL_S = 0.5
#: The schedule starts this long after the load generator said it is up (it waits at its start gate).
GO_LEAD_S = 1.5
#: Seconds of the load generator's run before its schedule (its duration covers them): its run time counts
#: from its start gate, which opens GO_LEAD_S before the schedule (it was 4 s when Locust started unguarded).
LEAD_S = GO_LEAD_S
#: Seconds a load generator may take to come up (a busy machine takes several).
READY_TIMEOUT_S = 60.0
#: Seconds of no load measured at the start of each lab (the idle intercept).
IDLE_S = 6.0


@dataclass(frozen=True)
class Group:
    """One load generator run: a load (scenario ``load:`` fields) at a few rates, one stage each."""

    name: str
    description: str
    load: dict[str, Any]
    targets: tuple[float, ...]
    #: share of the requests (and bytes) sent over TLS
    tls_share: float
    #: held connections: the first stage opens them (not measured), the second holds them
    held: bool = False
    #: stage length (None: the sweep's)
    stage_s: float | None = None


@dataclass(frozen=True)
class Phase:
    """One lab: topology overrides on top of the sweep's topology, and its groups in order."""

    name: str
    description: str
    overrides: dict[str, Any]
    groups: tuple[Group, ...]
    key_type: str = "ecdsa-p256"
    notes: tuple[str, ...] = field(default_factory=tuple)


def _open(scheme: str, path: str = "/?size=1024", users: int = 100, **more: Any) -> dict[str, Any]:
    return {"model": "open", "scheme": scheme, "path": path, "users": users, "processes": "auto", **more}


def _held(tls: bool, connections: int, rate: float) -> Group:
    kind = "TLS" if tls else "plain"
    return Group(
        name=f"held-{kind.lower()}",
        description=f"{connections} held {kind} connections (opened at {rate:g}/s) beside 20 requests/s",
        load=_open(
            "https" if tls else "http",
            users=20,
            held={"connections": connections, "tls": tls, "rate": rate, "interval": "30s"},
        ),
        targets=(20.0, 20.0),
        tls_share=1.0 if tls else 0.0,
        held=True,
    )


#: The full sweep (about 8 minutes on the 2-core lab machine at 10 s per stage).
FULL = (
    Phase(
        "base",
        "the topology as given",
        {},
        (
            _held(True, 3000, 400.0),
            Group("keepalive-tls", "keep-alive HTTPS requests, 1 kB responses", _open("https"), (300.0, 900.0, 1800.0), 1.0),
            Group("keepalive-plain", "keep-alive HTTP requests, 1 kB responses", _open("http"), (600.0, 1800.0), 0.0),
            Group(
                "connections-plain",
                "new plain connections, one request each",
                {"model": "connection-rate", "scheme": "http", "requests_per_connection": 1, "users": 200, "processes": "auto", "path": "/?size=1024"},
                (150.0, 400.0, 800.0),
                0.0,
            ),
            Group(
                "handshakes-full",
                "full TLS handshakes (no resumption), one request each",
                {"model": "handshake-rate", "resumption": False, "requests_per_connection": 1, "users": 150, "processes": "auto", "path": "/?size=1024"},
                (60.0, 120.0, 200.0, 280.0),
                1.0,
            ),
            Group(
                "handshakes-resumed",
                "resumed TLS handshakes (session tickets), one request each",
                {"model": "handshake-rate", "resumption": True, "requests_per_connection": 1, "users": 150, "processes": "auto", "path": "/?size=1024"},
                (100.0, 250.0, 450.0),
                1.0,
            ),
            Group("mb-out-tls", "256 kB responses over TLS", _open("https", "/?size=262144", users=50), (15.0, 40.0, 70.0), 1.0),
            Group("mb-out-plain", "256 kB responses over plain HTTP", _open("http", "/?size=262144", users=50), (15.0, 40.0, 70.0), 0.0),
            Group("mb-in-tls", "64 kB request bodies (POST) over TLS", _open("https", "/?size=0", users=50, request_body=65536), (50.0, 150.0, 300.0), 1.0),
        ),
    ),
    Phase(
        "rsa-reuse",
        "RSA-2048 server key; keep-alive towards the servers (no http-server-close)",
        {"tls": {"key_type": "rsa-2048"}, "lb": {"server_close": False}},
        (
            _held(False, 5000, 600.0),
            Group(
                "handshakes-rsa",
                "full TLS handshakes with the RSA-2048 key, one request each",
                {"model": "handshake-rate", "resumption": False, "requests_per_connection": 1, "users": 150, "processes": "auto", "path": "/?size=1024"},
                (30.0, 60.0, 100.0, 140.0),
                1.0,
            ),
            Group("keepalive-reuse", "keep-alive HTTPS requests, server connections reused", _open("https"), (300.0, 900.0, 1800.0), 1.0),
        ),
        key_type="rsa-2048",
    ),
)

#: A tiny sweep (one lab, short stages) for the integration test: exercises every part, fits little.
QUICK = (
    Phase(
        "base",
        "the topology as given",
        {},
        (
            _held(True, 200, 200.0),
            Group("keepalive-tls", "keep-alive HTTPS requests", _open("https", users=20), (100.0, 300.0), 1.0),
            Group(
                "connections-plain",
                "new plain connections, one request each",
                {"model": "connection-rate", "scheme": "http", "requests_per_connection": 1, "users": 50, "processes": 1, "path": "/?size=1024"},
                (50.0, 150.0),
                0.0,
            ),
        ),
    ),
)

PLANS = {"full": FULL, "quick": QUICK}


def group_duration(group: Group, stage_s: float) -> float:
    """Seconds of a group's schedule."""
    return len(group.targets) * (group.stage_s or stage_s)


def plan_seconds(plan: tuple[Phase, ...], stage_s: float, lab_s: float = 12.0) -> float:
    """About how long a sweep takes: labs up and down, idle windows, every group's lead and stages."""
    total = 0.0
    for phase in plan:
        total += lab_s + IDLE_S
        for g in phase.groups:
            total += LEAD_S + group_duration(g, stage_s) + 2.0
    return total
