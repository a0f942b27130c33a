"""Who held the VIP: per-second holders from the ``vrrp`` samples and keepalived's state changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def vip_holders(vrrp: pd.DataFrame) -> pd.DataFrame:
    """Per whole second: ``t`` and ``holder`` (the node(s) holding the VIP joined by "+", "" for none)."""
    d = vrrp.assign(t=np.floor(vrrp["t"].astype(float)))
    last = d.sort_values("t", kind="stable").groupby(["t", "node"]).tail(1)
    held = last[last["holds_vip"].fillna(False).to_numpy(dtype=bool)]
    holders = held.groupby("t")["node"].agg(lambda s: "+".join(sorted(s)))
    out = pd.Series("", index=sorted(d["t"].unique()), dtype=object)
    out.loc[holders.index] = holders
    return pd.DataFrame({"t": out.index.astype(float), "holder": out.to_numpy()})


def vrrp_summary(vrrp: pd.DataFrame, events: pd.DataFrame) -> dict[str, Any]:
    """``vrrp``: holders over the run, how often the holder changed, seconds with none or two holders."""
    h = vip_holders(vrrp)
    if h.empty:
        return {"holders": [], "changes": None, "seconds_without_holder": None, "seconds_with_two_holders": None, "state_changes": None}
    seq = h["holder"].tolist()
    changes = sum(1 for a, b in zip(seq, seq[1:], strict=False) if a != b)
    holders = sorted({n for s in seq for n in s.split("+") if n})
    return {
        "holders": holders,
        "changes": int(changes),
        "seconds_without_holder": int(sum(1 for s in seq if s == "")),
        "seconds_with_two_holders": int(sum(1 for s in seq if "+" in s)),
        "state_changes": int(len(events)),
    }
