"""``load``: the load as it ran, its targets and what was achieved (bench/analysis/load.py)."""

from __future__ import annotations

from .base import Figure, Number, Section


class LoadFigures(Section):
    """``load.target``: the scenario's targets over the steady window (null where the model has none)."""

    users: Figure
    requests_per_s: Figure
    connections_per_s: Figure
    handshakes_per_s: Figure
    held_connections: Figure
    held_tls_connections: Figure


class Achieved(Section):
    """``load.achieved``: counted by the client in the steady window."""

    requests_per_s: Figure
    ok_requests_per_s: Figure
    connections_per_s: Figure
    handshakes_per_s: Figure
    resumption_pct: Figure
    held_connections: Figure
    held_tls_connections: Figure


class AchievedHaproxy(Section):
    """``load.achieved_haproxy``: the same figures counted by HAProxy."""

    requests_per_s: Figure
    connections_per_s: Figure
    handshakes_per_s: Figure
    full_handshakes_per_s: Figure
    resumption_pct: Figure
    client_connections: Figure
    client_connections_max: Figure
    tls_connections_max: Figure


class FlowPacing(Section):
    """``load.pacing.by_flow.<flow>``: the pacing totals of one flow (https, http)."""

    due: int | None
    sent: int | None
    late: int | None
    dropped: int | None
    waited: int | None
    resumed: int | None


class Pacing(Section):
    """``load.pacing``: totals of the ``pacing`` table over the whole seconds of the steady window."""

    due: int | None
    sent: int | None
    late: int | None
    dropped: int | None
    waited: int | None
    resumed: int | None
    seconds: Figure
    late_pct: Figure
    dropped_pct: Figure
    waited_pct: Figure
    dispatch_lag_max_ms: Figure
    by_flow: dict[str, FlowPacing] | None
class Held(Section):
    """``load.held``: held connections."""

    target: Figure
    open_mean: Figure
    open_min: Figure
    open_max: Figure
    tls_open_mean: Figure
    opened: int | None
    failed: int | None
class Phase(Section):
    """``load.phases[]``: a stage, find-max step or plateau; the verdict fields only for find-max steps."""

    name: str | None
    start: Figure
    end: Figure
    target: Figure
    achieved: Figure
    achieved_pct: Figure
    verdict: str | None = None
    reason: str | None = None
    p99_ms: Number | None = None
    loadgen_cpu_pct: Number | None = None


class FindMaxStep(Section):
    """``load.find_max.steps[]``: one step of the search and its verdict."""

    step: int | None
    target: Figure
    verdict: str | None
    achieved: Number | None
    p99_ms: Number | None
    errors: Number | None
    dropped: Number | None
    loadgen_cpu_pct: Number | None
    reason: str | None


class FindMax(Section):
    """``load.find_max``: the search's outcome."""

    max_ok: Figure
    first_bad: Figure
    fraction: Number | None
    plateau_target: Figure
    plateau_start: Figure
    limited_by: str | None
    steps: list[FindMaxStep] | None
class Load(Section):
    model: str | None
    engine: str | None
    processes: int | str | None
    workers: int | None
    scale: Number | None
    requests_per_connection: int | None
    target: LoadFigures | None
    achieved: Achieved | None
    achieved_haproxy: AchievedHaproxy | None
    achieved_pct: dict[str, Figure] | None
    reached: bool | None
    limited_by: str | None
    verdict: str | None
    pacing: Pacing | None
    held: Held | None
    phases: list[Phase] | None
    find_max: FindMax | None
