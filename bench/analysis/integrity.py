"""``integrity``: did the lab stay the lab the run measured?

:class:`bench.collect.integrity.LabWatch` writes one ``integrity`` event into
``events.jsonl`` for every change nobody planned (a container that exited, was
paused or restarted, the engine going away, the VIP moving without a fault, the
collectors losing sources). From the first of them on, the run's figures no
longer describe its lab: the summary says so here, and every verdict and check
whose interval reaches past that moment is marked ``valid: false``.
"""

from __future__ import annotations

from typing import Any

from ..collect.integrity import headline
from .common import num


def integrity_summary(events: list[dict[str, Any]], load_start: float | None) -> dict[str, Any]:
    """``integrity``: ``ok``, ``problems[]`` (time order), ``invalid_from`` (+ ``_s`` since the load started), ``headline``."""
    problems = sorted((e for e in events if e.get("kind") == "integrity"), key=lambda e: float(e["t"]))
    out: list[dict[str, Any]] = []
    for e in problems:
        t = float(e["t"])
        out.append(
            {
                "t": num(t),
                "after_s": num(t - load_start) if load_start else None,
                "name": e.get("name"),
                "subject": e.get("subject"),
                "message": e.get("message"),
            }
        )
    first = out[0] if out else None
    return {
        "ok": not out,
        "problems": out,
        "invalid_from": first["t"] if first else None,
        "invalid_from_s": first["after_s"] if first else None,
        "headline": headline(out),
    }


def covers(integrity: dict[str, Any], end: float | None) -> bool:
    """Whether an interval ending at ``end`` (None: the whole run) reaches the first unplanned change."""
    t = integrity.get("invalid_from")
    return t is not None and (end is None or float(end) >= float(t))


def mark_invalid(summary: dict[str, Any], integrity: dict[str, Any]) -> None:
    """Set ``valid`` on the bottleneck, the checks and each failover event: false when their interval reaches the change."""
    window_end = (summary.get("window") or {}).get("end")
    reason = f"invalid: the lab changed ({integrity.get('headline')})"
    b = summary.get("bottleneck")
    if isinstance(b, dict):
        b["valid"] = not covers(integrity, window_end)
        if not b["valid"]:
            b["evidence"] = [reason, *(b.get("evidence") or [])]
    for c in summary.get("checks") or []:
        # a check counts from the first to the last HAProxy sample: the whole run
        c["valid"] = integrity.get("ok", True)
        if not c["valid"]:
            c["note"] = f"{reason}; {c.get('note', '')}"
    for e in ((summary.get("failover") or {}).get("events")) or []:
        injected, window = e.get("injected_at"), e.get("window_s")
        end = injected + window if isinstance(injected, int | float) and isinstance(window, int | float) else None
        e["valid"] = not covers(integrity, end)
