"""Traffic on the LB nodes' interfaces, each direction, in Mbit/s.

Input is the ``netdev`` table: cumulative byte and packet counters per ``node``,
``iface`` and ``network`` (client | server | lo | other). Directions are from the
load balancer's point of view: ``in`` is what the node received on that network
(``rx``), ``out`` what it sent (``tx``). On the client network ``in`` carries the
requests and ``out`` the responses; on the server network ``out`` carries the
requests and ``in`` the responses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import counter_rates, in_window, num

NETWORKS = ("client", "server")
TRAFFIC_COLUMNS = ["t", "node", "network", "in_mbps", "out_mbps", "in_pps", "out_pps"]


def traffic_rates(netdev: pd.DataFrame) -> pd.DataFrame:
    """Per-interval rates per node and network (summed over the node's interfaces on it)."""
    keys = ["node", "iface", "network"]
    parts = []
    for col, name, scale in (
        ("rx_bytes", "in_mbps", 8e-6),
        ("tx_bytes", "out_mbps", 8e-6),
        ("rx_packets", "in_pps", 1.0),
        ("tx_packets", "out_pps", 1.0),
    ):
        r = counter_rates(netdev, keys, col, scale=scale).rename(columns={"rate": name})
        parts.append(r.set_index([*keys, "t"])[name])
    wide = pd.concat(parts, axis=1).reset_index()
    return wide.groupby(["t", "node", "network"], sort=True)[TRAFFIC_COLUMNS[3:]].sum().reset_index()[TRAFFIC_COLUMNS]


def network_series(rates: pd.DataFrame, network: str) -> pd.DataFrame:
    """Per-second ``in_mbps``/``out_mbps`` of one network, summed over nodes (index: second)."""
    d = rates[rates["network"] == network]
    if d.empty:
        return pd.DataFrame(columns=["in_mbps", "out_mbps"], dtype=float)
    d = d.assign(t=np.floor(d["t"].astype(float)))
    per_node = d.groupby(["t", "node"])[["in_mbps", "out_mbps"]].mean()
    return per_node.groupby(level="t").sum()


def traffic_summary(rates: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``traffic``: per network, mean and peak Mbit/s each direction over the steady window, all nodes summed."""
    out: dict[str, Any] = {}
    for network in NETWORKS:
        s = network_series(in_window(rates, window), network)
        key = f"{network}_mbps"
        if s.empty:
            out[key] = {"in": None, "out": None, "in_max": None, "out_max": None}
            continue
        out[key] = {
            "in": num(s["in_mbps"].mean(), 3),
            "out": num(s["out_mbps"].mean(), 3),
            "in_max": num(s["in_mbps"].max(), 3),
            "out_max": num(s["out_mbps"].max(), 3),
        }
    return out
