"""``vrrp`` and ``failover``: who held the VIP, and what each injected fault did (bench/analysis/vrrp.py, failover.py)."""

from __future__ import annotations

from .base import Figure, Section


class Vrrp(Section):
    holders: list[str] | None
    changes: int | None
    seconds_without_holder: int | None
    seconds_with_two_holders: int | None
    state_changes: int | None


class Distribution(Section):
    """A figure over several faults."""

    n: int | None
    min: Figure
    median: Figure
    p95: Figure
    max: Figure


class FaultErrors(Section):
    total: int | None
    by_kind: dict[str, int] | None
class FaultEvent(Section):
    """``failover.events[]``: one injected fault."""

    id: int | None
    kind: str | None
    target: str | None
    node: str | None
    injected_at: Figure
    vip_moved_after_s: Figure
    vip_moved_source: str | None
    expected_vip_move_s: list[float] | None
    """[low, high] seconds after the injection within which the VIP should move (null: it should not)"""
    gap_s: Figure
    censored: bool | None
    first_success_after_s: Figure
    errors: FaultErrors | None
    recovered_after_s: Figure
    pre_fault_per_s: Figure
    window_s: Figure
    valid: bool | None = None
    """false when the lab changed before this fault's window ended"""


class FaultKind(Section):
    """``failover.by_kind.<kind>``."""

    n: int | None
    expected_vip_move_s: list[float] | None
    vip_moved_after_s: Distribution | None
    gap_s: Distribution | None
    first_success_after_s: Distribution | None
    recovered_after_s: Distribution | None
    errors_total: Distribution | None


class Failover(Section):
    events: list[FaultEvent] | None
    by_kind: dict[str, FaultKind] | None
    vip_moved_after_s: Distribution | None
    gap_s: Distribution | None
    first_success_after_s: Distribution | None
    recovered_after_s: Distribution | None
