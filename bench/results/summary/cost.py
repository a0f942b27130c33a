"""``cost``: the load balancer's CPU per unit of work over the steady window (bench/analysis/cost.py)."""

from __future__ import annotations

from .base import Figure, Section


class RoleCost(Section):
    """``cost.by_role.<role>`` (frontend, backend, monolith)."""

    cpu_s: Figure
    us_per_request: Figure


class Cost(Section):
    window_s: Figure
    lb_cpu_s: Figure
    requests: Figure
    handshakes_full: Figure
    handshakes_resumed: Figure
    mb: Figure
    lb_us_per_request: Figure
    lb_us_per_full_handshake: Figure
    lb_us_per_resumed_handshake: Figure
    lb_ms_per_mb: Figure
    by_role: dict[str, RoleCost]
