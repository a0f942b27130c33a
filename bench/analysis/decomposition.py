"""Where each millisecond of a request went: the latency decomposition of traced requests.

1 in N requests carries ``X-Lbbench-Id`` (``requests.trace_id``); every HAProxy
process it passes logs when it had the request's headers (``t_req``), when it had
the response's headers (``t_resp``) and its own timers (``request_timers``, see
bench/collect/timers.py). All on the host's clock, so one request reads::

    client sends       c0 = requests.t
    frontend has it    f_req          (split layout; the monolith is frontend and pool in one)
    backend has it     b_req          pool process: queue Tw, connect Tc (ms, HAProxy's timers)
    server has it      s_req
    server answered    s_resp         the dummy server's own time: s_resp - s_req
    backend has it     b_resp
    frontend has it    f_resp
    client has it all  c1 = c0 + requests.latency_ms

and the hops, which add up to the client's latency exactly:

==================  ===================================================================
hop                 ms
==================  ===================================================================
client_frontend     (f_req - c0) + (c1 - f_resp): network, TLS and the client, both ways
frontend_backend    (b_req - f_req) + (f_resp - b_resp): the frontend process and its
                    localhost hop to the backend process (split layout only)
queue               Tw of the pool process: waiting for a server connection (maxconn)
connect             Tc of the pool process: connecting to the server
backend_server      (s_req - b_req) - Tw - Tc + (b_resp - s_resp): the pool process and
                    the network to the servers
server              s_resp - s_req: the server's own time (the requested delay and its work)
lb_added            frontend_backend + connect + backend_server: what the load balancer
                    added, its queue left out (that is the pool's, shown as ``queue``)
==================  ===================================================================

Percentiles of hops do not add up (the p50 of a sum is not the sum of p50s);
means do, and ``sum_p50_ms`` against ``client_p50_ms`` says how far the medians are
from it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .common import in_window, num

HOPS = ("client_frontend", "frontend_backend", "queue", "connect", "backend_server", "server", "lb_added")
#: The hops that make up the client's latency (``lb_added`` is a sum of some of them).
PARTS = ("client_frontend", "frontend_backend", "queue", "connect", "backend_server", "server")
_DELAY = re.compile(r"[?&]delay_ms=(\d+)")


def requested_delay_ms(path: str | None) -> float | None:
    """The ``delay_ms`` a scenario's path asks the dummy servers for (None: no delay asked)."""
    m = _DELAY.search(path or "")
    return float(m.group(1)) if m else None


def _first(timers: pd.DataFrame, kinds: tuple[str, ...], prefix: str) -> pd.DataFrame:
    rows = timers[timers["kind"].isin(kinds)]
    rows = rows.assign(id=rows["id"].astype(str)).drop_duplicates("id", keep="first")  # readers give categories
    cols = {"t_req": f"{prefix}_req", "t_resp": f"{prefix}_resp", "Tw": f"{prefix}_Tw", "Tc": f"{prefix}_Tc", "Ta": f"{prefix}_Ta", "term": f"{prefix}_term"}
    return rows.set_index("id")[list(cols)].rename(columns=cols)


