"""From a lab's samples and a list of time windows to one row per window: what the load balancer did and what it cost.

Inputs are the collector tables of the folder the lab's collectors wrote into
(reports/README.md): ``cpu`` (cumulative CPU per container and core), ``haproxy_stat``
(HAProxy's cumulative counters and current levels), ``haproxy_info``
(``CurrSslConns``), ``memory`` and ``sockets``. Counters are interpolated at the
window's edges (:func:`bench.analysis.cost.cumulative_at`, so CPU and work cover the
same seconds); levels are the mean of the samples inside the window.

Only the node holding the VIP (the one whose client frontend served the window's
requests) is costed; the standby's HAProxy CPU is reported beside it
(``cpu_standby``). A window's columns (:data:`COLUMNS`):

- rates, per second: every operation of :data:`bench.capacity.operations.OPERATIONS`
  but ``held_kconn`` (a level: thousands of client connections open);
- ``cpu_<role>``: cores (CPU seconds per second) of the active node's processes of that
  role (``frontend``, ``backend``, ``monolith``), ``cpu_lb`` their sum; ``cpu_server``,
  ``cpu_loadgen``, ``cpu_keepalived``, ``cpu_host`` (every core of the machine busy) for
  what else ran;
- ``mem_<role>``: mean cgroup memory (bytes) of the active node's processes of that role;
- ``client_conns``, ``tls_conns``: mean client connections and TLS connections open;
- ``hop_sockets``, ``hop_time_wait``, ``hop_pair_max``: frontend -> backend sockets (mean
  established + closing, TIME_WAIT alone, the fullest (source, destination) pair);
  ``server_sockets``, ``server_time_wait``, ``server_pair_max`` the same towards the servers.

What was not measured is NaN (no TLS, a table missing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.common import inside
from ..analysis.cost import LB_ROLES, cumulative_at
from ..analysis.haproxy import client_frontends
from ..results.store import read_table

#: haproxy_stat columns read.
STAT_COLUMNS = (
    "t", "node", "service", "kind", "pxname", "svname", "type",
    "scur", "bin", "bout", "req_tot", "conn_tot", "ssl_sess", "ssl_reused_sess", "connect",
)  # fmt: skip
MB = 1e6


@dataclass(frozen=True)
class Window:
    """One step's measuring window and what the load in it was made of (what counters cannot tell)."""

    step: str
    start: float
    end: float
    #: share of the window's requests (and bytes) sent over TLS
    tls_share: float = 1.0
    #: the lab's server key: which full-handshake operation ssl_sess counts
    key_type: str = "ecdsa-p256"
    group: str = ""
    phase: str = ""


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        "cpu": read_table(folder, "cpu"),
        "stat": read_table(folder, "haproxy_stat", STAT_COLUMNS),
        "info": read_table(folder, "haproxy_info", None, ("metric", ("CurrSslConns",))),
        "memory": read_table(folder, "memory"),
        "sockets": read_table(folder, "sockets"),
    }


def _delta(rows: pd.DataFrame, keys: list[str], value: str, start: float, end: float) -> float:
    if rows.empty or value not in rows or rows[value].isna().all():
        return float("nan")
    lo, hi = cumulative_at(rows, keys, value, [start, end])
    return float(hi - lo)


def _level(rows: pd.DataFrame, keys: list[str], value: str, start: float, end: float) -> float:
    """Sum over groups (``keys``) of each group's mean ``value`` over the samples inside the window."""
    if rows.empty or value not in rows:
        return float("nan")
    rows = rows[inside(rows["t"], (start, end)) & rows[value].notna()]
    if rows.empty:
        return float("nan")
    return float(rows.groupby(keys, observed=True, dropna=False)[value].mean().sum())


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _socket_levels(sockets: pd.DataFrame, node: str, start: float, end: float, loopback: bool) -> tuple[float, float, float]:
    """(mean sockets, mean TIME_WAIT, max mean per (src, dst, dport) pair) of one hop's outgoing sockets.

    NaN when the socket table has no sample of the node in the window (it is read every few
    seconds, not every second, when the namespace holds few sockets).
    """
    nan = (float("nan"),) * 3
    if sockets.empty:
        return nan
    node_rows = sockets[(sockets["node"] == node) & inside(sockets["t"], (start, end))]
    samples = node_rows["t"].nunique()
    if not samples:
        return nan
    s = node_rows[node_rows["direction"] == "out"]
    s = s[s["dst"].astype(str).map(_is_loopback) == loopback]
    if s.empty:
        return (0.0, 0.0, 0.0)
    total = float(s["count"].sum()) / samples
    tw = float(s[s["state"].astype(str) == "TIME_WAIT"]["count"].sum()) / samples
    pairs = s.groupby(["src", "dst", "dport"], observed=True)["count"].sum() / samples
    return total, tw, float(pairs.max()) if len(pairs) else 0.0


