"""``requests``, ``errors``, ``latency_ms``, ``bytes``: the client's view (bench/analysis/requests.py)."""

from __future__ import annotations

from typing import Literal

from .base import Figure, Section


class Requests(Section):
    total: int | None
    ok: int | None
    steady: int | None
    per_s: Figure


class Errors(Section):
    total: int | None
    by_kind: dict[str, int] | None
    steady: int | None
    per_s: Figure
    pct: Figure


class CorrectedLatency(Section):
    """``latency_ms.corrected``: from the intended send time, with the uncorrected figures beside."""

    n: int | None
    p50: Figure
    p50_uncorrected: Figure
    p90: Figure
    p90_uncorrected: Figure
    p99: Figure
    p99_uncorrected: Figure
    p999: Figure
    p999_uncorrected: Figure
    mean: Figure
    mean_uncorrected: Figure
    max: Figure
    max_uncorrected: Figure


class Latency(Section):
    p50: Figure
    p90: Figure
    p99: Figure
    p999: Figure
    mean: Figure
    max: Figure
    source: Literal["latency_hist", "requests"] | None
    corrected: CorrectedLatency | None


class Bytes(Section):
    total: int | None
