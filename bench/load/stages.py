"""Stage arithmetic: a model's target over time, as rate segments or user counts.

Pure functions of the validated spec (:class:`bench.spec.Load`), no Locust, no
gevent: the controller (:mod:`bench.load.control`) sends their output to the
processes, the analysis (:mod:`bench.analysis.load`) uses them to say what was
intended.

Times are offsets in seconds from the start of the schedule (``t0``). After the
last stage its target holds until the run ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..spec import Load, Stage

if TYPE_CHECKING:  # pacing imports gevent and the capture (numpy, pyarrow): not for `bench run`'s checks
    from .pacing import Segment


@dataclass(frozen=True)
class Phase:
    """One stage as it runs: name, start and end offsets, targets at both ends."""

    name: str
    start: float
    end: float
    target_start: float
    target_end: float
    ramp: bool

    def target_at(self, offset: float) -> float:
        if not self.ramp or self.end <= self.start:
            return self.target_end
        f = min(max((offset - self.start) / (self.end - self.start), 0.0), 1.0)
        return self.target_start + f * (self.target_end - self.target_start)


def phases(load: Load, duration: float) -> list[Phase]:
    """The model's target as phases covering ``[0, duration)`` (one phase for a constant target).

    A run shorter than its stages cuts them; a run longer holds the last target.
    """
    field = load.target_field
    if not load.stages:
        constant = getattr(load, field)
        value = float(constant) if constant is not None else 0.0
        return [Phase(f"constant {_fmt(value)} {_unit(field)}", 0.0, duration, value, value, False)]
    out: list[Phase] = []
    t = 0.0
    prev = 0.0
    for i, stage in enumerate(load.stages):
        if t >= duration:
            break
        target = stage.target(field) or 0.0
        end = min(t + stage.duration, duration)
        start_value = prev if stage.ramp else target
        # a stage cut short by the run ends at the target reached by then
        full_end = t + stage.duration
        phase = Phase(_stage_name(i, stage, field, prev), t, full_end, start_value, target, stage.ramp)
        if end < full_end:
            phase = Phase(phase.name, t, end, start_value, phase.target_at(end), stage.ramp)
        out.append(phase)
        t = full_end
        prev = target
    if t < duration and out:
        out.append(Phase(f"hold {_fmt(prev)} {_unit(field)}", t, duration, prev, prev, False))
    return out


def _fmt(v: float) -> str:
    return f"{v:g}" if v < 1e5 else f"{v:.0f}"


def _unit(field: str) -> str:
    return {"users": "users", "requests_per_s": "req/s", "connections_per_s": "conn/s", "handshakes_per_s": "handshakes/s"}[field]


def _stage_name(i: int, stage: Stage, field: str, prev: float) -> str:
    target = stage.target(field) or 0.0
    if stage.ramp:
        return f"stage {i + 1}: ramp {_fmt(prev)} -> {_fmt(target)} {_unit(field)}"
    return f"stage {i + 1}: {_fmt(target)} {_unit(field)}"


def rate_segments(load: Load, t0: float, duration: float, share: float = 1.0) -> list[Segment]:
    """The whole schedule of a rate model as segments from epoch ``t0``, times ``share`` (a process's part)."""
    from .pacing import Segment

    out = []
    for ph in phases(load, duration):
        if ph.ramp and ph.end > ph.start:
            out.append(Segment(t0 + ph.start, ph.target_start * share, t0 + ph.end, ph.target_end * share))
        else:
            out.append(Segment.step(t0 + ph.start, ph.target_end * share))
    return out


def flow_shares(load: Load) -> dict[str, float]:
    """How a rate model's target splits into flows (``https`` = TLS to VIP:443, ``http`` = plain to VIP:80).

    A connection-rate model with ``handshakes_per_s`` sends that share over TLS and
    the rest plain; every other model sends everything with its ``scheme``.
    """
    if load.model == "connection-rate" and load.handshakes_per_s is not None and load.connections_per_s:
        tls = min(load.handshakes_per_s / load.connections_per_s, 1.0)
        shares = {"https": tls, "http": 1.0 - tls}
        return {k: v for k, v in shares.items() if v > 0}
    return {load.scheme: 1.0}


def user_steps(load: Load, duration: float) -> list[tuple[float, int, float]]:
    """For keep-alive stages: ``(offset, users, spawn_rate)`` to apply at each offset.

    A ramp becomes one change whose spawn rate covers the stage; a step uses the
    scenario's ``spawn_rate``.
    """
    steps = []
    for ph in phases(load, duration):
        users = round(ph.target_end)
        if ph.ramp and ph.end > ph.start:
            rate = max(abs(ph.target_end - ph.target_start) / (ph.end - ph.start), 0.1)
        else:
            rate = float(load.spawn_rate)
        steps.append((ph.start, users, rate))
    return steps
