"""``run`` and ``window``: which run, and the steady-state window the figures cover."""

from __future__ import annotations

from .base import Figure, Section


class RunRef(Section):
    """``run``: copied from run.json."""

    id: str | None
    scenario: str | None
    variant: str | None
    status: str | None
    started_at: str | None
    ended_at: str | None


class Window(Section):
    """``window``: the steady-state window (epoch seconds) and its length."""

    start: Figure
    end: Figure
    seconds: Figure
