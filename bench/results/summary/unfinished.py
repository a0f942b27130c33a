"""``unfinished``: requests sent and never finished when the load ended (bench/analysis/unfinished.py)."""

from __future__ import annotations

from .base import Figure, Section


class WorkerUnfinished(Section):
    """``unfinished.by_worker.<host:pid>``: one load-generator process's unfinished requests."""

    count: int
    oldest_s: Figure
    """the longest any of them had waited when it was dropped, s"""


class Bound(Section):
    """``unfinished.bounds.<figure>``: the range a figure could take had the unfinished requests finished."""

    low: Figure
    """as if each had succeeded the moment it was dropped (where that lowers the figure), or the counts without them"""
    high: Figure
    """as if none had ever finished (slower than every finished request); null = unbounded"""


class Unfinished(Section):
    total: int
    """requests sent and dropped unanswered when the load ended (or their user stopped): in no requests row"""
    at_stop: int | None = None
    """of them, sent after the load generator began stopping (the load's end) and cut by the stop at once: no request
    of the measured load, so in no figure's range (``bounds``), ``steady`` or ``large``; null in summaries written before it"""
    steady: int
    """of them, waiting during the steady window: sent before it ended (in it, or in the ramp and never answered)"""
    steady_pct: Figure
    """``steady`` as % of them and the requests started in the steady window"""
    oldest_s: Figure
    """the longest any of them had waited when it was dropped, s (null without any)"""
    large: bool
    """at least 1 % of the steady window's requests, or the oldest waited over 1 s and longer than every finished request"""
    by_phase: dict[str, int]
    """how many waited for the connect (TCP or TLS handshake) and for the response (engines that can tell)"""
    by_worker: dict[str, WorkerUnfinished]
    bounds: dict[str, Bound]
    """per summary field they could change (dotted): its range had they finished; empty without unfinished requests"""
