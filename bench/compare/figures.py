"""The figures `bench compare` and `bench gate` know: summary.json keys, their direction, and derived values."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Figure:
    """One figure of a comparison: a dotted summary.json key and how to read it."""

    key: str
    better: str | None  # "higher", "lower" or None (unknown: the ratio says higher/lower)
    description: str = ""

    @property
    def words(self) -> tuple[str, str]:
        """(word when better, word when worse)."""
        if self.better is None:
            return ("higher", "lower")
        if "per_s" in self.key or self.key.startswith("latency_ms."):
            return ("faster", "slower")
        return ("better", "worse")


#: The key figures, in table order.
KEY_FIGURES: tuple[Figure, ...] = (
    Figure("requests.per_s", "higher", "successful requests per second, steady state"),
    Figure("connections.per_s", "higher", "new client connections per second"),
    Figure("tls.handshakes_per_s", "higher", "full TLS handshakes per second (SslFrontendKeyRate)"),
    Figure("latency_ms.p50", "lower", "median latency of successful requests, ms"),
    Figure("latency_ms.p99", "lower", "99th percentile latency, ms"),
    Figure("errors.total", "lower", "failed requests, whole run"),
    Figure("cost.lb_us_per_request", "lower", "CPU of the HAProxy containers per request HAProxy served, µs"),
    Figure("ports.max_utilisation_pct", "lower", "peak ephemeral-port utilisation of the busiest source address, %"),
    Figure("failover.gap_s.median", "lower", "failover gap, median over injections, s"),
    Figure("failover.gap_s.p95", "lower", "failover gap, p95 over injections, s"),
)
BY_KEY = {f.key: f for f in KEY_FIGURES}
#: Summary fields that are better when higher / lower, for figures outside KEY_FIGURES.
_HIGHER = re.compile(r"(per_s|_mbps|resumption_pct)$|^requests\.total$")
_LOWER = re.compile(r"^(latency_ms|errors|failover|cpu|ports|cost)\.")
#: CPU roles that make up "the load balancer" (HAProxy processes).
LB_ROLES = ("frontend", "backend", "monolith")


def figure_for(key: str) -> Figure:
    """The :class:`Figure` of a dotted summary key (known figures keep their direction)."""
    if key in BY_KEY:
        return BY_KEY[key]
    if _HIGHER.search(key):
        return Figure(key, "higher")
    if _LOWER.match(key):
        return Figure(key, "lower")
    return Figure(key, None)


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


def numeric_keys(summary: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a summary that holds a number (for "did you mean" messages)."""
    out = []
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(numeric_keys(v, key + "."))
        elif number(v) is not None:
            out.append(key)
    return out


def is_count(metric: str) -> bool:
    """Figures that count things (shown without decimals): ``errors.total``, ``requests.ok`` ..."""
    return (metric.startswith("errors.") and not metric.endswith(("per_s", "pct"))) or metric.endswith((".total", ".ok", ".steady"))


def fmt_value(value: float | None, spread: float | None = None, count: bool = False) -> str:
    """A figure's value for a table: ``3108.0``, ``4.41``, ``0.219``, counts as ``12``, with ``±1.2%`` for repeats; ``n/a`` when absent."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    if value == 0 or (count and float(value).is_integer()):
        text = f"{int(value)}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    if spread is not None:
        text += f" ±{spread:.1f}%"
    return text


def ratio_of(base: float | None, cand: float | None) -> float | None:
    """cand/base; 1.0 when both are zero, inf when only the baseline is zero, None when either is missing."""
    if base is None or cand is None:
        return None
    if base == 0:
        return 1.0 if cand == 0 else math.inf
    return cand / base


def phrase(ratio: float | None, figure: Figure) -> str:
    """asv/pyperf-style wording of a ratio, by the figure's direction.

    >>> phrase(0.8, figure_for("requests.per_s"))
    '1.25x slower'
    >>> phrase(1.1, figure_for("latency_ms.p99"))
    '1.10x slower'
    """
    if ratio is None:
        return "n/a"
    good, bad = figure.words
    up = ratio > 1
    if figure.better is None:
        word = "higher" if up else "lower"
    else:
        word = good if (figure.better == "higher") == up else bad
    if math.isinf(ratio):
        return f"{word} (from 0)"
    if ratio == 0:
        return f"{word} (to 0)"
    factor = ratio if ratio >= 1 else 1 / ratio
    if round(factor, 2) == 1.0:
        return "same"
    return f"{factor:.2f}x {word}"


def is_worse(ratio: float | None, figure: Figure) -> bool | None:
    """True when the change goes the bad way for the figure (None when unknown)."""
    if ratio is None or figure.better is None or ratio == 1:
        return None
    return (ratio < 1) if figure.better == "higher" else (ratio > 1)
