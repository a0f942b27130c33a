"""What the load balancer's work costs: CPU of the HAProxy containers per request, per handshake, per MB.

At a fixed offered load the CPU the load balancer spends per unit of work holds
far stiller on a busy machine than throughput or latency (measured: paired sd of
the log-ratio of two labs at once about 3 %, against 14-23 % for p50/p99), so it
is what `bench gate` judges a build by first.

Inputs are the collector tables (see reports/README.md): ``cpu`` (cumulative CPU
seconds per container and core; the HAProxy containers have the roles
:data:`LB_ROLES`) and ``haproxy_stat`` (cumulative counters of HAProxy's own
client-facing frontends: ``req_tot`` requests, ``ssl_sess`` full and
``ssl_reused_sess`` resumed TLS handshakes, ``bin`` + ``bout`` bytes). Every
counter is interpolated at the edges of each interval (between the 1 Hz samples
around them), so CPU and work cover exactly the same seconds, and a counter that
drops (a process restarted) counts on from zero.

Each ratio divides ALL the HAProxy CPU of the interval by one count: per request
is the figure for request-heavy loads, per full handshake for handshake-heavy
ones (``handshake-rate``), per MB for large responses. Compare them between
builds under the same load, not across loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .common import num, restart_proof
from .haproxy import client_frontends

#: Container roles of the HAProxy processes (the load balancer).
LB_ROLES = ("frontend", "backend", "monolith")
#: Columns of :func:`cost_intervals`.
COLUMNS = (
    "start", "end", "lb_cpu_s", "requests", "handshakes_full", "handshakes_resumed", "bytes",
    "lb_us_per_request", "lb_us_per_full_handshake", "lb_us_per_resumed_handshake", "lb_ms_per_mb",
)  # fmt: skip


def cumulative_at(rows: pd.DataFrame, keys: list[str], value: str, times: Sequence[float] | np.ndarray) -> np.ndarray:
    """A cumulative counter summed over groups (``keys``), interpolated linearly at ``times``.

    Each group's counter is made restart-proof first (a drop counts on from zero).
    A time outside the span sampled by any group gives NaN: interpolating there
    would guess.

    >>> rows = pd.DataFrame({"k": ["a", "a", "b", "b"], "t": [0.0, 2.0, 0.0, 2.0], "v": [0.0, 10.0, 5.0, 9.0]})
    >>> cumulative_at(rows, ["k"], "v", [1.0, 2.0, 3.0]).tolist()
    [7.0, 14.0, nan]
    """
    times = np.asarray(times, dtype=float)
    out = np.zeros(times.size)
    if rows.empty or value not in rows:
        return np.full(times.size, np.nan)
    found = False
    for _, g in rows[rows[value].notna()].sort_values("t", kind="stable").groupby(keys, sort=False, dropna=False, observed=True):
        t = g["t"].to_numpy(dtype=float)
        v = g[value].to_numpy(dtype=float)
        if t.size < 2:
            continue
        part = np.interp(times, t, restart_proof(v))
        part[(times < t[0]) | (times > t[-1])] = np.nan
        out += part
        found = True
    return out if found else np.full(times.size, np.nan)


def lb_cpu(cpu: pd.DataFrame, roles: Sequence[str] = LB_ROLES) -> pd.DataFrame:
    """Rows of the ``cpu`` table that belong to HAProxy containers of ``roles``."""
    if cpu.empty or "role" not in cpu:
        return cpu
    return cpu[cpu["role"].isin(tuple(roles))]


def _interval_delta(rows: pd.DataFrame, keys: list[str], value: str, edges: np.ndarray) -> np.ndarray:
    return np.diff(cumulative_at(rows, keys, value, edges))


def cost_intervals(cpu: pd.DataFrame, stat: pd.DataFrame, edges: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """CPU and HAProxy's work in each interval between consecutive ``edges`` (epoch seconds), and their ratios.

    One row per interval with :data:`COLUMNS` plus ``cpu_s_<role>`` for every role
    present. Counts that are not measured (no TLS, an old HAProxy) are NaN, and so
    are ratios over zero counts.
    """
    edges = np.asarray(edges, dtype=float)
    out = pd.DataFrame({"start": edges[:-1], "end": edges[1:]})
    lb = lb_cpu(cpu)
    cpu_keys = ["container", "cpu"]
    out["lb_cpu_s"] = _interval_delta(lb, cpu_keys, "usage_s", edges) if not lb.empty else np.nan
    roles = sorted({str(r) for r in lb["role"]}) if not lb.empty else []
    for role in roles:
        out[f"cpu_s_{role}"] = _interval_delta(lb[lb["role"] == role], cpu_keys, "usage_s", edges)
    fe = client_frontends(stat)
    keys = ["node", "service", "pxname"]

    def counter(name: str) -> np.ndarray:
        if fe.empty or name not in fe or fe[name].isna().all():
            return np.full(edges.size - 1, np.nan)
        return _interval_delta(fe, keys, name, edges)

    out["requests"] = counter("req_tot")
    out["handshakes_full"] = counter("ssl_sess")
    out["handshakes_resumed"] = counter("ssl_reused_sess")
    out["bytes"] = counter("bin") + counter("bout")
    cpu_s = out["lb_cpu_s"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["lb_us_per_request"] = _per(cpu_s * 1e6, out["requests"])
        out["lb_us_per_full_handshake"] = _per(cpu_s * 1e6, out["handshakes_full"])
        out["lb_us_per_resumed_handshake"] = _per(cpu_s * 1e6, out["handshakes_resumed"])
        out["lb_ms_per_mb"] = _per(cpu_s * 1e3, out["bytes"] / 1e6)
        for role in roles:
            out[f"{role}_us_per_request"] = _per(out[f"cpu_s_{role}"].to_numpy(dtype=float) * 1e6, out["requests"])
    return out


def _per(amount: np.ndarray, count: pd.Series) -> np.ndarray:
    c = count.to_numpy(dtype=float)
    return np.where(c > 0, amount / np.where(c > 0, c, 1.0), np.nan)


def cost_summary(cpu: pd.DataFrame, stat: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``cost``: the load balancer's CPU over the steady window, the work it did, and CPU per unit of work.

    ``lb_us_per_request`` (µs of HAProxy CPU per request), ``lb_us_per_full_handshake``,
    ``lb_us_per_resumed_handshake``, ``lb_ms_per_mb`` (per MB received + sent on the
    client side), and per role (``by_role``: frontend, backend, monolith) the CPU
    seconds and µs per request. Null where the window has no such work.
    """
    start, end = window
    empty: dict[str, Any] = {
        "window_s": None, "lb_cpu_s": None, "requests": None, "handshakes_full": None, "handshakes_resumed": None,
        "mb": None, "lb_us_per_request": None, "lb_us_per_full_handshake": None,
        "lb_us_per_resumed_handshake": None, "lb_ms_per_mb": None, "by_role": {},
    }  # fmt: skip
    if end <= start:
        return empty
    row = cost_intervals(cpu, stat, [start, end]).iloc[0]
    by_role = {
        col[len("cpu_s_") :]: {
            "cpu_s": num(row[col], 3),
            "us_per_request": num(row.get(f"{col[len('cpu_s_'):]}_us_per_request"), 2),
        }
        for col in row.index
        if col.startswith("cpu_s_")
    }
    return {
        "window_s": num(end - start, 3),
        "lb_cpu_s": num(row["lb_cpu_s"], 3),
        "requests": num(row["requests"], 0),
        "handshakes_full": num(row["handshakes_full"], 0),
        "handshakes_resumed": num(row["handshakes_resumed"], 0),
        "mb": num(row["bytes"] / 1e6, 3),
        "lb_us_per_request": num(row["lb_us_per_request"], 2),
        "lb_us_per_full_handshake": num(row["lb_us_per_full_handshake"], 2),
        "lb_us_per_resumed_handshake": num(row["lb_us_per_resumed_handshake"], 2),
        "lb_ms_per_mb": num(row["lb_ms_per_mb"], 3),
        "by_role": by_role,
    }
