"""Per-slice figures of one run directory: what a duet pairs, slice by slice.

A slice is a stretch of time ``[start, end)`` (epoch seconds). For each slice this
reads, from the files of the run directory only:

- the load balancer's cost (:mod:`bench.analysis.cost`): ``cost.lb_us_per_request``,
  ``cost.lb_us_per_full_handshake``, ``cost.lb_us_per_resumed_handshake``,
  ``cost.lb_ms_per_mb``, and per role ``cost.by_role.<role>.us_per_request``;
- latency of the successful requests whose *intended* send time (rate models) falls
  in the slice, measured from that time (coordinated-omission corrected):
  ``latency_ms.p50``, ``latency_ms.p99``;
- ``errors.total`` (failed requests intended in the slice), ``errors.pct`` (of
  all requests intended in it), ``requests.total``;
- the load generator's own health from the ``pacing`` table: ``load.late``,
  ``load.dropped`` (sends that went out late or never), so a slice where the
  harness fell behind is seen for what it is.

Columns are named like the summary.json fields they correspond to, so gate rules
name the same figure whether they judge runs or slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis.cost import cost_intervals
from .results.store import read_table

#: Figures of a slice, in table order: (column, better, description).
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("cost.lb_us_per_request", "lower", "HAProxy CPU per request, µs (all HAProxy containers / HAProxy's requests)"),
    ("cost.lb_us_per_full_handshake", "lower", "HAProxy CPU per full TLS handshake, µs"),
    ("cost.lb_us_per_resumed_handshake", "lower", "HAProxy CPU per resumed TLS handshake, µs"),
    ("cost.lb_ms_per_mb", "lower", "HAProxy CPU per MB through the client side, ms"),
    ("latency_ms.p50", "lower", "median latency from the intended send time, ms"),
    ("latency_ms.p99", "lower", "99th percentile latency from the intended send time, ms"),
    ("errors.total", "lower", "failed requests"),
    ("errors.pct", "lower", "failed requests, % of the requests intended in the slice"),
    ("requests.total", "higher", "requests answered"),
)
_COST = {
    "cost.lb_us_per_request": "lb_us_per_request",
    "cost.lb_us_per_full_handshake": "lb_us_per_full_handshake",
    "cost.lb_us_per_resumed_handshake": "lb_us_per_resumed_handshake",
    "cost.lb_ms_per_mb": "lb_ms_per_mb",
}
#: The columns each table is read with (only what the slices need: they are read at every look).
CPU_COLUMNS = ("t", "container", "role", "cpu", "usage_s")
STAT_COLUMNS = ("t", "node", "service", "kind", "pxname", "type", "req_tot", "ssl_sess", "ssl_reused_sess", "bin", "bout")
REQUEST_COLUMNS = ("t", "latency_ms", "error", "intended_t", "latency_corrected_ms")
PACING_COLUMNS = ("t", "due", "late", "dropped")
#: A slice's full-handshake or resumed-handshake cost counts only with at least this many of them.
MIN_HANDSHAKES = 20


def side_slices(run_dir: Path, edges: Sequence[float]) -> pd.DataFrame:
    """One row per slice between consecutive ``edges``: every figure of :data:`FIGURES` plus the raw counts."""
    run_dir = Path(run_dir)
    edges_a = np.asarray(edges, dtype=float)
    cost = cost_intervals(read_table(run_dir, "cpu", CPU_COLUMNS), read_table(run_dir, "haproxy_stat", STAT_COLUMNS), edges_a)
    out = pd.DataFrame({"slice": np.arange(edges_a.size - 1), "start": edges_a[:-1], "end": edges_a[1:]})
    for col, src in _COST.items():
        out[col] = cost[src].to_numpy(dtype=float)
    for kind in ("full", "resumed"):
        few = cost[f"handshakes_{kind}"].fillna(0).to_numpy() < MIN_HANDSHAKES
        out.loc[few, f"cost.lb_us_per_{kind}_handshake"] = np.nan
    for col in cost.columns:
        if col.endswith("_us_per_request") and col != "lb_us_per_request":
            out[f"cost.by_role.{col[: -len('_us_per_request')]}.us_per_request"] = cost[col].to_numpy(dtype=float)
    out["lb_cpu_s"] = cost["lb_cpu_s"].to_numpy(dtype=float)
    out["haproxy_requests"] = cost["requests"].to_numpy(dtype=float)
    lat = _latency(run_dir, edges_a)
    for col in lat.columns:
        out[col] = lat[col].to_numpy()
    pace = _pacing(run_dir, edges_a)
    for col in pace.columns:
        out[col] = pace[col].to_numpy()
    return out


def _latency(run_dir: Path, edges: np.ndarray) -> pd.DataFrame:
    req = read_table(run_dir, "requests", REQUEST_COLUMNS)
    n = edges.size - 1
    out = pd.DataFrame(
        {"latency_ms.p50": np.full(n, np.nan), "latency_ms.p99": np.full(n, np.nan), "errors.total": np.zeros(n), "requests.total": np.zeros(n), "errors.pct": np.full(n, np.nan)}
    )
    if req.empty:
        return out
    scheduled = "intended_t" in req and req["intended_t"].notna().any()
    if scheduled:
        req = req[req["intended_t"].notna()]
        t = req["intended_t"].to_numpy(dtype=float)
        lat = req["latency_corrected_ms"].to_numpy(dtype=float)
    else:
        t = req["t"].to_numpy(dtype=float)
        lat = req["latency_ms"].to_numpy(dtype=float)
    idx = np.searchsorted(edges, t, side="right") - 1
    inside = (idx >= 0) & (idx < n)
    failed = (req["error"] != "").to_numpy(dtype=bool)
    ok = ~failed & inside
    bad = failed & inside
    out["errors.total"] = np.bincount(idx[bad], minlength=n)[:n].astype(float)
    out["requests.total"] = np.bincount(idx[ok], minlength=n)[:n].astype(float)
    answered = out["requests.total"] + out["errors.total"]
    out["errors.pct"] = np.where(answered > 0, 100.0 * out["errors.total"] / answered.where(answered > 0, 1.0), np.nan)
    frame = pd.DataFrame({"i": idx[ok], "lat": lat[ok]})
    if not frame.empty:
        g = frame.groupby("i")["lat"]
        out.loc[:, "latency_ms.p50"] = g.quantile(0.5).reindex(range(n)).to_numpy()
        out.loc[:, "latency_ms.p99"] = g.quantile(0.99).reindex(range(n)).to_numpy()
    return out


def _pacing(run_dir: Path, edges: np.ndarray) -> pd.DataFrame:
    """Late and dropped sends per slice (whole seconds of the ``pacing`` table that start inside the slice)."""
    n = edges.size - 1
    out = pd.DataFrame({"load.due": np.zeros(n), "load.late": np.zeros(n), "load.dropped": np.zeros(n)})
    pacing = read_table(run_dir, "pacing", PACING_COLUMNS)
    if pacing.empty:
        return out
    t = pacing["t"].to_numpy(dtype=float)
    idx = np.searchsorted(edges, t, side="right") - 1
    inside = (idx >= 0) & (idx < n)
    for col in ("due", "late", "dropped"):
        out[f"load.{col}"] = np.bincount(idx[inside], weights=pacing[col].to_numpy(dtype=float)[inside], minlength=n)[:n]
    return out


def paired_figures(base: pd.DataFrame, cand: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Figure -> (baseline values, candidate values) over the slices both sides have."""
    n = min(len(base), len(cand))
    out = {}
    for col in base.columns:
        if col in ("slice", "start", "end") or col not in cand:
            continue
        out[col] = (base[col].to_numpy(dtype=float)[:n], cand[col].to_numpy(dtype=float)[:n])
    return out


def over_slices(metric: str, frame: pd.DataFrame) -> float | None:
    """One side's value of a figure over all its slices, for an absolute rule.

    Counts (``errors.total``, ``requests.total``) add up; ``errors.pct`` is the
    share of the totals; any other figure is the median over the slices.
    """
    if metric in ("errors.total", "requests.total"):
        return float(np.nansum(frame[metric]))
    if metric == "errors.pct":
        errors, ok = float(np.nansum(frame["errors.total"])), float(np.nansum(frame["requests.total"]))
        return 100.0 * errors / (errors + ok) if errors + ok > 0 else None
    values = frame[metric].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None
