"""Ephemeral ports in use per source address in each LB node's namespace, against ``ip_local_port_range``.

Inputs are the ``sockets`` table (TCP sockets per ``t, node, state, src, lport, dst,
dport`` with a ``count``; LISTEN excluded) and ``port_range`` (``t, node, low, high``).
A socket holds an ephemeral port when it was opened from the namespace
(``direction`` "out": the collector folds its local port, the ephemeral one, to 0);
accepted connections (``direction`` "in": local port 443, or a backend's bind port)
never count. Samples without a ``direction`` column fall back to "the local port
lies inside the node's range". TIME_WAIT sockets hold their port too and are counted.

The per-pair counts are read every few seconds while no namespace comes near its
range, every second when one does (bench/collect/collectors.py); ``socket_totals``
(every second) bounds every pair in between: :func:`pair_sampling`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import num, seconds_overlapping

PORT_COLUMNS = ["t", "node", "src", "dst", "dport", "in_use", "time_wait", "low", "high", "range_size"]
#: A (source, destination) pair counts as exhausted from this share of its port range on.
EXHAUSTED_PCT = 99.0


def node_ranges(port_range: pd.DataFrame) -> pd.DataFrame:
    """The last ``ip_local_port_range`` seen per node: ``node, low, high, range_size``."""
    last = port_range.sort_values("t", kind="stable").groupby("node").tail(1)
    out = last[["node", "low", "high"]].astype({"low": int, "high": int}).reset_index(drop=True)
    out["range_size"] = out["high"] - out["low"] + 1
    return out


def ports_in_use(sockets: pd.DataFrame, port_range: pd.DataFrame) -> pd.DataFrame:
    """Ephemeral ports in use per sample, node and (source, destination:port) pair (:data:`PORT_COLUMNS`).

    The kernel picks a connection's ephemeral port so that the 4-tuple is unique,
    so the range is a budget per (source address, destination address and port):
    that is the unit that runs out. Every (sample, node, pair) appears; a pair
    that had ports at some sample and none at a later one appears with 0 there,
    so lines drop to zero in plots instead of stopping.
    """
    ranges = node_ranges(port_range)
    if sockets.empty or ranges.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("node", "src", "dst") else float) for c in PORT_COLUMNS})
    d = sockets.merge(ranges, on="node", how="inner")
    # runs recorded before `direction` existed read it as null: their ephemeral ports are the ones in the range
    in_range = (d["lport"] >= d["low"]) & (d["lport"] <= d["high"])
    d = d[(d["direction"] == "out").fillna(False) | (d["direction"].isna() & in_range)]
    tw = d["count"].where(d["state"] == "TIME_WAIT", 0)
    d = d.assign(time_wait=tw)
    keys = ["t", "node", "src", "dst", "dport"]
    g = d.groupby(keys, sort=True)[["count", "time_wait"]].sum().rename(columns={"count": "in_use"})
    # complete the grid: each node's sample times x the pairs ever seen on that node
    samples = sockets[["t", "node"]].drop_duplicates()
    pairs = d[["node", "src", "dst", "dport"]].drop_duplicates()
    grid = samples.merge(pairs, on="node", how="inner").set_index(keys).index
    g = g.reindex(grid, fill_value=0).reset_index()
    g = g.merge(ranges, on="node", how="left")
    g[["in_use", "time_wait"]] = g[["in_use", "time_wait"]].astype(float)
    g["dport"] = g["dport"].astype(int)
    return g.sort_values(["node", "src", "dst", "dport", "t"], kind="stable").reset_index(drop=True)[PORT_COLUMNS]


def ports_summary(ports: pd.DataFrame, port_range: pd.DataFrame, load_start: float | None = None) -> dict[str, Any]:
    """``ports``: the busiest (source, destination) pair against the range, over the whole run.

    Exhaustion can start during a ramp, so unlike the request figures these are
    not limited to the steady window.
    """
    ranges = node_ranges(port_range)
    range_size = int(ranges["range_size"].min()) if not ranges.empty else None
    empty: dict[str, Any] = {
        "max_in_use": None,
        "range_size": range_size,
        "max_utilisation_pct": None,
        "exhausted": None if ports.empty else False,
        "first_exhaustion_at": None,
        "first_exhaustion_after_s": None,
        "exhausted_pairs": [],
        "by_source": {},
    }
    if ports.empty:
        return empty
    d = ports
    util = 100.0 * d["in_use"] / d["range_size"]
    by_source: dict[str, dict[str, Any]] = {}
    for (node, src), rows in d.groupby(["node", "src"], sort=True):
        per_pair = rows.groupby(["dst", "dport"])["in_use"].max()
        u = 100.0 * rows["in_use"] / rows["range_size"]
        by_source.setdefault(str(node), {})[str(src)] = {
            "max_in_use": int(per_pair.max()),
            "max_time_wait": int(rows.groupby(["dst", "dport"])["time_wait"].max().max()),
            "max_utilisation_pct": num(u.max(), 2),
            "destinations": {f"{dst}:{int(dport)}": int(v) for (dst, dport), v in per_pair.items()},
        }
    hot = d[util >= EXHAUSTED_PCT]
    first = float(hot["t"].min()) if not hot.empty else None
    pairs = sorted({f"{r.node} {r.src} -> {r.dst}:{int(r.dport)}" for r in hot.itertuples()})
    return {
        "max_in_use": int(d["in_use"].max()),
        "range_size": range_size,
        "max_utilisation_pct": num(float(np.max(util)), 2),
        "exhausted": bool(not hot.empty),
        "first_exhaustion_at": num(first, 3),
        "first_exhaustion_after_s": num(first - load_start, 3) if first is not None and load_start is not None else None,
        "exhausted_pairs": pairs,
        "by_source": by_source,
    }


def pair_sampling(sockets: pd.DataFrame, totals: pd.DataFrame, port_range: pd.DataFrame) -> dict[str, Any]:
    """How the per-pair counts were sampled, and the per-second bound on them.

    - ``pairs_every_s``: median seconds between two per-pair samples of a node
      (1 when read every second; null with fewer than two samples);
    - ``max_sockets``: most TCP sockets (TIME_WAIT and accepted ones included) one
      LB namespace held at any second, from ``socket_totals``: no pair can hold
      more ports than that, also between its samples (null without totals);
    - ``max_sockets_pct``: ``max_sockets`` as % of that node's range.
    """
    gaps = [
        g
        for _, rows in sockets[["t", "node"]].drop_duplicates().groupby("node", observed=True)
        for g in np.diff(np.sort(rows["t"].to_numpy(dtype=float)))
    ]
    out: dict[str, Any] = {"pairs_every_s": num(float(np.median(gaps)), 1) if gaps else None, "max_sockets": None, "max_sockets_pct": None}
    if totals.empty:
        return out
    t = totals.assign(total=totals["tcp_inuse"].astype(float) + totals["tcp6_inuse"].astype(float) + totals["time_wait"].astype(float))
    peak = t.loc[t["total"].idxmax()]
    out["max_sockets"] = int(peak["total"])
    ranges = node_ranges(port_range).set_index("node")["range_size"]
    if str(peak["node"]) in ranges.index:
        per_node = t.groupby("node", observed=True)["total"].max()
        pct = [100.0 * v / ranges[n] for n, v in per_node.items() if n in ranges.index]
        out["max_sockets_pct"] = num(max(pct), 2)
    return out


#: Established connections per hop as the kernel sees them (columns of :func:`established_by_hop`).
HOP_SOCKET_COLUMNS = ["client_sockets", "frontend_backend_sockets", "backend_server_sockets"]


def _loopback(addr: pd.Series) -> pd.Series:
    return addr.str.startswith("127.") | (addr == "::1")


def established_by_hop(sockets: pd.DataFrame) -> pd.DataFrame:
    """ESTABLISHED TCP connections per hop and second, summed over the LB nodes (kernel view).

    - ``client_sockets``: accepted ("in") from a non-loopback peer: client connections;
    - ``frontend_backend_sockets``: opened ("out") to a loopback address: the frontend's
      connections to the backend processes (keepalived's health check adds at most one);
    - ``backend_server_sockets``: opened to a non-loopback address: connections to the servers.

    Unlike HAProxy's ``scur``, this counts idle pooled connections too.
    Runs recorded before ``direction`` existed (it reads as null) give an empty frame.
    """
    if sockets["direction"].isna().all():
        return pd.DataFrame(columns=["t", *HOP_SOCKET_COLUMNS], dtype=float)
    est = sockets[sockets["state"] == "ESTABLISHED"]
    loop = _loopback(est["dst"].astype(str))
    out_dir = est["direction"] == "out"
    hop = np.select(
        [~out_dir & ~loop, out_dir & loop, out_dir & ~loop],
        HOP_SOCKET_COLUMNS,
        default="",
    )
    d = est.assign(hop=hop)
    d = d[d["hop"] != ""]
    # every sample time of every node, so a hop without sockets counts 0 rather than missing
    samples = sockets[["t", "node"]].drop_duplicates()
    per_sample = d.groupby(["t", "node", "hop"])["count"].sum().unstack("hop")
    per_sample = per_sample.reindex(pd.MultiIndex.from_frame(samples)).fillna(0.0).reset_index()
    for c in HOP_SOCKET_COLUMNS:
        if c not in per_sample:
            per_sample[c] = 0.0
    per_sample["t"] = np.floor(per_sample["t"].astype(float))
    per_node = per_sample.groupby(["t", "node"])[HOP_SOCKET_COLUMNS].last()
    out = per_node.groupby(level="t").sum().reset_index()
    return out[["t", *HOP_SOCKET_COLUMNS]].astype(float)


def sockets_summary(hops: pd.DataFrame, window: tuple[float, float], split: bool = True) -> dict[str, Any]:
    """``connections.sockets``: the maxima of :func:`established_by_hop` in the steady window.

    ``split`` False (monolith layout): there is no frontend -> backend hop, so its maximum is null.
    """
    d = hops[seconds_overlapping(hops["t"], window)]
    keys = {"client_sockets": "client_max", "frontend_backend_sockets": "backend_max", "backend_server_sockets": "server_max"}
    out = {v: (int(m) if (m := num(d[k].max(), 0)) is not None else None) for k, v in keys.items()}
    if not split:
        out["backend_max"] = None
    return out
