"""HAProxy's own view: new connections, TLS handshakes and resumption, established connections per hop.

Inputs are the collector tables ``haproxy_info`` (long format of ``show info``) and
``haproxy_stat`` (``show stat`` rows); see reports/README.md. Both carry ``node``,
``service`` and ``kind`` (frontend | backend | monolith | server).

Which rows mean what (lbbench's rendered configs):
- client connections: the frontend proxies (type 0) of the frontend/monolith processes,
  except the internal ones in :data:`INTERNAL_FRONTENDS` (keepalived's health check);
- frontend -> backend connections: the frontend proxies of the backend processes
  (each accepted connection from the frontend process is one session there);
- backend -> server connections: the server rows (type 2) of the backend/monolith processes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import READ_ROWS, RunData, group_codes, in_window, num, restart_proof, seconds_overlapping, sum_across

#: Frontends that do not carry client traffic (keepalived's `monitor-uri` check, a stats page).
INTERNAL_FRONTENDS = frozenset({"monitor", "stats"})
#: Process kinds that accept client connections.
CLIENT_KINDS = ("frontend", "monolith")
#: Process kinds that hold the connections to the real servers.
SERVER_SIDE_KINDS = ("backend", "monolith")
STAT_FRONTEND, STAT_BACKEND, STAT_SERVER = 0, 1, 2

CONNECTION_COLUMNS = ["client", "frontend_backend", "backend_server"]


def client_frontends(stat: pd.DataFrame) -> pd.DataFrame:
    """``show stat`` rows of the frontends that face clients."""
    mask = (stat["type"] == STAT_FRONTEND) & stat["kind"].isin(CLIENT_KINDS) & ~stat["pxname"].isin(INTERNAL_FRONTENDS)
    return stat[mask]


def backend_process_frontends(stat: pd.DataFrame) -> pd.DataFrame:
    """``show stat`` frontend rows of the backend processes (the frontend -> backend hop, accepting side)."""
    mask = (stat["type"] == STAT_FRONTEND) & (stat["kind"] == "backend") & ~stat["pxname"].isin(INTERNAL_FRONTENDS)
    return stat[mask]


def server_rows(stat: pd.DataFrame) -> pd.DataFrame:
    """``show stat`` server rows towards the real servers (backend -> server hop)."""
    return stat[(stat["type"] == STAT_SERVER) & stat["kind"].isin(SERVER_SIDE_KINDS)]


def info_metric(info: pd.DataFrame, metric: str, kinds: tuple[str, ...] = CLIENT_KINDS) -> pd.DataFrame:
    """Rows ``t, node, service, value`` of one ``show info`` metric for processes of ``kinds``."""
    if metric not in READ_ROWS["haproxy_info"][1]:
        raise ValueError(f"show info field {metric} is not read from the run: add it to bench.analysis.common.READ_ROWS")
    d = info[(info["metric"] == metric) & info["kind"].isin(kinds)]
    return d[["t", "node", "service", "value"]]


def connection_series(stat: pd.DataFrame) -> pd.DataFrame:
    """Established connections per hop, per second, summed over nodes and processes.

    Columns ``t`` and :data:`CONNECTION_COLUMNS` (NaN where the hop does not exist,
    e.g. ``frontend_backend`` in the monolith layout).
    """
    parts = {}
    for name, rows, keys in (
        ("client", client_frontends(stat), ["service", "pxname"]),
        ("frontend_backend", backend_process_frontends(stat), ["service", "pxname"]),
        ("backend_server", server_rows(stat), ["service", "pxname", "svname"]),
    ):
        if not rows.empty:
            parts[name] = sum_across(rows, keys, "scur")
    if not parts:
        return pd.DataFrame(columns=["t", *CONNECTION_COLUMNS], dtype=float)
    out = pd.DataFrame(parts)
    for c in CONNECTION_COLUMNS:
        if c not in out:
            out[c] = np.nan
    out.index.name = "t"
    return out.reset_index()[["t", *CONNECTION_COLUMNS]]


def run_connection_series(data: RunData) -> pd.DataFrame:
    """:func:`connection_series` of a run's ``haproxy_stat``, computed once per :class:`RunData` (the series and the summary share it)."""
    return data.memo("haproxy.connection_series", lambda: connection_series(data.table("haproxy_stat")))


