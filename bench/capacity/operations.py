"""The operations the capacity model costs, and which process role pays for which.

Every operation is a column of the step table (:mod:`.measure`) and a regressor of the
fit (:mod:`.fit`): a rate per second, except ``held_kconn`` (a level: thousands of
client connections open). The frontend process terminates TLS and holds the client
connections; the backend processes receive requests from it over kept-alive
connections and open a connection to a server per request under
``http-server-close``; a monolith does both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    """One operation: its column name, the unit its cost is given in, and what it is."""

    name: str
    unit: str  # of the operation (per second, or a level)
    cost_unit: str  # how its cost is printed
    scale: float  # cost in cores per unit -> cost_unit (e.g. 1e6 for µs of CPU per operation)
    doc: str


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("request", "requests/s", "µs", 1e6, "an HTTP request through the load balancer (client frontend req_tot)"),
        Operation("tls_request", "requests/s", "µs", 1e6, "extra for a request over TLS (records, not bytes)"),
        Operation("connection", "connections/s", "µs", 1e6, "a new client TCP connection, accepted and closed (conn_tot)"),
        Operation("handshake_full_ecdsa", "handshakes/s", "µs", 1e6, "a full TLS handshake with the ECDSA P-256 key (ssl_sess)"),
        Operation("handshake_full_rsa", "handshakes/s", "µs", 1e6, "a full TLS handshake with the RSA-2048 key (ssl_sess)"),
        Operation("handshake_resumed", "handshakes/s", "µs", 1e6, "a resumed TLS handshake (ssl_reused_sess)"),
        Operation("mb_in", "MB/s", "ms", 1e3, "a megabyte from clients to the load balancer (bin)"),
        Operation("mb_out", "MB/s", "ms", 1e3, "a megabyte from the load balancer to clients (bout)"),
        Operation("tls_mb", "MB/s", "ms", 1e3, "extra for a megabyte (either way) over TLS: encryption"),
        Operation("held_kconn", "k connections", "ms/s", 1e3, "1000 client connections held open (mostly idle), per second"),
        Operation("server_connection", "connections/s", "µs", 1e6, "a new connection from a backend process to a server (http-server-close)"),
    )
}

#: The operations each process role is fitted on (the idle intercept comes on top).
ROLE_OPERATIONS: dict[str, tuple[str, ...]] = {
    "frontend": (
        "request", "tls_request", "connection", "handshake_full_ecdsa", "handshake_full_rsa",
        "handshake_resumed", "mb_in", "mb_out", "tls_mb", "held_kconn",
    ),
    "backend": ("request", "server_connection", "mb_in", "mb_out"),
    "monolith": (
        "request", "tls_request", "connection", "handshake_full_ecdsa", "handshake_full_rsa",
        "handshake_resumed", "mb_in", "mb_out", "tls_mb", "held_kconn", "server_connection",
    ),
}  # fmt: skip

#: The intercept's name: CPU the role spends with no load (health checks, timers).
IDLE = "idle"


def describe(name: str) -> str:
    """One line for an operation (or the intercept)."""
    if name == IDLE:
        return "cores spent with no load (health checks, timers)"
    return OPERATIONS[name].doc
