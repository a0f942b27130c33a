"""Requests sent and never finished: how many, how long they had waited, and what they could change.

The load generator records a request when it finishes (a response or an
error). One still in flight when the load ends (or when its user is stopped)
is dropped unanswered and has no ``requests`` row; the engines write it to the
``unfinished`` table instead (bench/load/capture.py). Left out, they would make
a hung server look like a fall in throughput with no errors, and the latency
figures and SLO thresholds would be computed from the finished requests only:
a p99 could pass while requests never completed.

This module counts them (``unfinished`` section of summary.json) and gives, for
each figure they could change, the range it could take had they finished
(``bounds``): ``low`` as if each had succeeded the moment it was dropped (its
wait is the least it could have taken) where that lowers the figure, ``high``
as if none had ever finished (slower than every finished one: null when that
is unbounded). A threshold whose verdict differs across that range is
``undecided`` (bench/thresholds.py), as find-max's ``p99_ms(unfinished)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..results.histogram import Histogram
from .common import inside, num
from .requests import PERCENTILES, merged_histogram, ok_mask, steady_mask

#: Unfinished requests are "large" (named in the bottleneck verdict and the terminal) from this share of the
#: steady window's requests: as many as the p99 leaves above it, so they could move it anywhere.
LARGE_PCT = 1.0
#: ... or when the oldest had waited longer than this and than every finished request: a hang the figures hide.
LARGE_WAIT_S = 1.0


def unfinished_summary(
    unf: pd.DataFrame,
    req: pd.DataFrame,
    hist: pd.DataFrame,
    window: tuple[float, float],
    latency: dict[str, Any],
) -> dict[str, Any]:
    """The ``unfinished`` section: counts, waits per load-generator process, and the figures' ``bounds``.

    ``latency`` is the ``latency_ms`` section already computed (its values are
    the middle of each latency range).
    """
    total = len(unf)
    t = unf["t"].to_numpy(dtype=float)
    waited = unf["dropped_t"].to_numpy(dtype=float) - t
    # Sent after the load generator began stopping (a user whose wait ended as Locust stopped it): cut by the
    # stop itself, at once. Not a request of the measured load: counted (at_stop), in no figure's range.
    cut = cut_by_stop(unf)
    load = ~cut
    # waiting during the steady window: sent before it ended. One sent in the ramp and never answered
    # is as much a request the window's figures leave out as one sent in it (a user hung all along).
    steady = np.asarray(inside(t, (-math.inf, window[1])), dtype=bool) & load
    n_steady = int(steady.sum())
    recorded_steady = int(steady_mask(req, window).sum())
    by_worker: dict[str, dict[str, Any]] = {}
    if total:
        for worker, w in pd.Series(waited).groupby(unf["worker"].astype(str).to_numpy()):
            by_worker[str(worker)] = {"count": len(w), "oldest_s": num(float(w.max()))}
    phases = unf["phase"].astype(str)
    by_phase = {str(k): int(v) for k, v in phases[phases != ""].value_counts().sort_index().items()}
    oldest = float(waited.max()) if total else None
    oldest_load = float(waited[load].max()) if load.any() else None
    both = recorded_steady + n_steady
    steady_pct = 100.0 * n_steady / both if both else None
    finished_max = latency.get("max")
    large = bool(
        load.any()
        and (
            (steady_pct is not None and steady_pct >= LARGE_PCT)
            or (oldest_load is not None and oldest_load > LARGE_WAIT_S and (finished_max is None or oldest_load * 1000.0 > finished_max))
        )
    )
    return {
        "total": total,
        "at_stop": int(cut.sum()),
        "steady": n_steady,
        "steady_pct": num(steady_pct, 3),
        "oldest_s": num(oldest),
        "large": large,
        "by_phase": by_phase,
        "by_worker": by_worker,
        "bounds": figure_bounds(req, hist, window, latency, waited[load], steady[load]) if load.any() else {},
    }


def _bound(low: float | None, high: float | None) -> dict[str, float | None]:
    return {"low": num(low), "high": num(high) if high is not None and math.isfinite(high) else None}


def figure_bounds(
    req: pd.DataFrame,
    hist: pd.DataFrame,
    window: tuple[float, float],
    latency: dict[str, Any],
    waited_s: np.ndarray,
    steady: np.ndarray,
) -> dict[str, dict[str, float | None]]:
    """Per summary figure the unfinished requests could change: ``{"low", "high"}`` (high null = unbounded).

    ``waited_s`` is how long each unfinished request had waited when it was
    dropped; ``steady`` which of them waited during the steady window (the
    latency figures and the steady counts are of that window; totals of the run).
    """
    u, us = int(waited_s.size), int(steady.sum())
    span = window[1] - window[0]
    n = len(req)
    ok = ok_mask(req)
    n_ok, failed = int(ok.sum()), n - int(ok.sum())
    in_steady = steady_mask(req, window)
    ok_steady, failed_steady = int((ok & in_steady).sum()), int((~ok & in_steady).sum())
    out: dict[str, dict[str, float | None]] = {
        # finished: one more request each (a success or an error); never: the counts stay
        "requests.total": _bound(n, n + u),
        "requests.ok": _bound(n_ok, n_ok + u),
        "errors.total": _bound(failed, failed + u),
        "errors.pct": _bound(100.0 * failed / (n + u), 100.0 * (failed + u) / (n + u)),
    }
    if us:
        recorded = int(in_steady.sum())
        out["requests.steady"] = _bound(recorded, recorded + us)
        out["errors.steady"] = _bound(failed_steady, failed_steady + us)
        if span > 0:
            out["requests.per_s"] = _bound(ok_steady / span, (ok_steady + us) / span)
            out["errors.per_s"] = _bound(failed_steady / span, (failed_steady + us) / span)
        out.update(_latency_bounds(req, hist, window, latency, 1000.0 * waited_s[steady]))
    return out


def _latency_bounds(req: pd.DataFrame, hist: pd.DataFrame, window: tuple[float, float], latency: dict[str, Any], waited_ms: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Bounds of ``latency_ms.*`` with the steady window's unfinished requests (their waits ``waited_ms``)."""
    lat = req["latency_ms"].to_numpy(dtype=float)[steady_mask(req, window) & ok_mask(req)]
    u = waited_ms.size
    out: dict[str, dict[str, float | None]] = {}
    merged = merged_histogram(hist, window) if latency.get("source") == "latency_hist" else None
    for key, q in PERCENTILES.items():
        value = latency.get(key)
        high: float | None
        low: float | None
        # the least it could be: the waits below it as if each had succeeded the moment it was dropped
        below = waited_ms[waited_ms < value] if value is not None else waited_ms
        if merged is not None:
            high = _rank_value(merged, q, u)
            low_h = Histogram(merged.counts)
            low_h.add_many(below)
            low = low_h.percentile(q)
        else:
            high = float(np.percentile(np.r_[lat, np.full(u, np.inf)], q, method="higher")) if lat.size + u else None
            both = np.r_[lat, below]
            low = float(np.percentile(both, q)) if both.size else None
        if value is not None and low is not None:
            low = min(low, value)
        out[f"latency_ms.{key}"] = _bound(low, high if high is not None else math.inf)
    mean = latency.get("mean")
    if lat.size or u:
        # the least mean: add the waits below it, smallest first, while each still lowers it
        total, count = float(lat.sum()), int(lat.size)
        for w in np.sort(waited_ms):
            if count and w >= total / count:
                break
            total, count = total + float(w), count + 1
        out["latency_ms.mean"] = _bound(total / count if count else mean, math.inf)
        out["latency_ms.max"] = _bound(latency.get("max") if lat.size else float(waited_ms.max()), math.inf)
    return out