def window_counter_delta(rows: pd.DataFrame, keys: list[str], value: str, window: tuple[float, float] | None) -> tuple[float, float] | None:
    """Sum over groups of a counter's increase between their first and last sample in ``window``.

    Returns ``(delta, seconds)`` where ``seconds`` is the mean span covered by the
    groups' samples, or None when no group has two samples in the window.
    """
    d = in_window(rows, window) if window is not None else rows
    v = d[value].to_numpy(dtype=float)
    has = ~np.isnan(v)
    # per group (in key order) its samples by time, the groups with at least two of them
    codes, t, v = group_codes(d, keys)[has], d["t"].to_numpy(dtype=float)[has], v[has]
    order = np.lexsort((t, codes))
    codes, t, v = codes[order], t[order], v[order]
    enough = np.bincount(codes)[codes] >= 2 if codes.size else np.zeros(0, dtype=bool)
    codes, t, v = codes[enough], t[enough], v[enough]
    if not codes.size:
        return None
    first = np.r_[True, codes[1:] != codes[:-1]]
    step = np.diff(v)
    # a drop means the process restarted and counts from zero again (see restart_proof)
    total = float(np.where(step >= 0, step, v[1:])[~first[1:]].sum())
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], codes.size] - 1
    return total, float((t[ends] - t[starts]).mean())


def window_rate(rows: pd.DataFrame, keys: list[str], value: str, window: tuple[float, float]) -> float | None:
    """Mean rate (per second) of a counter over exactly ``window``, summed over groups.

    The counter is interpolated linearly at the window's edges (between the samples
    around them), so the rate covers the same seconds as the client-side figures;
    a group sampled over only part of the window contributes its rate over that part.
    """
    total, found = 0.0, False
    for _, g in rows[rows[value].notna()].sort_values("t", kind="stable").groupby(keys, sort=False, dropna=False):
        t = g["t"].to_numpy(dtype=float)
        v = g[value].to_numpy(dtype=float)
        start, end = max(window[0], t[0]), min(window[1], t[-1])
        if t.size < 2 or end <= start:
            continue
        cum = restart_proof(v)
        total += float((np.interp(end, t, cum) - np.interp(start, t, cum)) / (end - start))
        found = True
    return total if found else None


def _sum_of_means(rows: pd.DataFrame, window: tuple[float, float]) -> float | None:
    d = in_window(rows, window)
    if d.empty:
        return None
    return float(d.groupby(["node", "service"])["value"].mean().sum())


def _max_of(series: pd.Series, window: tuple[float, float]) -> float | None:
    if series.empty:
        return None
    s = series[seconds_overlapping(series.index, window)].dropna()
    return float(s.max()) if not s.empty else None


def connections_summary(info: pd.DataFrame, stat: pd.DataFrame, window: tuple[float, float], conns: pd.DataFrame | None = None) -> dict[str, Any]:
    """The HAProxy half of ``connections``: new client connections per second and maxima per hop.

    ``conns``: :func:`connection_series` of ``stat`` when the caller has it.
    """
    per_s, source = None, None
    fe = client_frontends(stat)
    if fe["conn_tot"].notna().any():
        per_s, source = window_rate(fe, ["node", "service", "pxname"], "conn_tot", window), "haproxy_stat.conn_tot"
    if per_s is None:
        per_s, source = window_rate(info_metric(info, "CumConns"), ["node", "service"], "value", window), "haproxy_info.CumConns"
    series = (connection_series(stat) if conns is None else conns).set_index("t")
    curr = info_metric(info, "CurrConns")

    def peak(col: str) -> float | None:
        return _max_of(series[col], window)

    client_max = peak("client")
    if client_max is None:
        client_max = _max_of(sum_across(curr, ["node", "service"], "value"), window)
    return {
        "per_s": num(per_s, 1),
        "per_s_source": source if per_s is not None else None,
        "client_max": num(client_max, 0),
        "backend_max": num(peak("frontend_backend"), 0),
        "server_max": num(peak("backend_server"), 0),
    }


def ssl_session_counts(stat: pd.DataFrame, window: tuple[float, float] | None) -> tuple[float, float] | None:
    """``(full handshakes, resumed handshakes)`` on the client frontends over ``window``.

    From the ``ssl_sess`` and ``ssl_reused_sess`` counters of ``show stat`` (HAProxy's
    SSL stats module counts each handshake in exactly one of them: a new session or a
    reused one). None when HAProxy does not report them.
    """
    fe = client_frontends(stat)
    if fe["ssl_sess"].isna().all():
        return None
    keys = ["node", "service", "pxname"]
    sess = window_counter_delta(fe, keys, "ssl_sess", window)
    reused = window_counter_delta(fe, keys, "ssl_reused_sess", window)
    if sess is None or reused is None:
        return None
    return sess[0], reused[0]


