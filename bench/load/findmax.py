"""``find_max``: the highest rate at which errors and p99 stay within bounds, found inside one run.

Two pure pieces, unit-tested without timing:

- :class:`Search` decides the next step's target from the verdicts so far:
  grow by ``growth`` from ``start`` until a step fails, then bisect between the
  last good and the first bad target until they are within ``precision``.
- :func:`judge` turns one step's measurements (:class:`StepResult`, merged from
  every load-generator process) into a verdict: ``pass``, ``fail`` (the load
  balancer did not hold the bounds) or ``loadgen`` (the generator itself could not
  keep the schedule, so nothing above this rate can be measured with it).

:mod:`bench.load.control` runs the steps and writes each one to ``events.jsonl``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..results.histogram import Histogram

#: A step must send at least this share of its target to pass.
MIN_ACHIEVED = 0.95
#: Late sends while a connection was free (the generator fell behind its own schedule) above this share: the generator is the limit.
LOADGEN_LATE_SHARE = 0.05
#: A load-generator process above this CPU share of one core during a step is saturated.
LOADGEN_CPU_PCT = 90.0
#: Bisection never goes below start / this (when even the first step fails).
MIN_FRACTION_OF_START = 16.0


@dataclass
class StepResult:
    """What every process measured during one step's window (after its settle time)."""

    target: float  # per second, the whole run
    seconds: float
    due: int = 0
    sent: int = 0
    late: int = 0
    dropped: int = 0
    waited: int = 0
    done: int = 0  # slots whose first request finished before the verdict
    errors: int = 0
    histogram: Histogram = field(default_factory=Histogram)
    loadgen_cpu_pct: float | None = None  # busiest process, % of one core

    @property
    def achieved(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def p99_ms(self, unfinished: int = 0) -> float | None:
        """p99 of the corrected latency of the successful sends; ``unfinished`` ones count as slower than all (inf when they reach the p99)."""
        n = self.histogram.total
        total = n + unfinished
        if total == 0:
            return None
        rank = math.ceil(0.99 * total)
        if rank > n:
            return math.inf
        return self.histogram.percentile(100.0 * rank / n)


@dataclass(frozen=True)
class Bounds:
    """What a step must hold to pass."""

    p99_ms: float
    error_pct: float


def judge(step: StepResult, bounds: Bounds) -> tuple[str, str]:
    """``(verdict, reason)`` of one step: ``pass``, ``fail`` or ``loadgen``."""
    if step.due == 0:
        return "fail", "no send came due in the step window"
    # late sends that found a free connection: the generator woke too late (CPU), not the pool waiting on slow responses
    own_late = max(step.late - step.waited, 0)
    if step.loadgen_cpu_pct is not None and step.loadgen_cpu_pct >= LOADGEN_CPU_PCT:
        return "loadgen", f"a load-generator process used {step.loadgen_cpu_pct:.0f}% of its core"
    if step.sent and own_late / step.sent > LOADGEN_LATE_SHARE:
        return "loadgen", f"{own_late} of {step.sent} sends left late with a connection free: the generator fell behind its schedule"
    unfinished = max(step.sent - step.done, 0)
    finished = step.done
    err_pct = 100.0 * step.errors / finished if finished else 0.0
    if finished == 0:
        return "fail", "no request finished in time"
    if err_pct > bounds.error_pct:
        return "fail", f"errors {err_pct:.2f}% > {bounds.error_pct:g}%"
    p99 = step.p99_ms(unfinished)
    if p99 is not None and p99 > bounds.p99_ms:
        shown = "over 1% unfinished" if p99 == math.inf else f"{p99:.1f} ms"
        return "fail", f"p99 {shown} > {bounds.p99_ms:g} ms"
    if step.achieved < MIN_ACHIEVED * step.target:
        why = f"sent {step.achieved:.1f}/s of {step.target:.1f}/s"
        if step.waited:
            why += f"; {step.waited} sends found every connection busy (responses too slow for the pool)"
        return "fail", why
    return "pass", f"sent {step.achieved:.1f}/s, errors {err_pct:.2f}%, p99 {p99 if p99 is not None else 0:.1f} ms"


@dataclass
class Search:
    """Grow, then bisect (see the module docstring). Call :meth:`next_target`, run it, :meth:`record` the verdict."""

    start: float
    growth: float = 2.0
    precision: float = 0.1
    limit: float | None = None
    good: float | None = None  # highest target that passed
    bad: float | None = None  # lowest target that failed
    limited_by: str | None = None  # "loadgen" when the generator stopped the search
    done: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)

    def next_target(self) -> float | None:
        """The next step's target, or None when the search is over."""
        if self.done:
            return None
        if self.bad is None:
            target = self.start if self.good is None else self.good * self.growth
            if self.limit is not None:
                if self.good is not None and self.good >= self.limit:
                    self.done = True
                    return None
                target = min(target, self.limit)
            return target
        low = self.good if self.good is not None else 0.0
        if self.good is None and self.bad <= self.start / MIN_FRACTION_OF_START:
            self.done = True
            return None
        if self.good is not None and (self.bad - self.good) <= self.precision * self.good:
            self.done = True
            return None
        return (low + self.bad) / 2.0

    def record(self, target: float, verdict: str, reason: str = "", **extra: Any) -> None:
        """The outcome of the step at ``target``."""
        self.steps.append({"target": target, "verdict": verdict, "reason": reason, **extra})
        if verdict == "pass":
            if self.good is None or target > self.good:
                self.good = target
        elif verdict == "loadgen":
            # nothing above can be measured with this generator: stop here
            self.limited_by = "loadgen"
            self.done = True
        else:
            if self.bad is None or target < self.bad:
                self.bad = target

    def plateau(self, fraction: float) -> float | None:
        """The plateau's target: ``fraction`` of the highest good target (None when nothing passed)."""
        return None if self.good is None else self.good * fraction

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
