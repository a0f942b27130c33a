"""Rate control for the open-loop load models: one schedule of intended send times per process.

A rate model (open, connection-rate, handshake-rate) does not let each user
sleep between its requests (sleeps drift, and a slow response silently delays
the next send: coordinated omission). Instead each load-generator process owns
one :class:`Dispatcher`: for every *flow* (say TLS connections and plain
connections of one model) a :class:`Schedule` says what rate is wanted when, the
dispatcher computes the exact intended time of every send from it
(:meth:`Schedule.advance`: the time at which the integral of the rate reaches
one more send), and hands each *slot* to a free user when its time comes.
The users are only the pool of connections: a slot that finds none free waits
(counted ``waited``), and is sent late (``late``, more than :data:`LATE_S`
after its intended time), or dropped (``dropped``) when it is more than
``max_lag`` old by the time a user takes it. Latency measured from the intended
time is the coordinated-omission corrected latency (as wrk2 does).

The target of a process is its share of the whole run's target (the master
divides it among the processes, see :mod:`bench.load.control`). Rates are
piecewise linear in time (:class:`Segment`): steps, ramps and plateaus are all
expressed that way, so the intended times of a ramp are exact too.

:class:`Schedule` and :class:`PacingStats` are pure (no gevent), so the
arithmetic is unit-tested without timing. :class:`Dispatcher` runs on gevent's
loop: a timer in the hub hands each due slot to a waiting
:class:`SlotRunner` (one per :mod:`bench.load.models` user), which runs it on
its clients' hub-driven path (:meth:`LeanClient.start
<bench.load.leanclient.LeanClient.start>`): no greenlet switch per slot.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from gevent import getcurrent

from .leanclient import CaptureWrapper, LeanClient, Owner

#: A send more than this after its intended time counts as late.
LATE_S = 0.010
#: Width of a bin of the statistics the processes report to the controller (seconds).
REPORT_BIN_S = 0.25

_INF = math.inf
_time = time.time


class Segment(NamedTuple):
    """From ``t0`` the rate moves linearly from ``r0`` to ``r1`` at ``t1``, then holds ``r1`` (epoch seconds, per second)."""

    t0: float
    r0: float
    t1: float
    r1: float

    @classmethod
    def step(cls, t0: float, rate: float) -> Segment:
        """The rate jumps to ``rate`` at ``t0`` and holds."""
        return cls(t0, rate, t0, rate)


class _Piece(NamedTuple):
    a: float  # start
    b: float  # end (inf for the last)
    ra: float  # rate at a
    k: float  # slope (per second per second)


class Schedule:
    """A piecewise-linear rate over time, and the intended send times it implies.

    >>> s = Schedule([Segment.step(100.0, 10.0)])
    >>> s.advance(100.0, 1.0)
    100.1
    >>> s.count(100.0, 101.0)
    10.0
    """

    def __init__(self, segments: Iterable[Segment] = ()):
        self.segments: list[Segment] = []
        self._pieces: list[_Piece] = []
        self.set(segments)

    def set(self, segments: Iterable[Segment], from_t: float | None = None) -> None:
        """Replace the schedule from ``from_t`` on (everything when None) with ``segments``."""
        new = sorted(segments, key=lambda s: s.t0)
        for seg in new:
            if seg.t1 < seg.t0 or seg.r0 < 0 or seg.r1 < 0 or not all(math.isfinite(x) for x in seg):
                raise ValueError(f"bad segment {seg}: need t1 >= t0, rates >= 0, finite values")
        if from_t is None:
            kept: list[Segment] = []
        else:
            # only the new schedule's part from from_t on counts: clip the segment running at from_t
            active = [seg for seg in new if seg.t0 <= from_t]
            later = [seg for seg in new if seg.t0 > from_t]
            if active:
                cur = active[-1]
                later.insert(0, Segment(from_t, _rate_on(cur, from_t), max(cur.t1, from_t), cur.r1))
            new = later
            kept = [s for s in self.segments if s.t0 < from_t]
            if kept:
                # the kept part ends where the new one starts: freeze its rate at from_t
                last = kept[-1]
                if last.t1 > from_t:
                    r = _rate_on(last, from_t)
                    kept[-1] = Segment(last.t0, last.r0, from_t, r)
        self.segments = kept + new
        self._pieces = self._build()

    def _build(self) -> list[_Piece]:
        pieces: list[_Piece] = []
        segs = self.segments
        for i, s in enumerate(segs):
            end = segs[i + 1].t0 if i + 1 < len(segs) else _INF
            if s.t1 > s.t0:
                ramp_end = min(s.t1, end)
                pieces.append(_Piece(s.t0, ramp_end, s.r0, (s.r1 - s.r0) / (s.t1 - s.t0)))
                if ramp_end < end:
                    pieces.append(_Piece(ramp_end, end, s.r1, 0.0))
            else:
                pieces.append(_Piece(s.t0, end, s.r1, 0.0))
        return [p for p in pieces if p.b > p.a]

    def rate(self, t: float) -> float:
        """The rate at ``t`` (0 before the first segment)."""
        for p in self._pieces:
            if p.a <= t < p.b:
                return p.ra + p.k * (t - p.a)
        return 0.0

    def count(self, t0: float, t1: float) -> float:
        """Sends the schedule wants in ``[t0, t1)``: the integral of the rate."""
        total = 0.0
        for p in self._pieces:
            a, b = max(p.a, t0), min(p.b, t1)
            if b <= a:
                continue
            qa = p.ra + p.k * (a - p.a)
            total += qa * (b - a) + p.k * (b - a) ** 2 / 2.0
        return total

    def advance(self, t: float, n: float = 1.0) -> float:
        """The time after ``t`` at which the schedule has wanted ``n`` more sends (inf: never).

        Exact for linear ramps (a quadratic per piece), so slot times do not
        drift however long the run.
        """
        need = n
        for p in self._pieces:
            if p.b <= t:
                continue
            a = max(p.a, t)
            q = p.ra + p.k * (a - p.a)
            span = p.b - a
            if span == _INF:
                if q <= 0 and p.k <= 0:
                    return _INF
                return a + _solve(q, p.k, need)
            area = q * span + p.k * span * span / 2.0
            if area >= need:
                return a + min(_solve(q, p.k, need), span)
            need -= area
        return _INF


def _rate_on(seg: Segment, t: float) -> float:
    if t >= seg.t1 or seg.t1 == seg.t0:
        return seg.r1
    return seg.r0 + (seg.r1 - seg.r0) * (t - seg.t0) / (seg.t1 - seg.t0)


def _solve(q: float, k: float, need: float) -> float:
    """Smallest x >= 0 with q*x + k*x^2/2 = need (rate q, slope k); inf when it is never reached."""
    disc = q * q + 2.0 * k * need
    if disc < 0:
        return _INF
    denom = q + math.sqrt(disc)
    if denom <= 0:
        return _INF
    return 2.0 * need / denom  # the stable form of (-q + sqrt(disc)) / k, also for k == 0


# --------------------------------------------------------------------------- statistics


class PacingStats:
    """Per flow and second (``pacing`` table) and per :data:`REPORT_BIN_S` bin (controller reports) counters.

    Counters by *intended* time: ``due`` (slots that came due), ``sent``, ``late``,
    ``dropped``, ``waited`` (found no free connection), ``resumed`` (the slot's new
    connection resumed a TLS session), and the dispatcher's worst lag behind the
    schedule. Outcomes of the sends (``done``, ``errors`` and the
    corrected latencies of the successful ones) go into the report bins only.
    Both are deltas since the last :meth:`take_rows` / :meth:`take_report`, so
    rows of several processes and flushes simply add up.
    """

    def __init__(self, worker: str | None = None, report: bool = False):
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.report = report
        self._sec: dict[tuple[str, int], list[float]] = {}
        self._last: tuple[str, float, list[float]] | None = None  # (flow, second, its row) of the last _row()
        self._bins: dict[int, list[float]] = {}
        self._lat: dict[int, list[float]] = {}

    def _row(self, flow: str, t: float) -> list[float]:
        last = self._last
        if last is not None and last[0] is flow and last[1] <= t < last[1] + 1.0:
            return last[2]  # the same flow and second as the call before (nearly always)
        sec = int(t // 1)
        key = (flow, sec)
        row = self._sec.get(key)
        if row is None:
            # due, sent, late, dropped, waited, dispatch lag max (s), resumed
            row = self._sec[key] = [0, 0, 0, 0, 0, 0.0, 0]
        self._last = (flow, float(sec), row)
        return row

    def _bin(self, t: float) -> list[float]:
        key = int(t // REPORT_BIN_S)
        b = self._bins.get(key)
        if b is None:
            # due, sent, late, dropped, waited, done, errors, dispatch lag max (s)
            b = self._bins[key] = [0, 0, 0, 0, 0, 0, 0, 0.0]
        return b

    def due(self, flow: str, t: float, lag: float, waited: bool) -> None:
        row = self._row(flow, t)
        row[0] += 1
        if waited:
            row[4] += 1
        if lag > row[5]:
            row[5] = lag
        if self.report:
            b = self._bin(t)
            b[0] += 1
            if waited:
                b[4] += 1
            if lag > b[7]:
                b[7] = lag

    def handed(self, flow: str, t: float, lag: float, late: bool) -> None:
        """:meth:`due` (a runner was waiting) and :meth:`sent` at once: the dispatcher's usual case."""
        row = self._row(flow, t)
        row[0] += 1
        row[1] += 1
        if late:
            row[2] += 1
        if lag > row[5]:
            row[5] = lag
        if self.report:
            b = self._bin(t)
            b[0] += 1
            b[1] += 1
            if late:
                b[2] += 1
            if lag > b[7]:
                b[7] = lag

    def sent(self, flow: str, t: float, late: bool) -> None:
        row = self._row(flow, t)
        row[1] += 1
        if late:
            row[2] += 1
        if self.report:
            b = self._bin(t)
            b[1] += 1
            if late:
                b[2] += 1

    def resumed(self, flow: str, t: float) -> None:
        """The slot intended at ``t`` opened a connection that resumed a TLS session."""
        self._row(flow, t)[6] += 1

    def dropped(self, flow: str, t: float) -> None:
        self._row(flow, t)[3] += 1
        if self.report:
            self._bin(t)[3] += 1

    def outcome(self, t: float, ok: bool, corrected_ms: float) -> None:
        """The first request of a slot intended at ``t`` finished (``corrected_ms`` from ``t``)."""
        if not self.report:
            return
        b = self._bin(t)
        b[5] += 1
        if ok:
            key = int(t // REPORT_BIN_S)
            lat = self._lat.get(key)
            if lat is None:
                lat = self._lat[key] = []
            lat.append(corrected_ms)
        else:
            b[6] += 1

    def take_rows(self) -> dict[str, list]:
        """The ``pacing`` rows gathered since the last call (columns of :data:`bench.results.tables.PACING`)."""
        rows = self._sec
        self._sec = {}
        self._last = None  # its row is taken: the next count starts a new one
        keys = sorted(rows, key=lambda k: (k[1], k[0]))
        return {
            "t": [float(k[1]) for k in keys],
            "worker": [self.worker] * len(keys),
            "flow": [k[0] for k in keys],
            "due": [int(rows[k][0]) for k in keys],
            "sent": [int(rows[k][1]) for k in keys],
            "late": [int(rows[k][2]) for k in keys],
            "dropped": [int(rows[k][3]) for k in keys],
            "waited": [int(rows[k][4]) for k in keys],
            "resumed": [int(rows[k][6]) for k in keys],
            "dispatch_lag_max_ms": [round(rows[k][5] * 1000.0, 3) for k in keys],
        }

    def take_report(self) -> dict[str, Any]:
        """Bins and latency histograms since the last call, for the controller (JSON-safe)."""
        from ..results.histogram import buckets_of

        bins, lats = self._bins, self._lat
        self._bins, self._lat = {}, {}
        hist: dict[str, dict[str, int]] = {}
        if lats:
            import numpy as np

            for key, values in lats.items():
                buckets, counts = np.unique(buckets_of(np.asarray(values, dtype=float)), return_counts=True)
                hist[str(key)] = {str(int(b)): int(c) for b, c in zip(buckets, counts, strict=True)}
        return {"bins": {str(k): v for k, v in bins.items()}, "hist": hist}


# --------------------------------------------------------------------------- dispatcher (gevent)


class Slot(NamedTuple):
    """One intended send: when, and for which flow."""

    t: float
    flow: str


@dataclass
class _Flow:
    name: str
    schedule: Schedule
    next_t: float = _INF
    last_t: float | None = None


#: A schedule change never makes a process owe more than this much of the past at once.
CATCH_UP_S = 0.05


def next_slot(schedule: Schedule, last_t: float | None, now: float) -> float:
    """The next intended send after ``last_t`` (the previous one; None before the first).

    Counting continues from the previous send, so a change of rate keeps the
    phase; but never from further back than :data:`CATCH_UP_S` before ``now``,
    so a schedule that arrives late (or a pause at rate 0) does not turn into a burst.
    """
    first = schedule.segments[0].t0 if schedule.segments else now
    start = max(last_t if last_t is not None else first, now - CATCH_UP_S)
    return schedule.advance(start, 1.0)


class Dispatcher:
    """Hands out slots of one process's schedules to its users' runners (see the module docstring).

    A timer in gevent's hub wakes at every slot's intended time and gives the
    slot to a runner waiting for one (``runner.run_slot(slot)``, in the hub,
    no greenlet switch), or queues it when none waits. A runner that finishes
    a slot asks for the next one with :meth:`take` (it gets a queued slot, or
    waits for the next due one). ``runner.run_slot`` must not wait.
    """

    def __init__(
        self,
        stats: PacingStats,
        max_lag: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.stats = stats
        self.max_lag = max_lag
        self.clock = clock
        self.flows: dict[str, _Flow] = {}
        self.backlog: deque[Slot] = deque()
        #: runners waiting for a slot, first come first served
        self.idle: deque[Any] = deque()
        self._loop: Any = None
        self._timer: Any = None
        self._kicked: Any = None
        self.closed = False

    # ------------------------------------------------------------------ schedule

    def set_schedule(self, flow: str, segments: Iterable[Segment], from_t: float | None = None) -> None:
        """Replace ``flow``'s schedule from ``from_t`` on (all of it when None); the dispatcher picks it up at once."""
        f = self.flows.get(flow)
        if f is None:
            f = self.flows[flow] = _Flow(flow, Schedule())
        f.schedule.set(segments, from_t)
        if from_t is None or f.next_t >= from_t:
            # the next slot was computed from the old schedule: compute it again from the last one
            f.next_t = next_slot(f.schedule, f.last_t, self.clock())
        self._kick()

    # ------------------------------------------------------------------ the timer (gevent)

    def start(self) -> None:
        """Start dispatching on this process's gevent loop (once per process)."""
        import gevent

        if self._loop is None:
            self._loop = gevent.get_hub().loop
        self._kick()

    def stop(self) -> None:
        for w in (self._timer, self._kicked):
            if w is not None:
                w.stop()
        self._timer = self._kicked = None

    def close(self) -> None:
        """Stop dispatching and release every waiting runner (``runner.closed()``, from the hub)."""
        self.closed = True
        self.stop()
        self.backlog.clear()
        idle, self.idle = self.idle, deque()
        for runner in idle:
            if self._loop is not None:
                self._loop.run_callback(runner.closed)

    def _kick(self) -> None:
        """Run the dispatcher from the hub soon (a schedule arrived or changed)."""
        if self._loop is None or self.closed or self._kicked is not None:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._kicked = self._loop.run_callback(self._run)

    def _run(self) -> None:
        """In the hub: hand out (or queue) every slot whose time has come, then sleep until the next one."""
        self._kicked = self._timer = None
        if self.closed:
            return
        clock = self.clock
        flows = self.flows
        only = next(iter(flows.values())) if len(flows) == 1 else None
        stats = self.stats
        idle = self.idle
        max_lag = self.max_lag
        now = clock()
        for _ in range(1 << 20):  # bounded: CATCH_UP_S keeps the slots owed at once few
            flow = only or min(flows.values(), key=_next_t, default=None)
            t = flow.next_t if flow is not None else _INF
            if t > now:
                now = clock()
                if t > now:
                    break
            # due: every slot whose time has come, in order
            assert flow is not None
            flow.last_t = t
            flow.next_t = flow.schedule.advance(t, 1.0)
            slot = _new_slot(Slot, (t, flow.name))
            lag = now - t
            if idle and lag <= max_lag:
                # the usual case: a runner waits, the slot is not too old: hand it over now
                stats.handed(flow.name, t, lag, lag > LATE_S)
                idle.popleft().run_slot(slot)
            else:
                stats.due(flow.name, t, lag, not idle)
                if idle:
                    self._give(idle.popleft(), slot, now)
                else:
                    self.backlog.append(slot)
            if self.closed:
                return
        if t < _INF and self._kicked is None:
            self._timer = self._loop.timer(t - now)
            self._timer.start(self._run)

    def _give(self, runner: Any, slot: Slot, now: float) -> None:
        lag = now - slot.t
        if lag > self.max_lag:
            self.stats.dropped(slot.flow, slot.t)
            # the runner waits on, for the next slot
            self.idle.appendleft(runner)
            return
        self.stats.sent(slot.flow, slot.t, lag > LATE_S)
        runner.run_slot(slot)

    # ------------------------------------------------------------------ runners

    def take(self, runner: Any = None) -> Slot | None:
        """The oldest queued slot for the caller (counted as sent), dropping those more than ``max_lag`` old.

        None when no slot is queued (then ``runner``, if given, waits for the
        next due slot: it gets it through ``runner.run_slot``) or once the
        dispatcher is closed.
        """
        backlog = self.backlog
        clock = self.clock
        stats = self.stats
        while backlog and not self.closed:
            slot = backlog.popleft()
            lag = clock() - slot.t
            if lag > self.max_lag:
                stats.dropped(slot.flow, slot.t)
                continue
            stats.sent(slot.flow, slot.t, lag > LATE_S)
            return slot
        if runner is not None and not self.closed:
            self.idle.append(runner)
        return None

    def forget(self, runner: Any) -> None:
        """``runner`` no longer waits for a slot (its user stopped)."""
        try:
            self.idle.remove(runner)
        except ValueError:
            pass


def _next_t(flow: _Flow) -> float:
    return flow.next_t


_new_slot = tuple.__new__  # Slot(t, flow) without the NamedTuple's Python-level __new__


# --------------------------------------------------------------------------- users' side (gevent)


class SlotRecorder(CaptureWrapper):
    """Between a rate user's clients and the capture: stamps a slot's first request with its intended time.

    ``error`` is the outcome of the last request (the user stops a slot's
    requests at the first failure).
    """

    __slots__ = ("error", "inner", "intended", "stats")

    def __init__(self, inner: Any, stats: PacingStats):
        self.inner = inner
        self.stats = stats
        self.intended: float | None = None
        self.error = ""

    def record(self, t: float, latency_ms: float, nbytes: int, status: int, error: str, name: str, conn_new: bool | None = None) -> None:
        self.record_row((t, latency_ms, nbytes, status, error, name, conn_new))

    def record_row(self, row: tuple) -> None:
        """:meth:`record` from one tuple of its arguments (how :class:`LeanClient` records)."""
        error = self.error = row[4]
        intended = self.intended
        inner = self.inner
        if intended is None:
            if inner is not None:
                inner.record(*row)
            return
        self.intended = None
        if self.stats.report:
            self.stats.outcome(intended, not error, (row[0] - intended) * 1000.0 + row[1])
        if inner is not None:
            record_intended_row = getattr(inner, "record_intended_row", None)
            if record_intended_row is not None:
                record_intended_row(intended, row)
            else:
                inner.record_intended(intended, *row)

    def unfinished(self, t: float, name: str, phase: str = "", conn_new: bool | None = None, intended_t: float | None = None, trace_id: int | None = None) -> None:
        """A request dropped unanswered: the slot's first carries its intended send time (see RequestCapture.unfinished)."""
        if intended_t is None and self.intended is not None:
            intended_t, self.intended = self.intended, None
        super().unfinished(t, name, phase, conn_new, intended_t, trace_id)


class SlotRunner:
    """One rate user's connections, running the slots the process's dispatcher gives them.

    One :class:`LeanClient` per flow (``make_client(flow)``, on the first slot
    of that flow; it records through ``recorder``), all driven for the user's
    greenlet (their :class:`Owner`). A slot is
    ``requests`` requests, stopped at the first failure; it starts from the
    hub (the dispatcher's timer) or right after the previous slot, and runs on
    the clients' hub-driven path: the user's greenlet stays parked in
    :meth:`serve` unless a response needs the general reader.
    """

    def __init__(self, dispatcher: Dispatcher, stats: PacingStats, recorder: SlotRecorder, requests: int, make_client: Any, stopping: Any):
        self.dispatcher = dispatcher
        self.stats = stats
        self.recorder = recorder
        self.requests = requests
        self.make_client = make_client
        self.stopping = stopping
        self.clients: dict[str, LeanClient] = {}
        self.owner: Owner | None = None
        self.slot: Slot | None = None
        self.until = 0.0
        self.serving = False
        self._resumed = 0

    def serve(self, until: float) -> None:
        """Run slots until ``until`` (epoch seconds; the slot running then finishes first) or the dispatcher closes."""
        owner = self.owner
        if owner is None or owner.glet is not getcurrent():
            owner = self.owner = Owner()
            for client in self.clients.values():
                client.use_owner(owner)
        self.until = until
        timer = owner.hub.loop.timer(max(0.0, until - _time()))
        timer.start(self._time_up)
        self.serving = True
        try:
            self._next()
            owner.park()
        except BaseException:
            self.abort()
            raise
        finally:
            self.serving = False
            timer.stop()
            timer.close()

    def run_slot(self, slot: Slot) -> None:
        """Start ``slot`` (called by the dispatcher, in the hub, or by :meth:`_next`)."""
        self.slot = slot
        client = self.clients.get(slot.flow)
        if client is None:
            client = self.clients[slot.flow] = self.make_client(slot.flow)
            client.capture = self.recorder
            assert self.owner is not None
            client.use_owner(self.owner)
        self.recorder.intended = slot.t
        self._resumed = client.resumed
        client.start(self.requests, _INF, self._slot_done, stop_on_error=True)

    def closed(self) -> None:
        """The dispatcher closed while this runner waited for a slot."""
        if self.serving and self.slot is None and self.owner is not None:
            self.owner.deliver(_END)

    def abort(self) -> None:
        """The user stops: leave the dispatcher, stop whatever is in flight."""
        self.dispatcher.forget(self)
        self.slot = None
        for client in self.clients.values():
            client.abort()

    def _slot_done(self, client: LeanClient, t1: float, _failed: bool) -> None:
        slot = self.slot
        self.slot = None
        if slot is not None and client.resumed != self._resumed:
            self.stats.resumed(slot.flow, slot.t)
        if t1 > self.until or self.stopping():
            self.owner.deliver(_END)  # type: ignore[union-attr]
            return
        self._next()

    def _next(self) -> None:
        """The next slot now if one is queued; else wait for one (the dispatcher calls run_slot)."""
        if self.dispatcher.closed:
            self.owner.deliver(_END)  # type: ignore[union-attr]
            return
        slot = self.dispatcher.take(self)
        if slot is not None:
            self.run_slot(slot)

    def _time_up(self) -> None:
        """In the hub, at ``until``: a runner that waits for a slot ends its task (Locust may stop the user)."""
        if self.slot is None:
            self.dispatcher.forget(self)
            self.owner.deliver(_END)  # type: ignore[union-attr]


_END: Any = object()


# --------------------------------------------------------------------------- sample writer


class PacingWriter:
    """Flushes a process's :class:`PacingStats` rows into ``samples/pacing/`` once per second."""

    def __init__(self, run_dir: Path, stats: PacingStats):
        from ..results.store import ChunkWriter, process_writer
        from ..results.tables import PACING

        self.stats = stats
        self.writer = ChunkWriter(run_dir, PACING, process_writer())
        self._glet: Any = None

    def flush(self) -> None:
        self.writer.write(self.stats.take_rows())

    def start(self) -> None:
        import gevent

        def loop() -> None:
            while True:
                gevent.sleep(1.0)
                self.flush()

        self._glet = gevent.spawn(loop)

    def stop(self) -> None:
        if self._glet is not None:
            self._glet.kill(block=False)
            self._glet = None
        self.flush()
        self.writer.close()