def tls_summary(info: pd.DataFrame, window: tuple[float, float], stat: pd.DataFrame | None = None) -> dict[str, Any]:
    """``tls``: full handshakes and TLS connections per second, resumption share, concurrent TLS connections.

    ``resumption_pct`` is the share of new TLS connections in the steady window that
    resumed a session: ``ssl_reused_sess / (ssl_sess + ssl_reused_sess)`` increases of
    the client frontends when HAProxy reports them, else 100 x (1 - sum of
    SslFrontendKeyRate / sum of SslRate) over the samples. Null when no TLS connection
    was opened in the window.
    (HAProxy's own SslFrontendSessionReuse_pct is 0 in any second without new TLS
    connections, so its mean would understate keep-alive runs.)
    """
    key = in_window(info_metric(info, "SslFrontendKeyRate"), window)
    ssl = in_window(info_metric(info, "SslRate"), window)
    resumption = None
    counts = ssl_session_counts(stat, window) if stat is not None else None
    if counts is not None:
        if counts[0] + counts[1] > 0:
            resumption = 100.0 * counts[1] / (counts[0] + counts[1])
    elif not key.empty and not ssl.empty and ssl["value"].sum() > 0:
        resumption = 100.0 * (1.0 - key["value"].sum() / ssl["value"].sum())
    if resumption is not None:
        resumption = float(np.clip(resumption, 0.0, 100.0))
    curr_ssl = info_metric(info, "CurrSslConns")
    return {
        "handshakes_per_s": num(_sum_of_means(key, window), 1),
        "connections_per_s": num(_sum_of_means(ssl, window), 1),
        "resumption_pct": num(resumption, 1),
        "connections_max": num(_max_of(sum_across(curr_ssl, ["node", "service"], "value"), window), 0),
    }


def idle_pct(info: pd.DataFrame, window: tuple[float, float]) -> dict[str, dict[str, float | None]]:
    """Per HAProxy process (service): mean and minimum ``Idle_pct`` in the steady window."""
    d = in_window(info_metric(info, "Idle_pct", ("frontend", "backend", "monolith")), window)
    if d.empty:
        return {}
    g = d.groupby("service")["value"]
    return {str(s): {"mean": num(m, 1), "min": num(n, 1)} for s, m, n in zip(g.mean().index, g.mean(), g.min(), strict=True)}


