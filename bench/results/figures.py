"""Figures read from a summary by their dotted name, derived ones included (``cpu.lb_ms_per_request`` ...).

The one way a figure is read from summary.json by name: `bench compare`, `bench gate`
and a scenario's ``thresholds`` use it. A figure that older summaries lack but that
can be computed from what they hold (the load balancer's CPU per request, failover gap
statistics) is derived here, so every reader gets the same number.

    >>> lookup({"requests": {"per_s": 10.0}}, "requests.per_s")
    10.0
    >>> lookup({}, "requests.per_s") is MISSING
    True
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

#: The roles whose CPU is the load balancer's.
LB_ROLES = ("frontend", "backend", "monolith")

MISSING = object()


def lookup(summary: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a summary (``MISSING`` when a part of the path is absent).

    Derived figures (``cpu.lb_ms_per_request``, ``cost.lb_us_per_request`` of runs
    older than the ``cost`` section, ``failover.gap_s.*`` from events) are computed
    when summary.json does not hold them.
    """
    node: Any = summary
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = MISSING
            break
    if node is MISSING or node is None:
        derived = _DERIVED.get(key)
        if derived is None and key.startswith("failover.gap_s."):
            derived = _failover_gap
        if derived is not None:
            value = derived(summary, key)
            if value is not None:
                return value
    return node


def number(value: Any) -> float | None:
    """A finite float, or None (null, missing, text, bool, NaN)."""
    if value is MISSING or value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _lb_cpu_ms_per_request(summary: dict[str, Any], _key: str) -> float | None:
    """CPU milliseconds the HAProxy processes spent per successful request (steady state).

    From ``cost.lb_us_per_request`` when the run has it, else the mean CPU of the
    HAProxy containers over the client's request rate (older runs).
    """
    cost = summary.get("cost")
    if isinstance(cost, dict) and number(cost.get("lb_us_per_request")) is not None:
        return float(cost["lb_us_per_request"]) / 1000.0
    cpu = summary.get("cpu") or {}
    per_s = number(lookup(summary, "requests.per_s"))
    if not isinstance(cpu, dict) or not per_s:
        return None
    by_container = cpu.get("by_container")
    if not isinstance(by_container, dict):
        return None
    pct = 0.0
    found = False
    for name, c in by_container.items():
        if not isinstance(c, dict):
            continue
        role = c.get("role")
        is_lb = role in LB_ROLES if role else bool(re.search(r"(^|[-_])lb-[a-z0-9]+-(frontend|backend)", str(name)))
        mean = number(c.get("total_mean_pct"))
        if mean is None and isinstance(c.get("mean_pct"), list):
            mean = sum(v for v in (number(x) for x in c["mean_pct"]) if v is not None)
        if is_lb and mean is not None:
            pct += mean
            found = True
    if not found:
        return None
    return 1000.0 * (pct / 100.0) / per_s


def _lb_us_per_request(summary: dict[str, Any], key: str) -> float | None:
    cost = summary.get("cost")
    if isinstance(cost, dict) and "lb_us_per_request" in cost:
        return None  # the run has the section: a null there means no requests, not "derive it"
    ms = _lb_cpu_ms_per_request(summary, key)
    return None if ms is None else 1000.0 * ms


def _failover_gap(summary: dict[str, Any], key: str) -> float | None:
    """``failover.gap_s.{min,median,p95,max}`` from ``failover.events[].gap_s`` when not summarised."""
    events = (summary.get("failover") or {}).get("events") if isinstance(summary.get("failover"), dict) else None
    if not isinstance(events, list):
        return None
    gaps = np.array([g for g in (number(e.get("gap_s")) for e in events if isinstance(e, dict)) if g is not None])
    if gaps.size == 0:
        return None
    stat = key.rsplit(".", 1)[1]
    funcs: dict[str, Callable[[np.ndarray], float]] = {
        "min": np.min,
        "median": np.median,
        "p95": lambda g: np.percentile(g, 95),
        "max": np.max,
        "mean": np.mean,
    }
    return float(funcs[stat](gaps)) if stat in funcs else None


_DERIVED: dict[str, Callable[[dict[str, Any], str], float | None]] = {
    "cpu.lb_ms_per_request": _lb_cpu_ms_per_request,
    "cost.lb_us_per_request": _lb_us_per_request,
}
