"""``connections``, ``tls``, ``haproxy``: HAProxy's counters (bench/analysis/haproxy.py, ports.py)."""

from __future__ import annotations

from .base import Figure, Section


class SocketPeaks(Section):
    """``connections.sockets``: ESTABLISHED sockets per hop as the kernel counts them."""

    client_max: int | None
    backend_max: int | None
    server_max: int | None


class Connections(Section):
    per_s: Figure
    per_s_source: str | None
    client_max: Figure
    backend_max: Figure
    server_max: Figure
    per_s_client: Figure
    sockets: SocketPeaks | None


class Tls(Section):
    handshakes_per_s: Figure
    connections_per_s: Figure
    resumption_pct: Figure
    connections_max: Figure


class IdlePct(Section):
    mean: Figure
    min: Figure


class ServerErrors(Section):
    """``haproxy.server_errors``: increase of these ``show stat`` counters over the server rows."""

    econ: Figure
    eresp: Figure
    wretr: Figure
    wredis: Figure
    hrsp_5xx: Figure
    srv_abrt: Figure
    cli_abrt: Figure


class Pool(Section):
    """``haproxy.pool.<service>``: a server-side process's pool towards the servers."""

    node: str | None
    servers: int | None
    slots: Figure
    busy_mean: Figure
    busy_max: Figure
    queue_mean: Figure
    queue_max: Figure
    qtime_ms: Figure
    ctime_ms: Figure
    rtime_ms: Figure
    ttime_ms: Figure


class ProcessLimits(Section):
    """``haproxy.limits.<service>``: an LB process's connection and file-descriptor limits against use."""

    node: str | None
    kind: str | None
    maxconn: Figure
    conns_max: Figure
    conns_mean: Figure
    ulimit_n: Figure
    maxsock: Figure


class Haproxy(Section):
    requests_per_s: Figure
    idle_pct: dict[str, IdlePct] | None
    queue_max: Figure
    server_errors: ServerErrors | None
    pool: dict[str, Pool] | None = None
    limits: dict[str, ProcessLimits] | None = None
