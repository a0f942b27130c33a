"""``bottleneck`` and ``checks``: what limited the run, and client vs HAProxy cross-checks (bench/analysis/bottleneck.py, checks.py)."""

from __future__ import annotations

from .base import Figure, Section


class Limit(Section):
    """``bottleneck.limits[]``: one limit the run came near, with its numbers and the knob that moves it."""

    component: str | None
    limit: str | None
    subject: str | None
    used_pct: Figure
    reached: bool | None
    detail: str | None
    knob: str | None


class Bottleneck(Section):
    component: str | None
    """loadgen, server, frontend, backend, monolith, server-pool, ports, client-pool, contended, none; null without CPU samples"""
    limit: str | None = None
    """cpu, schedule, maxconn, fd, pool, ports, users, host; null for none"""
    verdict: str | None
    limits: list[Limit] | None = None
    saturated: list[str] | None
    contended: bool | None = None
    host_busy_pct: Figure = None
    utilisation_pct: dict[str, Figure] | None
    evidence: list[str] | None
    valid: bool | None = None
    """false when the lab changed before the steady window ended"""


class Check(Section):
    """``checks[]``: one cross-check; ``ok`` null = not checked."""

    name: str | None
    ok: bool | None
    client: Figure
    haproxy: Figure
    diff_pct: Figure
    note: str | None
    valid: bool | None = None
    """false when the lab changed during the run"""


class Problem(Section):
    """``integrity.problems[]``: one change of the lab nobody planned."""

    t: Figure
    after_s: Figure
    name: str | None
    subject: str | None
    message: str | None


class Integrity(Section):
    """``integrity``: did the lab stay the lab the run measured (bench/analysis/integrity.py)."""

    ok: bool | None
    problems: list[Problem] | None
    invalid_from: Figure
    invalid_from_s: Figure
    headline: str | None
