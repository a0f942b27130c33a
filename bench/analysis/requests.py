"""Client-side figures: request counts and rates, errors, latency, and the request timelines.

Inputs are the ``requests`` table (one row per request) and the ``latency_hist``
table (per load-generator process and second, a mergeable histogram of the
successful requests); see reports/README.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import num
from .histogram import Histogram

#: Width of a request-timeline bin, seconds.
TIMELINE_BIN_S = 0.1
#: Percentiles reported for latency (summary keys p50, p90, p99, p999).
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}

TIMELINE_COLUMNS = ["t", "requests", "ok", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms"]


def _steady(req: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    if req.empty:
        return req
    return req[(req["t"] >= window[0]) & (req["t"] < window[1])]


def merged_histogram(hist: pd.DataFrame, window: tuple[float, float] | None = None) -> Histogram:
    """Merge the per-worker, per-second histograms of ``latency_hist``.

    With ``window``, only seconds lying wholly inside it count (a histogram row covers
    the whole second ``[t, t+1)``).
    """
    if hist.empty:
        return Histogram()
    h = hist
    if window is not None:
        t = h["t"].astype(float)
        h = h[(t >= window[0]) & (t + 1.0 <= window[1])]
    counts = h.groupby("bucket")["count"].sum()
    return Histogram({int(b): int(c) for b, c in counts.items()})


def latency_summary(req: pd.DataFrame, hist: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``latency_ms``: percentiles of successful requests in the steady window, plus mean and max.

    Percentiles come from the merged histograms when the run has them (exact to the
    bucket width, < 1 %), else from the raw requests; ``source`` says which.
    Mean and max always come from the raw requests.
    """
    steady = _steady(req, window)
    ok = steady[steady["error"] == ""] if not steady.empty else steady
    lat = ok["latency_ms"].to_numpy(dtype=float) if not ok.empty else np.array([])
    merged = merged_histogram(hist, window)
    out: dict[str, Any] = {}
    if merged.total:
        for key, q in PERCENTILES.items():
            out[key] = num(merged.percentile(q))
        source = "latency_hist"
    else:
        for key, q in PERCENTILES.items():
            out[key] = num(np.percentile(lat, q)) if lat.size else None
        source = "requests" if lat.size else None
    out["mean"] = num(lat.mean()) if lat.size else None
    out["max"] = num(lat.max()) if lat.size else None
    out["source"] = source
    return out