def haproxy_summary(info: pd.DataFrame, stat: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``haproxy``: HAProxy-counted request rate, Idle_pct per process, pool queueing and server-side errors."""
    req_rate = window_rate(client_frontends(stat), ["node", "service", "pxname"], "req_tot", window)
    srv = server_rows(stat)
    errors: dict[str, float | None] = {}
    for col in ("econ", "eresp", "wretr", "wredis", "hrsp_5xx", "srv_abrt", "cli_abrt"):
        got = window_counter_delta(srv, ["node", "service", "pxname", "svname"], col, window)
        errors[col] = num(got[0], 0) if got is not None else None
    queue = in_window(stat[(stat["type"] == STAT_BACKEND) & stat["kind"].isin(SERVER_SIDE_KINDS)], window)
    return {
        "requests_per_s": num(req_rate, 1),
        "idle_pct": idle_pct(info, window),
        "queue_max": num(queue["qcur"].max(), 0),
        "server_errors": errors,
    }


def _rate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """A "per second over the last second" gauge sampled at t describes (t-1, t]: stamp it at t - 0.5."""
    return rows.assign(t=rows["t"] - 0.5)


def haproxy_series(info: pd.DataFrame, stat: pd.DataFrame, conns: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-second HAProxy figures summed over the client-facing processes of both nodes.

    Columns ``t``, ``conn_rate`` (new client connections/s), ``req_rate``,
    ``ssl_key_rate`` (full handshakes/s), ``ssl_rate`` (TLS connections/s) and the
    per-hop established connections of :func:`connection_series`. Rates are HAProxy's
    own one-second rates, put in the second they describe. ``conns``: :func:`connection_series`
    of ``stat`` when the caller has it.
    """
    cols = {}
    fe = client_frontends(stat)
    for name, metric in (("conn_rate", "ConnRate"), ("ssl_key_rate", "SslFrontendKeyRate"), ("ssl_rate", "SslRate")):
        rows = info_metric(info, metric)
        if not rows.empty:
            cols[name] = sum_across(_rate_rows(rows), ["node", "service"], "value")
    for name in ("req_rate", "conn_rate"):
        # the client frontends' own rates leave out the stats socket and the health checks
        if fe[name].notna().any():
            cols[name] = sum_across(_rate_rows(fe), ["node", "service", "pxname"], name)
    out = pd.DataFrame(cols)
    if conns is None:
        conns = connection_series(stat)
    if not conns.empty:
        out = out.join(conns.set_index("t"), how="outer")
    names = ["conn_rate", "req_rate", "ssl_key_rate", "ssl_rate", *CONNECTION_COLUMNS]
    for c in names:
        if c not in out:
            out[c] = np.nan
    out.index.name = "t"
    return out.reset_index()[["t", *names]].astype(float)


def server_pool(stat: pd.DataFrame, window: tuple[float, float]) -> dict[str, dict[str, Any]]:
    """``haproxy.pool``: per server-side process that carried requests, its pool towards the real servers.

    ``slots`` is the pool's size (sum of the servers' ``slim``, their ``maxconn``;
    null without one), ``busy_mean``/``busy_max`` the connections in use (sum of the
    servers' ``scur``), ``queue_mean``/``queue_max`` the requests waiting for a slot
    (the backend's ``qcur``), and ``qtime_ms``/``ctime_ms``/``rtime_ms``/``ttime_ms``
    HAProxy's own averages over the backend's last 1024 requests (mean of the
    samples): queue, connect, response and total time.
    """
    srv = in_window(server_rows(stat), window)
    if srv.empty:
        return {}
    be = in_window(stat[(stat["type"] == STAT_BACKEND) & stat["kind"].isin(SERVER_SIDE_KINDS)], window)
    out: dict[str, dict[str, Any]] = {}
    for (node, service), g in srv.groupby(["node", "service"], sort=True):
        served = window_counter_delta(g, ["pxname", "svname"], "stot", None) if "stot" in g else None
        if served is None or served[0] <= 0:
            continue  # the standby node, or a process that carried nothing
        per_t = g.groupby("t")
        busy = per_t["scur"].sum()
        slim = per_t["slim"].sum(min_count=1)
        b = be[(be["node"] == node) & (be["service"] == service) & be["pxname"].isin(g["pxname"].unique())]
        queue = b.groupby("t")["qcur"].sum() if not b.empty else pd.Series(dtype=float)

        def mean_of(col: str, rows: pd.DataFrame = b) -> float | None:
            return num(rows[col].mean(), 1) if not rows.empty and col in rows and rows[col].notna().any() else None

        out[str(service)] = {
            "node": str(node),
            "servers": int(g["svname"].nunique()),
            "slots": num(slim.max(), 0) if slim.notna().any() else None,
            "busy_mean": num(busy.mean(), 1),
            "busy_max": num(busy.max(), 0),
            "queue_mean": num(queue.mean(), 1) if not queue.empty else None,
            "queue_max": num(queue.max(), 0) if not queue.empty else None,
            "qtime_ms": mean_of("qtime"),
            "ctime_ms": mean_of("ctime"),
            "rtime_ms": mean_of("rtime"),
            "ttime_ms": mean_of("ttime"),
        }
    return out


def process_limits(info: pd.DataFrame, window: tuple[float, float]) -> dict[str, dict[str, Any]]:
    """``haproxy.limits``: per LB process, its connection and file-descriptor limits against use.

    ``maxconn`` is the process's effective ``Maxconn`` (``show info``: what the
    configuration and the file-descriptor limit allow), ``conns_max``/``conns_mean``
    its ``CurrConns`` in the steady window, ``ulimit_n`` and ``maxsock`` the file
    descriptors it may open and the most it may need.
    """
    d = in_window(info[info["kind"].isin(("frontend", "backend", "monolith"))], window) if not info.empty else info
    if d.empty:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for (node, service, kind), g in d.groupby(["node", "service", "kind"], sort=True):
        m = {metric: rows["value"] for metric, rows in g.groupby("metric", observed=True)}

        def last(name: str, m: dict[str, pd.Series] = m) -> float | None:
            return num(m[name].iloc[-1], 0) if name in m and not m[name].empty else None

        curr = m.get("CurrConns")
        out[str(service)] = {
            "node": str(node),
            "kind": str(kind),
            "maxconn": last("Maxconn"),
            "conns_max": num(curr.max(), 0) if curr is not None else None,
            "conns_mean": num(curr.mean(), 1) if curr is not None else None,
            "ulimit_n": last("Ulimit-n"),
            "maxsock": last("Maxsock"),
        }
    return out
