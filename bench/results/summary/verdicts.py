"""``bottleneck`` and ``checks``: what limited the run, and client vs HAProxy cross-checks (bench/analysis/bottleneck.py, checks.py)."""

from __future__ import annotations

from .base import Figure, Section


class Bottleneck(Section):
    component: str | None
    """loadgen, frontend, backend, monolith, server, ports, host, none; null without CPU samples"""
    verdict: str | None
    saturated: list[str] | None
    utilisation_pct: dict[str, Figure] | None
    evidence: list[str] | None
class Check(Section):
    """``checks[]``: one cross-check; ``ok`` null = not checked."""

    name: str | None
    ok: bool | None
    client: Figure
    haproxy: Figure
    diff_pct: Figure
    note: str | None