def active_node(stat: pd.DataFrame, start: float, end: float) -> str | None:
    """The node whose client frontend served the most requests in the window (the VIP holder)."""
    fe = client_frontends(stat)
    best, best_n = None, -1.0
    for node, rows in fe.groupby("node", observed=True):
        n = _delta(rows, ["service", "pxname"], "req_tot", start, end)
        if not np.isnan(n) and n > best_n:
            best, best_n = str(node), n
    return best


def measure_window(t: dict[str, pd.DataFrame], w: Window) -> dict[str, float | str]:
    """One row of the step table (see the module docstring)."""
    start, end = w.start, w.end
    span = end - start
    stat, cpu = t["stat"], t["cpu"]
    node = active_node(stat, start, end) if not stat.empty else None
    row: dict[str, float | str] = {
        "step": w.step, "group": w.group, "phase": w.phase, "start": start, "end": end, "window_s": span,
        "node": node or "", "tls_share": w.tls_share, "key_type": w.key_type,
    }  # fmt: skip
    per_s = 1.0 / span if span > 0 else float("nan")
    keys = ["container", "cpu"]
    lb_total = 0.0
    for role in LB_ROLES:
        rows = cpu[(cpu["role"] == role) & (cpu["node"] == node)] if not cpu.empty else cpu
        v = _delta(rows, keys, "usage_s", start, end) * per_s if not rows.empty else float("nan")
        row[f"cpu_{role}"] = v
        if not np.isnan(v):
            lb_total += v
    row["cpu_lb"] = lb_total
    standby = cpu[cpu["role"].isin(LB_ROLES) & (cpu["node"] != node)] if not cpu.empty else cpu
    row["cpu_standby"] = _delta(standby, keys, "usage_s", start, end) * per_s if not standby.empty else float("nan")
    for role, name in (("server", "cpu_server"), ("loadgen", "cpu_loadgen"), ("keepalived", "cpu_keepalived"), ("host", "cpu_host")):
        rows = cpu[cpu["role"] == role] if not cpu.empty else cpu
        row[name] = _delta(rows, keys, "usage_s", start, end) * per_s if not rows.empty else float("nan")

    fe = client_frontends(stat)
    fe = fe[fe["node"] == node] if not fe.empty else fe
    fkeys = ["service", "pxname"]
    requests = _delta(fe, fkeys, "req_tot", start, end) * per_s
    full = _delta(fe, fkeys, "ssl_sess", start, end) * per_s
    resumed = _delta(fe, fkeys, "ssl_reused_sess", start, end) * per_s
    mb_in = _delta(fe, fkeys, "bin", start, end) * per_s / MB
    mb_out = _delta(fe, fkeys, "bout", start, end) * per_s / MB
    full = 0.0 if np.isnan(full) else full
    resumed = 0.0 if np.isnan(resumed) else resumed
    row.update(
        request=requests,
        tls_request=requests * w.tls_share,
        connection=_delta(fe, fkeys, "conn_tot", start, end) * per_s,
        handshake_full_ecdsa=full if w.key_type != "rsa-2048" else 0.0,
        handshake_full_rsa=full if w.key_type == "rsa-2048" else 0.0,
        handshake_resumed=resumed,
        mb_in=mb_in,
        mb_out=mb_out,
        tls_mb=(mb_in + mb_out) * w.tls_share,
    )
    client_conns = _level(fe, fkeys, "scur", start, end)
    row["client_conns"] = client_conns
    row["held_kconn"] = client_conns / 1000.0
    info = t["info"]
    ssl = info[(info["metric"] == "CurrSslConns") & (info["node"] == node) & info["kind"].isin(("frontend", "monolith"))] if not info.empty else info
    row["tls_conns"] = _level(ssl, ["service"], "value", start, end) if not ssl.empty else float("nan")
    servers = stat[(stat["type"] == 1) & (stat["pxname"] == "servers") & (stat["node"] == node)] if not stat.empty else stat
    row["server_connection"] = _delta(servers, ["service"], "connect", start, end) * per_s if not servers.empty else 0.0
    mem = t["memory"]
    for role in LB_ROLES:
        rows = mem[(mem["role"] == role) & (mem["node"] == node)] if not mem.empty else mem
        row[f"mem_{role}"] = _level(rows, ["container"], "usage_bytes", start, end) if not rows.empty else float("nan")
    if node:
        hop = _socket_levels(t["sockets"], node, start, end, loopback=True)
        srv = _socket_levels(t["sockets"], node, start, end, loopback=False)
    else:
        hop = srv = (float("nan"),) * 3
    row.update(hop_sockets=hop[0], hop_time_wait=hop[1], hop_pair_max=hop[2])
    row.update(server_sockets=srv[0], server_time_wait=srv[1], server_pair_max=srv[2])
    return row


