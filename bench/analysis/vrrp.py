"""Who held the VIP: per-second holders from the ``vrrp`` samples and keepalived's state changes."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd


def vip_holders(vrrp: pd.DataFrame) -> pd.DataFrame:
    """Per whole second: ``t`` and ``holder`` (the node(s) holding the VIP joined by "+", "" for none)."""
    d = vrrp.assign(t=np.floor(vrrp["t"].astype(float)), node=vrrp["node"].astype(str))
    # the last sample of each node in each second: does it hold the VIP?
    held = d.groupby(["t", "node"], sort=True)["holds_vip"].last().fillna(False).astype(bool).unstack("node", fill_value=False)
    seconds = held.index.to_numpy(dtype=float)
    holder = np.full(seconds.size, "", dtype=object)
    for node in sorted(held.columns):  # a few nodes: "lb-a", "lb-a+lb-b", ...
        mine = held[node].to_numpy(dtype=bool)
        holder[mine] = np.where(holder[mine] == "", node, holder[mine] + "+" + node)
    return pd.DataFrame({"t": seconds, "holder": holder})


def vrrp_summary(vrrp: pd.DataFrame, events: pd.DataFrame) -> dict[str, Any]:
    """``vrrp``: holders over the run, how often the holder changed, seconds with none or two holders."""
    h = vip_holders(vrrp)
    if h.empty:
        return {"holders": [], "changes": None, "seconds_without_holder": None, "seconds_with_two_holders": None, "state_changes": None}
    seq = h["holder"].tolist()
    changes = sum(1 for a, b in itertools.pairwise(seq) if a != b)
    holders = sorted({n for s in seq for n in s.split("+") if n})
    return {
        "holders": holders,
        "changes": int(changes),
        "seconds_without_holder": int(sum(1 for s in seq if s == "")),
        "seconds_with_two_holders": int(sum(1 for s in seq if "+" in s)),
        "state_changes": len(events),
    }
