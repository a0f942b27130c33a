"""``decomposition``: where each millisecond of a traced request went (bench/analysis/decomposition.py)."""

from __future__ import annotations

from .base import Figure, Section


class Quantiles(Section):
    """p50 / p90 / p99 / mean in ms."""

    p50: Figure
    p90: Figure
    p99: Figure
    mean: Figure


class Decomposition(Section):
    requests: int | None
    """traced successful requests of the steady window found at every hop"""
    traced: int | None
    sampled_pct: Figure
    trace_every: int | None
    hops_ms: dict[str, Quantiles] | None
    """client_frontend, frontend_backend, queue, connect, backend_server, server, lb_added"""
    client_ms: Quantiles | None
    sum_p50_ms: Figure
    sum_p50_diff_ms: Figure
    termination: dict[str, dict[str, int]] | None
    requested_delay_ms: Figure
    served_delay_ms: Quantiles | None
    served_over_requested_ms: Quantiles | None
    dropped_logs: Figure
