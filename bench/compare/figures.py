"""The figures `bench compare` and `bench gate` know: summary.json keys, their direction, and derived values."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..results.figures import number


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


def figure_for(key: str) -> Figure:
    """The :class:`Figure` of a dotted summary key (known figures keep their direction)."""
    if key in BY_KEY:
        return BY_KEY[key]
    if _HIGHER.search(key):
        return Figure(key, "higher")
    if _LOWER.match(key):
        return Figure(key, "lower")
    return Figure(key, None)


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
