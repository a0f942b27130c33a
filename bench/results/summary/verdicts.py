"""``bottleneck`` and ``checks``: what limited the run, and client vs HAProxy cross-checks (bench/analysis/bottleneck.py, checks.py)."""

from __future__ import annotations

from .base import Figure, Section


class Bottleneck(Section):
    component: str | None
    """loadgen, frontend, backend, monolith, server, ports, host, none; null without CPU samples"""
    verdict: str
    saturated: list[str]
    utilisation_pct: dict[str, Figure]
    evidence: list[str]


class Check(Section):
    """``checks[]``: one cross-check; ``ok`` null = not checked."""

    name: str
    ok: bool | None
    client: Figure
    haproxy: Figure
    diff_pct: Figure
    note: str
