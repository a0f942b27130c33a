"""Client-side figures: request counts and rates, errors, latency, and the request timelines.

Inputs are the ``requests`` table (one row per request) and the ``latency_hist``
table (per load-generator process and second, a mergeable histogram of the
successful requests); see reports/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..results.histogram import Histogram, grouped_percentiles
from .common import inside, num, seconds_inside

#: Width of a request-timeline bin, seconds.
TIMELINE_BIN_S = 0.1
#: Percentiles reported for latency (summary keys p50, p90, p99, p999).
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}

TIMELINE_COLUMNS = ["t", "requests", "ok", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms"]


def ok_mask(req: pd.DataFrame) -> np.ndarray:
    """Which requests succeeded (``error`` empty), as a numpy mask."""
    return np.asarray(req["error"] == "", dtype=bool)


def steady_mask(req: pd.DataFrame, window: tuple[float, float], col: str = "t") -> np.ndarray:
    """Which requests started inside ``window`` (``start <= t < end``), as a numpy mask.

    Every figure of a long run is a count or a statistic over masks like this one
    on whole columns: no filtered copy of the table is made.
    """
    return np.asarray(inside(req[col].to_numpy(dtype=float), window), dtype=bool)


def str_mask(col: pd.Series, predicate: Callable[[pd.Series], pd.Series]) -> np.ndarray:
    """``predicate`` (a vectorised test on strings) over a string column, as a numpy mask.

    On a categorical column (how the long tables are read) it is evaluated once per
    distinct value, not once per row.
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        per_value = predicate(pd.Series(col.cat.categories.astype(str))).to_numpy(dtype=bool)
        return np.asarray(np.append(per_value, False)[col.cat.codes.to_numpy()], dtype=bool)  # code -1 (missing) -> False
    return np.asarray(predicate(col.astype(str)), dtype=bool)


def counts_by_value(col: pd.Series, mask: np.ndarray) -> dict[str, int]:
    """``{value: count}`` of ``col`` where ``mask``, by value (categorical or not, no zero counts)."""
    counts = col[mask].value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if v}


def merged_histogram(hist: pd.DataFrame, window: tuple[float, float] | None = None) -> Histogram:
    """Merge the per-worker, per-second histograms of ``latency_hist``.

    With ``window``, only seconds lying wholly inside it count (a histogram row covers
    the whole second ``[t, t+1)``).
    """
    h = hist
    if window is not None:
        h = h[seconds_inside(h["t"].astype(float), window)]
    counts = h.groupby("bucket")["count"].sum()
    return Histogram({int(b): int(c) for b, c in counts.items()})