def _rank_value(h: Histogram, q: float, unfinished: int) -> float:
    """Percentile ``q`` of ``h`` with ``unfinished`` more values above every one of it (inf when they reach the rank)."""
    n = h.total
    rank = math.ceil(q / 100.0 * (n + unfinished))
    return math.inf if rank > n or n == 0 else h.at_rank(rank)


def cut_by_stop(unf: pd.DataFrame) -> np.ndarray:
    """Which rows of an ``unfinished`` table the stop itself cut (``after_stop``; rows written before the mark: none)."""
    if "after_stop" not in unf.columns:
        return np.zeros(len(unf), dtype=bool)
    return np.asarray(unf["after_stop"].eq(True).fillna(False).to_numpy(dtype=bool))


def of_the_load(section: dict[str, Any] | None) -> int:
    """How many of a summary's unfinished requests were of the measured load: ``total`` less those the stop cut (``at_stop``)."""
    s = section or {}
    return int(s.get("total") or 0) - int(s.get("at_stop") or 0)


def count_text(section: dict[str, Any] | None) -> str | None:
    """``N requests unfinished at the load's end, oldest waiting X s`` for the load's own (None without any)."""
    n = of_the_load(section)
    if n <= 0:
        return None
    return f"{n:,} request{'s' if n != 1 else ''} unfinished at the load's end, oldest waiting {float((section or {}).get('oldest_s') or 0):.1f} s"


def unfinished_line(section: dict[str, Any] | None) -> str | None:
    """``N requests unfinished at the load's end, oldest waiting X s`` (None when there were none or the run predates the count).

    Requests sent as the load stopped and cut by the stop (``at_stop``) are said apart: they are no
    request of the measured load.
    """
    s = section or {}
    total = s.get("total")
    if not total:
        return None
    at_stop = int(s.get("at_stop") or 0)
    cut = f"{at_stop:,} request{'s' if at_stop != 1 else ''} sent as the load stopped, cut by the stop at once (in no figure's range)"
    line = count_text(s)
    if line is None:
        return cut
    if s.get("steady"):
        line += f" ({s['steady']:,} waiting in the steady window, {s.get('steady_pct') or 0:g}% of its requests)"
    line += ": sent and never answered, in no latency figure"
    return f"{line}; {cut}" if at_stop else line


def note_in_bottleneck(bottleneck: dict[str, Any], unfinished: dict[str, Any]) -> dict[str, Any]:
    """The bottleneck verdict names the unfinished requests when they are ``large`` (else it is left as it is)."""
    line = unfinished_line(unfinished)
    if line is None or not unfinished.get("large"):
        return bottleneck
    out = dict(bottleneck)
    verdict = out.get("verdict")
    out["verdict"] = f"{verdict}; {line}" if verdict else line
    out["evidence"] = [*(out.get("evidence") or []), line]
    return out