def measure_windows(folder: Path, windows: Sequence[Window]) -> pd.DataFrame:
    """One row per window of the lab whose collectors wrote into ``folder`` (see the module docstring)."""
    t = _tables(Path(folder))
    return pd.DataFrame([measure_window(t, w) for w in windows])


def memory_samples(folder: Path, start: float, end: float) -> pd.DataFrame:
    """Per collector tick of ``[start, end)`` on the active node: client and TLS connections open and each role's memory.

    The memory fit (:func:`bench.capacity.fit.fit_memory`) regresses memory on connections
    sample by sample while held connections are being opened and held.
    """
    t = _tables(Path(folder))
    stat, info, mem = t["stat"], t["info"], t["memory"]
    node = active_node(stat, start, end)
    if node is None:
        # nothing served requests: the node holding most client connections
        fe = client_frontends(stat)
        node = str(fe.groupby("node", observed=True)["scur"].max().idxmax()) if not fe.empty else None
    if node is None or mem.empty:
        return pd.DataFrame(columns=["t", "client_conns", "tls_conns", *(f"mem_{r}" for r in LB_ROLES)])
    fe = client_frontends(stat)
    fe = fe[(fe["node"] == node) & inside(fe["t"], (start, end))]
    # one tick per collector sample: the times the client-facing process's memory was read
    first = mem[(mem["node"] == node) & mem["role"].isin(("frontend", "monolith")) & inside(mem["t"], (start, end))]
    ticks = np.sort(first.loc[first["container"] == first["container"].iloc[0], "t"].unique()) if not first.empty else np.zeros(0)
    out = pd.DataFrame({"t": ticks})
    if out.empty:
        return out

    def at_ticks(rows: pd.DataFrame, keys: list[str], value: str) -> np.ndarray:
        total = np.zeros(ticks.size)
        for _, g in rows.sort_values("t").groupby(keys, observed=True):
            if len(g) == 0:
                continue
            total += np.interp(ticks, g["t"].to_numpy(float), g[value].to_numpy(float))
        return total

    out["client_conns"] = at_ticks(fe, ["service", "pxname"], "scur")
    ssl = info[(info["metric"] == "CurrSslConns") & (info["node"] == node) & info["kind"].isin(("frontend", "monolith"))]
    out["tls_conns"] = at_ticks(ssl, ["service"], "value") if not ssl.empty else np.nan
    for role in LB_ROLES:
        rows = mem[(mem["role"] == role) & (mem["node"] == node)]
        out[f"mem_{role}"] = at_ticks(rows, ["container"], "usage_bytes") if not rows.empty else np.nan
    return out