def joined(requests: pd.DataFrame, timers: pd.DataFrame, window: tuple[float, float] | None = None) -> pd.DataFrame:
    """One row per traced successful request found at every hop, with its hops in ms (see the module docstring).

    Columns: ``t`` (client send), ``latency_ms``, the hops of :data:`HOPS` and each
    process's ``*_term`` (termination state). Requests missing at a hop are left out.
    """
    cols = ["t", "latency_ms", *HOPS]
    if requests.empty or timers.empty or "trace_id" not in requests or requests["trace_id"].isna().all():
        return pd.DataFrame(columns=cols)
    req = requests[requests["trace_id"].notna() & (requests["error"] == "")]
    if window is not None:
        req = in_window(req, window)
    if req.empty:
        return pd.DataFrame(columns=cols)
    key = req["worker"].astype(str) + "/" + req["trace_id"].astype("int64").astype(str)
    req = req.assign(id=key.to_numpy()).set_index("id")[["t", "latency_ms"]]
    split = bool((timers["kind"] == "backend").any())
    fe = _first(timers, ("frontend", "monolith"), "f")
    srv = _first(timers, ("server",), "s")
    d = req.join(fe, how="inner").join(srv, how="inner")
    if split:
        d = d.join(_first(timers, ("backend",), "b"), how="inner")
        pool = "b"
    else:
        pool = "f"
    d = d.dropna(subset=["f_req", "f_resp", "s_req", "s_resp", f"{pool}_req", f"{pool}_resp"])
    if d.empty:
        return pd.DataFrame(columns=cols)
    ms = 1000.0
    c0 = d["t"]
    c1 = d["t"] + d["latency_ms"] / ms
    tw = d[f"{pool}_Tw"].clip(lower=0).fillna(0.0).astype(float)
    tc = d[f"{pool}_Tc"].clip(lower=0).fillna(0.0).astype(float)
    out = pd.DataFrame(index=d.index)
    out["t"] = c0
    out["latency_ms"] = d["latency_ms"]
    out["client_frontend"] = ((d["f_req"] - c0) + (c1 - d["f_resp"])) * ms
    out["frontend_backend"] = ((d["b_req"] - d["f_req"]) + (d["f_resp"] - d["b_resp"])) * ms if split else 0.0
    out["queue"] = tw
    out["connect"] = tc
    out["backend_server"] = ((d["s_req"] - d[f"{pool}_req"]) + (d[f"{pool}_resp"] - d["s_resp"])) * ms - tw - tc
    out["server"] = (d["s_resp"] - d["s_req"]) * ms
    out["lb_added"] = out["frontend_backend"] + out["connect"] + out["backend_server"]
    for p in ("f", "b", "s"):
        if f"{p}_term" in d:
            out[f"{p}_term"] = d[f"{p}_term"]
    return out.reset_index(drop=True)


def _stats(values: pd.Series) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": num(p50, 3), "p90": num(p90, 3), "p99": num(p99, 3), "mean": num(float(v.mean()), 3)}


def decomposition_summary(
    requests: pd.DataFrame,
    timers: pd.DataFrame,
    window: tuple[float, float],
    run: dict[str, Any],
    dropped_logs: float | None = None,
) -> dict[str, Any]:
    """``decomposition`` of summary.json: per hop p50/p90/p99/mean over the traced requests of the steady window."""
    scenario_load = (run.get("scenario") or {}).get("load") or {}
    steady = in_window(requests, window) if not requests.empty else requests
    traced = int(steady["trace_id"].notna().sum()) if not steady.empty and "trace_id" in steady else 0
    d = joined(requests, timers, window)
    split = ((run.get("topology") or {}).get("lb") or {}).get("layout", "split") != "monolith"
    hops = {h: _stats(d[h]) if not d.empty and (split or h != "frontend_backend") else _stats(pd.Series(dtype=float)) for h in HOPS}
    client = _stats(d["latency_ms"]) if not d.empty else _stats(pd.Series(dtype=float))
    sum_p50 = sum(hops[h]["p50"] or 0.0 for h in PARTS) if not d.empty else None
    terms: dict[str, dict[str, int]] = {}
    for col, who in (("f_term", "frontend"), ("b_term", "backend"), ("s_term", "server")):
        if not d.empty and col in d:
            terms[who] = {str(k): int(v) for k, v in d[col].astype(str).value_counts().items() if v}
    delay = requested_delay_ms(scenario_load.get("path"))
    served = hops["server"]
    return {
        "requests": len(d),
        "traced": traced,
        "sampled_pct": num(100.0 * traced / len(steady), 2) if traced and len(steady) else None,
        "trace_every": scenario_load.get("trace_every"),
        "hops_ms": hops,
        "client_ms": client,
        "sum_p50_ms": num(sum_p50, 3),
        "sum_p50_diff_ms": num(sum_p50 - client["p50"], 3) if sum_p50 is not None and client["p50"] is not None else None,
        "termination": terms,
        "requested_delay_ms": delay,
        "served_delay_ms": served,
        "served_over_requested_ms": {k: num(v - delay, 3) if v is not None and delay is not None else None for k, v in served.items()},
        "dropped_logs": num(dropped_logs, 0),
    }


def per_second(d: pd.DataFrame) -> pd.DataFrame:
    """Mean of each hop per second of send time (for the plot)."""
    if d.empty:
        return pd.DataFrame(columns=["t", "latency_ms", *PARTS])
    g = d.assign(t=np.floor(d["t"].astype(float))).groupby("t")
    return g[["latency_ms", *PARTS]].mean().reset_index()