def latency_summary(req: pd.DataFrame, hist: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``latency_ms``: percentiles of successful requests in the steady window, plus mean and max.

    Percentiles come from the merged histograms when the run has them (exact to the
    bucket width, < 1 %), else from the raw requests; ``source`` says which.
    Mean and max always come from the raw requests.
    """
    lat = req["latency_ms"].to_numpy(dtype=float)[steady_mask(req, window) & ok_mask(req)]
    merged = merged_histogram(hist, window)
    out: dict[str, Any] = {}
    source: str | None
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
    steady, ok = steady_mask(req, window), ok_mask(req)
    return {
        "total": len(req),
        "ok": int(ok.sum()),
        "steady": int(steady.sum()),
        "per_s": num(int((steady & ok).sum()) / span if span > 0 else 0.0, 1),
    }


def error_summary(req: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """``errors``: failed requests in the whole run, per kind, and in the steady window."""
    failed = ~ok_mask(req)
    steady = int((failed & steady_mask(req, window)).sum())
    span = window[1] - window[0]
    total = int(failed.sum())
    return {
        "total": total,
        "by_kind": counts_by_value(req["error"], failed),
        "steady": steady,
        "per_s": num(steady / span if span > 0 else 0.0, 3),
        "pct": num(100.0 * total / len(req), 3) if len(req) else None,
    }


def conn_new_mask(req: pd.DataFrame) -> np.ndarray | None:
    """Which requests opened a connection (``conn_new``); None when the engine could not tell for any."""
    flag = req["conn_new"]
    if flag.isna().all():
        return None
    return np.asarray(flag.fillna(False), dtype=bool)


def client_connections(req: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any]:
    """New connections as the load generator counted them (``conn_new``); nulls when it cannot tell."""
    new = conn_new_mask(req)
    if new is None:
        return {"total": None, "steady": None, "per_s": None}
    steady = int((new & steady_mask(req, window)).sum())
    span = window[1] - window[0]
    return {
        "total": int(new.sum()),
        "steady": steady,
        "per_s": num(steady / span if span > 0 else 0.0, 1),
    }


def sort_by_group_and_value(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The permutation that sorts by ``groups`` (non-negative ints < 2**32), then by ``values`` (floats).

    What ``np.lexsort((values, groups))`` gives, at a seventh of its cost for millions of
    rows: one stable radix sort of a 64-bit key (the group above the value rounded to
    float32, its bits made order-preserving), then the rare runs whose values round to the
    same float32 put in exact order.
    """
    return _sorted_keys(groups, values)[0]


def _sorted_keys(groups: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sort_by_group_and_value`'s permutation and the sorted 64-bit keys (the group in the upper 32 bits).

    Built in place where it can: at 10M rows every temporary array is 40-80 MB of fresh memory.
    """
    bits = values.astype(np.float32).view(np.uint32)
    # flip a negative float's bits and a positive float's sign bit: unsigned order = float order
    flip = bits >> np.uint32(31)  # 1 for a negative float
    flip *= np.uint32(0x7FFFFFFF)
    flip += np.uint32(0x80000000)  # 0xFFFFFFFF or 0x80000000
    bits ^= flip
    del flip
    key = groups.astype(np.uint64)
    key <<= np.uint64(32)
    key |= bits
    del bits
    order = np.argsort(key, kind="stable")
    ks = key[order]
    del key
    tied = np.flatnonzero(ks[1:] == ks[:-1])
    if tied.size:
        pos = np.union1d(tied, tied + 1)
        run = np.cumsum(np.r_[True, (pos[1:] != pos[:-1] + 1) | (ks[pos[1:]] != ks[pos[:-1]])])
        sub = order[pos]
        order[pos] = sub[np.lexsort((values[sub], run))]
    return order, ks


def group_quantiles(groups: np.ndarray, values: np.ndarray, qs: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: quantiles ``qs`` (0-1, linear interpolation: the same floats as pandas' groupby quantile) and the max.

    Returns the sorted distinct groups, an array ``[groups, qs]`` and the maxima.
    """
    order, g = _sorted_keys(groups, values)
    g >>= np.uint64(32)  # the sorted groups
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if g.size else np.array([], dtype=np.int64)
    n = np.diff(np.r_[starts, g.size])
    out = np.empty((starts.size, len(qs)))
    for j, q in enumerate(qs):
        pos = q * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        # the sorted values are values[order]: only the few positions read are gathered
        a, b = values[order[starts + lo]], values[order[starts + np.minimum(lo + 1, n - 1)]]
        out[:, j] = a + (b - a) * (pos % 1)
    return g[starts].astype(groups.dtype), out, values[order[starts + n - 1]]


def timeline(req: pd.DataFrame, bin_s: float = TIMELINE_BIN_S) -> pd.DataFrame:
    """The request timeline: per ``bin_s`` bin (by request start) counts and latency percentiles.

    Columns ``t`` (bin start, epoch s), ``requests``, ``ok``, ``errors`` and
    ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms`` of the successful requests (NaN in a
    bin without successes). Empty bins between the first and the last request are
    present with zero counts, so a gap in service shows as a gap.
    """
    if not len(req):
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("requests", "ok", "errors") else "float64") for c in TIMELINE_COLUMNS})
    t = req["t"].to_numpy(dtype=float)
    scaled = t / bin_s
    np.floor(scaled, out=scaled)
    rel = scaled.astype(np.int64)  # fresh arrays are made in place where they can: each is 80 MB at 10M rows
    del scaled
    first = int(rel.min())
    n = int(rel.max()) - first + 1
    rel -= first
    ok = ok_mask(req)
    requests = np.bincount(rel, minlength=n)
    errors = np.bincount(rel[~ok], minlength=n)  # errors are few: no copy of the successes' bins
    out = pd.DataFrame(
        {
            "t": (np.arange(n) + first) * bin_s,
            "requests": requests.astype(np.int64),
            "ok": (requests - errors).astype(np.int64),
            "errors": errors.astype(np.int64),
        }
    )
    latency = req["latency_ms"].to_numpy(dtype=float)
    if ok.all():
        bins, q, top = group_quantiles(rel, latency, [0.5, 0.9, 0.99])
    else:
        bins, q, top = group_quantiles(rel[ok], latency[ok], [0.5, 0.9, 0.99])
    for j, c in enumerate(("p50_ms", "p90_ms", "p99_ms", "max_ms")):
        col = np.full(n, np.nan)
        col[bins] = q[:, j] if j < 3 else top
        out[c] = col
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
        first = sec.min()
        sec -= first
        rel = sec.astype(np.int64)
        del sec
        ok = ok_mask(req)
        n = int(rel.max()) + 1
        total = np.bincount(rel, minlength=n)
        failed = np.bincount(rel[~ok], minlength=n)  # errors are few: no copy of the successes' seconds
        counts = pd.DataFrame({"requests": total, "ok": total - failed}, index=pd.Index(first + np.arange(n, dtype=float), name="t"))
        counts["errors"] = counts["requests"] - counts["ok"]
        if not req["conn_new"].isna().all():
            new = req["conn_new"].fillna(False).to_numpy(dtype=bool)
            counts["conn_new"] = np.bincount(rel[new], minlength=n)
        # seconds without a request have no counts (NaN), as if they were not in the table
        counts = counts[counts["requests"] > 0]
        parts.append(counts)
    names = [f"{k}_ms" for k in PERCENTILES]
    if not hist.empty:
        secs, pct = grouped_percentiles(hist["t"].to_numpy(), hist["bucket"].to_numpy(), hist["count"].to_numpy(), PERCENTILES.values())
        parts.append(pd.DataFrame(pct, index=pd.Index(secs.astype(float), name="t"), columns=names))
    elif not req.empty:
        ok_req = req[req["error"] == ""]
        if not ok_req.empty:
            g = ok_req.groupby(np.floor(ok_req["t"].to_numpy(dtype=float)))["latency_ms"]
            q = g.quantile([0.5, 0.9, 0.99, 0.999]).unstack()
            q.columns = names
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
