"""CPU per core per container, for the host, the load generators and the collectors.

Input is the ``cpu`` table: cumulative CPU seconds (``usage_s``) per ``container``
and core (``cpu``; -1 when only a total is known, e.g. cgroup v2). A percentage is
of one core: 100 % = one core busy for the whole interval, so a container's total
can exceed 100 %.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..results.tables import COLLECTORS
from .common import counter_rates, in_window, num

CPU_KEYS = ["container", "role", "node", "cpu"]
CPU_COLUMNS = ["t", *CPU_KEYS, "pct"]
TOTAL = -1


def cpu_pct(cpu: pd.DataFrame) -> pd.DataFrame:
    """Per-interval CPU use, % of one core, per container and core (``cpu`` = -1: the container's total).

    For containers measured per core, total rows (``cpu`` = -1) are added as the sum
    over their cores at each sample, so every container has a total.
    """
    d = cpu.copy()
    d["node"] = d["node"].fillna("")
    rates = counter_rates(d, CPU_KEYS, "usage_s", scale=100.0).rename(columns={"rate": "pct"})
    rates["cpu"] = rates["cpu"].astype(int)
    per_core = rates[rates["cpu"] != TOTAL]
    has_total = set(rates.loc[rates["cpu"] == TOTAL, "container"])
    summed = per_core[~per_core["container"].isin(has_total)]
    if not summed.empty:
        tot = summed.groupby(["container", "role", "node", "t"], sort=False)["pct"].sum().reset_index()
        tot["cpu"] = TOTAL
        rates = pd.concat([rates, tot[CPU_COLUMNS]], ignore_index=True)
    return rates.sort_values(["container", "cpu", "t"], kind="stable").reset_index(drop=True)[CPU_COLUMNS]


def _per_core_lists(rows: pd.DataFrame) -> tuple[list[float | None] | None, list[float | None] | None]:
    cores = rows[rows["cpu"] != TOTAL]
    if cores.empty:
        return None, None
    g = cores.groupby("cpu")["pct"]
    means, maxes = g.mean(), g.max()
    return [num(v, 1) for v in means.tolist()], [num(v, 1) for v in maxes.tolist()]


def cpu_summary(pct: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``cpu``: the host's per-core mean and every container's per-core and total mean/max, steady window."""
    d = in_window(pct, window)
    host_per_core: list[float | None] | None = None
    host_mean = None
    by_container: dict[str, Any] = {}
    if not d.empty:
        host = d[d["container"] == "host"]
        host_per_core, _ = _per_core_lists(host)
        if host_per_core:
            host_mean = float(np.mean([v for v in host_per_core if v is not None]))
        for name, rows in d.groupby("container", sort=True):
            total = rows[rows["cpu"] == TOTAL]["pct"]
            means, maxes = _per_core_lists(rows)
            by_container[str(name)] = {
                "role": str(rows["role"].iloc[0]),
                "node": str(rows["node"].iloc[0]),
                "mean_pct": means,
                "max_pct": maxes,
                "total_mean_pct": num(total.mean(), 1),
                "total_max_pct": num(total.max(), 1),
            }
    return {
        "host_per_core_pct": host_per_core,
        "host_mean_pct": num(host_mean, 1),
        "by_container": by_container,
    }


def collector_overhead(collector_self: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``collectors``: CPU the collectors themselves used, % of one core, mean over the steady window.

    ``cpu_pct`` is the collector thread as a whole; ``by_collector`` splits it per
    collector (haproxy stats sockets, cgroup CPU, sockets, netdev, vrrp, and
    ``write``, the flush of every table), from the ``<name>_s`` columns
    (absent in runs made before they existed: then ``by_collector`` is empty).
    """
    if collector_self.empty or "usage_s" not in collector_self:
        return {"cpu_pct": None, "by_collector": {}}

    def mean_pct(column: str) -> float | None:
        rates = in_window(counter_rates(collector_self, [], column, scale=100.0), window)
        return num(rates["rate"].mean(), 3) if not rates.empty else None

    by_collector = {name: mean_pct(f"{name}_s") for name in COLLECTORS if f"{name}_s" in collector_self}
    by_collector = {name: pct for name, pct in by_collector.items() if pct is not None}
    total = mean_pct("usage_s")
    return {"cpu_pct": None if total is None else round(total, 2), "by_collector": by_collector}


def socket_table(port_range: pd.DataFrame) -> dict[str, Any]:
    """``collectors.socket_table``: whether the LB namespaces had a TCP hash table of their own.

    ``own``: every LB namespace had its own (the host's ``net.ipv4.tcp_child_ehash_entries``
    was set when the lab was made), so the per-pair socket dumps walked only the lab's sockets;
    ``shared``: at least one shared the host's table, so each dump also walked every TCP socket
    of the host and its cost grows with them; None when unknown (Linux < 6.1, older runs).
    ``socket_table_buckets``: the smallest table's size.
    """
    if port_range.empty or "tcp_hash" not in port_range:
        return {"socket_table": None, "socket_table_buckets": None}
    sizes = port_range.groupby("node", observed=True)["tcp_hash"].last().dropna()
    if sizes.empty:
        return {"socket_table": None, "socket_table_buckets": None}
    mode = "own" if (sizes > 0).all() else "shared"
    return {"socket_table": mode, "socket_table_buckets": int(sizes.abs().min())}