def request_summary(req: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``requests``: totals for the whole run and the successful-request rate in the steady window."""
    start, end = window
    span = end - start
    steady = _steady(req, window)
    ok_steady = int((steady["error"] == "").sum()) if not steady.empty else 0
    return {
        "total": int(len(req)),
        "ok": int((req["error"] == "").sum()) if not req.empty else 0,
        "steady": int(len(steady)),
        "per_s": num(ok_steady / span if span > 0 else 0.0, 1),
    }


def error_summary(req: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``errors``: failed requests in the whole run, per kind, and in the steady window."""
    failed = req[req["error"] != ""] if not req.empty else req
    steady = _steady(failed, window)
    span = window[1] - window[0]
    by_kind = {str(k): int(v) for k, v in failed["error"].value_counts().sort_index().items()} if not failed.empty else {}
    return {
        "total": int(len(failed)),
        "by_kind": by_kind,
        "steady": int(len(steady)),
        "per_s": num(len(steady) / span if span > 0 else 0.0, 3),
        "pct": num(100.0 * len(failed) / len(req), 3) if len(req) else None,
    }


def client_connections(req: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """New connections as the load generator counted them (``conn_new``); nulls when it cannot tell."""
    if req.empty or "conn_new" not in req or req["conn_new"].isna().all():
        return {"total": None, "steady": None, "per_s": None}
    flag = req["conn_new"].fillna(False).astype(bool)
    steady_flag = flag[(req["t"] >= window[0]) & (req["t"] < window[1])]
    span = window[1] - window[0]
    return {
        "total": int(flag.sum()),
        "steady": int(steady_flag.sum()),
        "per_s": num(steady_flag.sum() / span if span > 0 else 0.0, 1),
    }


def timeline(req: pd.DataFrame, bin_s: float = TIMELINE_BIN_S) -> pd.DataFrame:
    """The request timeline: per ``bin_s`` bin (by request start) counts and latency percentiles.

    Columns ``t`` (bin start, epoch s), ``requests``, ``ok``, ``errors`` and
    ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms`` of the successful requests (NaN in a
    bin without successes). Empty bins between the first and the last request are
    present with zero counts, so a gap in service shows as a gap.
    """
    if req.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("requests", "ok", "errors") else "float64") for c in TIMELINE_COLUMNS})
    t = req["t"].to_numpy(dtype=float)
    idx = np.floor(t / bin_s).astype(np.int64)
    first = int(idx.min())
    n = int(idx.max()) - first + 1
    rel = idx - first
    ok_mask = (req["error"] == "").to_numpy(dtype=bool)
    requests = np.bincount(rel, minlength=n)
    ok = np.bincount(rel[ok_mask], minlength=n)
    out = pd.DataFrame(
        {
            "t": (np.arange(n) + first) * bin_s,
            "requests": requests.astype(np.int64),
            "ok": ok.astype(np.int64),
            "errors": (requests - ok).astype(np.int64),
        }
    )
    lat = pd.DataFrame({"bin": rel[ok_mask], "lat": req["latency_ms"].to_numpy(dtype=float)[ok_mask]})
    if not lat.empty:
        g = lat.groupby("bin")["lat"]
        q = g.quantile([0.5, 0.9, 0.99]).unstack()
        q.columns = ["p50_ms", "p90_ms", "p99_ms"]
        q["max_ms"] = g.max()
        out = out.join(q, how="left")
    for c in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        if c not in out:
            out[c] = np.nan
    out["t"] = out["t"].round(6)
    return out[TIMELINE_COLUMNS]


def per_second_requests(req: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Per whole second (by request start): ``requests``, ``ok``, ``errors``, ``conn_new`` and latency percentiles.

    Latency percentiles come from the merged histograms when present (all
    load-generator processes), else from the raw requests. Index-free DataFrame with a
    float ``t`` column (the second).
    """
    cols = ["t", "requests", "ok", "errors", "conn_new", "p50_ms", "p90_ms", "p99_ms", "p999_ms"]
    if req.empty and hist.empty:
        return pd.DataFrame(columns=cols, dtype=float)
    parts = []
    if not req.empty:
        sec = np.floor(req["t"].to_numpy(dtype=float))
        ok = (req["error"] == "").to_numpy(dtype=bool)
        d = pd.DataFrame({"t": sec, "requests": 1, "ok": ok.astype(int), "errors": (~ok).astype(int)})
        if "conn_new" in req and not req["conn_new"].isna().all():
            d["conn_new"] = req["conn_new"].fillna(False).astype(bool).astype(int).to_numpy()
        counts = d.groupby("t").sum()
        parts.append(counts)
    if not hist.empty:
        rows = {}
        for sec, h in hist.groupby("t"):
            merged = Histogram({int(b): int(c) for b, c in h.groupby("bucket")["count"].sum().items()})
            rows[float(sec)] = {f"{k}_ms": merged.percentile(q) for k, q in PERCENTILES.items()}
        parts.append(pd.DataFrame.from_dict(rows, orient="index"))
    elif not req.empty:
        ok_req = req[req["error"] == ""]
        if not ok_req.empty:
            g = ok_req.groupby(np.floor(ok_req["t"].to_numpy(dtype=float)))["latency_ms"]
            q = g.quantile([0.5, 0.9, 0.99, 0.999]).unstack()
            q.columns = ["p50_ms", "p90_ms", "p99_ms", "p999_ms"]
            parts.append(q)
    out = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    if not out.empty:
        grid = np.arange(out.index.min(), out.index.max() + 1.0, 1.0)
        out = out.reindex(grid)
        for c in ("requests", "ok", "errors"):
            if c in out:
                out[c] = out[c].fillna(0)
    out.index.name = "t"
    out = out.reset_index()
    for c in cols:
        if c not in out:
            out[c] = np.nan
    return out[cols].astype(float)
