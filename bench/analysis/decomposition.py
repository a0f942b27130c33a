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
import pyarrow as pa
import pyarrow.compute as pc

from .common import RunData, inside, num
from .requests import ok_mask

HOPS = ("client_frontend", "frontend_backend", "queue", "connect", "backend_server", "server", "lb_added")
#: The hops that make up the client's latency (``lb_added`` is a sum of some of them).
PARTS = ("client_frontend", "frontend_backend", "queue", "connect", "backend_server", "server")
_DELAY = re.compile(r"[?&]delay_ms=(\d+)")


def requested_delay_ms(path: str | None) -> float | None:
    """The ``delay_ms`` a scenario's path asks the dummy servers for (None: no delay asked)."""
    m = _DELAY.search(path or "")
    return float(m.group(1)) if m else None


#: A traced request's key: its writer's code times this, plus its trace number (which must be below it).
_KEY_STRIDE = 10**12
#: ``<worker>/<n>`` as the tracer writes it (n a whole number without leading zeros; the worker may hold '/').
_ID = r"^(?P<worker>.*)/(?P<n>0|[1-9][0-9]{0,11})$"


def _request_keys(req: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows of the traced successful requests, their integer keys, and the writers' names the keys' codes stand for.

    A key stands for the X-Lbbench-Id ``<worker>/<trace_id>`` (joining integers, not
    strings: a 10M-request run has about a million traced requests and three times
    as many timer lines).
    """
    worker = req["worker"]
    if isinstance(worker.dtype, pd.CategoricalDtype):
        codes, names = worker.cat.codes.to_numpy(), [str(c) for c in worker.cat.categories]
    else:
        codes, uniques = pd.factorize(worker.astype(str))
        names = [str(u) for u in uniques]
    n = req["trace_id"].to_numpy(dtype=float, na_value=np.nan)
    rows = np.flatnonzero(ok_mask(req) & (codes >= 0) & (n >= 0) & (n < _KEY_STRIDE))  # NaN (untraced) compares False
    return rows, codes[rows].astype(np.int64) * _KEY_STRIDE + n[rows].astype(np.int64), names


def _timer_keys(ids: pd.Series, names: list[str]) -> np.ndarray:
    """Each timer line's key (see :func:`_request_keys`); -1 where its id names no writer of ``names``."""
    if isinstance(ids.dtype, pd.CategoricalDtype):  # per distinct id, then per row
        per_id = _timer_keys(pd.Series(ids.cat.categories.astype(str)), names)
        return np.asarray(np.append(per_id, -1)[ids.cat.codes.to_numpy()], dtype=np.int64)
    parts = pc.extract_regex(pa.array(ids, type=pa.large_string(), from_pandas=True), _ID)
    code = pc.index_in(pc.struct_field(parts, "worker"), value_set=pa.array(names, pa.large_string()))
    n = pc.cast(pc.struct_field(parts, "n"), pa.int64())
    key = pc.add(pc.multiply(pc.cast(code, pa.int64()), _KEY_STRIDE), n)
    return np.asarray(pc.fill_null(key, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _first_line(keys: np.ndarray, of_kind: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per key of ``wanted``: the row of the first timer line of the kind (``of_kind``) with that key; -1 where none."""
    rows = np.flatnonzero(of_kind & (keys >= 0))
    if rows.size == 0:
        return np.full(wanted.size, -1, dtype=np.int64)
    distinct, first = np.unique(keys[rows], return_index=True)  # the first occurrence of each key
    at = np.minimum(np.searchsorted(distinct, wanted), distinct.size - 1)
    return np.where(distinct[at] == wanted, rows[first[at]], -1)


def joined(requests: pd.DataFrame, timers: pd.DataFrame, window: tuple[float, float] | None = None) -> pd.DataFrame:
    """One row per traced successful request found at every hop, with its hops in ms (see the module docstring).

    Columns: ``t`` (client send), ``latency_ms``, the hops of :data:`HOPS` and each
    process's ``*_term`` (termination state). Requests missing at a hop are left out;
    each process's first line of a request counts. Rows are in the requests' order.
    """
    cols = ["t", "latency_ms", *HOPS]
    if requests.empty or timers.empty or "trace_id" not in requests or requests["trace_id"].isna().all():
        return pd.DataFrame(columns=cols)
    rows, keys, names = _request_keys(requests)
    if window is not None:
        inside_window = inside(requests["t"].to_numpy(dtype=float)[rows], window)
        rows, keys = rows[inside_window], keys[inside_window]
    if rows.size == 0:
        return pd.DataFrame(columns=cols)
    timer_keys = _timer_keys(timers["id"], names)
    kind = timers["kind"]
    split = bool((kind == "backend").any())
    pool = "b" if split else "f"
    lines = {"f": _first_line(timer_keys, np.asarray(kind.isin(("frontend", "monolith")), dtype=bool), keys)}
    lines["s"] = _first_line(timer_keys, np.asarray(kind == "server", dtype=bool), keys)
    if split:
        lines["b"] = _first_line(timer_keys, np.asarray(kind == "backend", dtype=bool), keys)
    t_req = timers["t_req"].to_numpy(dtype=float, na_value=np.nan)
    t_resp = timers["t_resp"].to_numpy(dtype=float, na_value=np.nan)
    found = np.logical_and.reduce([line >= 0 for line in lines.values()])
    for line in lines.values():
        found &= ~np.isnan(t_req[line]) & ~np.isnan(t_resp[line])  # (a missing line's -1 reads a row found is False for)
    if not found.any():
        return pd.DataFrame(columns=cols)
    rows = rows[found]
    at = {p: line[found] for p, line in lines.items()}
    ms = 1000.0
    c0 = requests["t"].to_numpy(dtype=float)[rows]
    lat = requests["latency_ms"].to_numpy(dtype=float)[rows]
    c1 = c0 + lat / ms
    f_req, f_resp, s_req, s_resp = t_req[at["f"]], t_resp[at["f"]], t_req[at["s"]], t_resp[at["s"]]
    p_req, p_resp = t_req[at[pool]], t_resp[at[pool]]
    tw = np.nan_to_num(np.clip(timers["Tw"].to_numpy(dtype=float, na_value=np.nan)[at[pool]], 0, None), nan=0.0)
    tc = np.nan_to_num(np.clip(timers["Tc"].to_numpy(dtype=float, na_value=np.nan)[at[pool]], 0, None), nan=0.0)
    out = pd.DataFrame({"t": c0, "latency_ms": lat})
    out["client_frontend"] = ((f_req - c0) + (c1 - f_resp)) * ms
    out["frontend_backend"] = ((p_req - f_req) + (f_resp - p_resp)) * ms if split else 0.0
    out["queue"] = tw
    out["connect"] = tc
    out["backend_server"] = ((s_req - p_req) + (p_resp - s_resp)) * ms - tw - tc
    out["server"] = (s_resp - s_req) * ms
    out["lb_added"] = out["frontend_backend"] + out["connect"] + out["backend_server"]
    if "term" in timers:
        for p in ("f", "b", "s"):
            if p in at:
                out[f"{p}_term"] = timers["term"].take(at[p]).reset_index(drop=True)
    out.attrs["split"] = split  # the frontend and the pool are processes of their own
    return out


def traced_hops(data: RunData) -> pd.DataFrame:
    """:func:`joined` over a run's whole load, computed once per :class:`RunData` (the summary and the plot share it).

    The timer lines are let go once joined (a 10M-request run has about 3 million).
    """

    def join() -> pd.DataFrame:
        d = joined(data.requests, data.table("request_timers"))
        data.tables.pop("request_timers", None)
        return d

    return data.memo("decomposition.joined", join)


def _stats(values: pd.Series) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": num(p50, 3), "p90": num(p90, 3), "p99": num(p99, 3), "mean": num(float(v.mean()), 3)}


def str_value_counts(col: pd.Series) -> list[tuple[str, int]]:
    """``col.astype(str).value_counts()`` as ``(value, count)`` pairs, in its order (most first, ties as first seen).

    A categorical column (how the termination states are read) is counted by its codes:
    no string is made per row (a 10M-request run has about a million traced rows).
    """
    if not isinstance(col.dtype, pd.CategoricalDtype) or col.empty:
        return [(str(k), int(v)) for k, v in col.astype(str).value_counts().items()]
    codes = col.cat.codes.to_numpy()
    _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    seen = np.argsort(first)  # each distinct value in the order it first appears
    names = col.iloc[first[seen]].astype(str)  # the same conversion, one row per distinct value
    merged: dict[str, int] = {}
    for name, count in zip(names, counts[seen].tolist(), strict=True):
        if not pd.isna(name):  # a missing value stays missing as a string: value_counts leaves it out
            merged[str(name)] = merged.get(str(name), 0) + count
    return sorted(merged.items(), key=lambda kv: -kv[1])  # stable: ties keep their first-seen order


def decomposition_summary(
    requests: pd.DataFrame,
    timers: pd.DataFrame | None,
    window: tuple[float, float],
    run: dict[str, Any],
    dropped_logs: float | None = None,
    hops: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """``decomposition`` of summary.json: per hop p50/p90/p99/mean over the traced requests of the steady window.

    ``hops``: :func:`joined` of the whole run when the caller has it (:func:`traced_hops`);
    ``timers`` (``request_timers``) are joined otherwise.
    """
    scenario_load = (run.get("scenario") or {}).get("load") or {}
    steady = inside(requests["t"].to_numpy(dtype=float), window) if not requests.empty else np.zeros(0, dtype=bool)
    traced = int((steady & requests["trace_id"].notna().to_numpy()).sum()) if steady.any() and "trace_id" in requests else 0
    if hops is None:
        if timers is None:
            raise ValueError("decomposition_summary needs the timer lines or their join")
        d = joined(requests, timers, window)
    else:
        d = hops[inside(hops["t"], window)] if not hops.empty else hops
    split = ((run.get("topology") or {}).get("lb") or {}).get("layout", "split") != "monolith"
    hops = {h: _stats(d[h]) if not d.empty and (split or h != "frontend_backend") else _stats(pd.Series(dtype=float)) for h in HOPS}
    client = _stats(d["latency_ms"]) if not d.empty else _stats(pd.Series(dtype=float))
    sum_p50 = sum(hops[h]["p50"] or 0.0 for h in PARTS) if not d.empty else None
    terms: dict[str, dict[str, int]] = {}
    for col, who in (("f_term", "frontend"), ("b_term", "backend"), ("s_term", "server")):
        if not d.empty and col in d:
            terms[who] = {k: v for k, v in str_value_counts(d[col]) if v}
    delay = requested_delay_ms(scenario_load.get("path"))
    served = hops["server"]
    return {
        "requests": len(d),
        "traced": traced,
        "sampled_pct": num(100.0 * traced / int(steady.sum()), 2) if traced else None,
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
