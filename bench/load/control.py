"""The control plane of a run's load: the controller on Locust's master, and what each process does with its messages.

One :class:`Controller` runs in the Locust process that owns the run (the
master with ``--processes N`` or ``--workers N``, else the only process). At
``test_start`` it:

1. tells every process its share of the held connections (:data:`MSG_SETUP`);
2. for a rate model, sends every process its share of the schedule as rate
   segments (:data:`MSG_SCHEDULE`): the whole schedule at once for a constant
   target or stages, one step at a time for ``find_max``;
3. for keep-alive stages, changes Locust's user count at each stage
   (``runner.start(users, spawn_rate)``);
4. writes every stage, search step and the plateau into ``events.jsonl`` as
   phases, so the report marks them and the analysis knows the windows.

For ``find_max`` every process reports its pacing counters, the corrected
latencies of its sends and its own CPU time every :data:`REPORT_INTERVAL`
seconds (:data:`MSG_REPORT`); the controller merges them into a
:class:`~bench.load.findmax.StepResult` per step and lets
:class:`~bench.load.findmax.Search` pick the next target.

Locust's ``send_message`` works the same on a local runner (it calls the local
listener), so one code path serves one process, several, and other hosts.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..results.events import EventLog
from ..results.histogram import Histogram
from ..results.layout import RunDir
from ..spec import Load
from .findmax import Bounds, Search, StepResult, judge
from .pacing import REPORT_BIN_S, Segment
from .stages import _unit, flow_shares, phases, rate_segments, user_steps

MSG_SETUP = "lbbench_setup"
MSG_SCHEDULE = "lbbench_schedule"
MSG_REPORT = "lbbench_report"
#: A process got its first schedule (each sends it once).
MSG_ACK = "lbbench_ack"
#: The schedule starts this long after the controller starts, so every process has it in time.
LEAD_S = 0.5
#: Seconds between the processes' reports (find_max only).
REPORT_INTERVAL = 0.5
#: Seconds after the schedule went out (or after its start, when later) by which every process has said it got it.
ACK_WITHIN_S = 5.0

log = logging.getLogger(__name__)


def _events(run_dir: str | None) -> Any:
    if not run_dir:
        return None
    return EventLog(RunDir(Path(run_dir)).events)


def worker_count(runner: Any) -> int:
    """How many processes send load: the master's connected workers, or 1."""
    from locust.runners import MasterRunner

    if isinstance(runner, MasterRunner):
        return max(int(runner.worker_count), 1)
    return 1


def gate_start_at(gate: dict[str, Any] | None) -> float | None:
    """The instant a start gate was opened for (bench/load/runner.py open_start_gate), when it names one."""
    if not gate:
        return None
    try:
        return float(Path(gate["file"]).read_text().strip())
    except (OSError, ValueError):
        return None


class Reports:
    """The processes' reports, merged per :data:`REPORT_BIN_S` bin (controller side)."""

    def __init__(self) -> None:
        self.bins: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0, 0.0])
        self.hist: dict[int, Histogram] = defaultdict(Histogram)
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)  # worker -> [(t, cpu seconds)]
        self.last_t: dict[str, float] = {}

    def add(self, worker: str, data: dict[str, Any]) -> None:
        for key, values in (data.get("bins") or {}).items():
            b = self.bins[int(key)]
            for i, v in enumerate(values[:7]):
                b[i] += v
            b[7] = max(b[7], values[7] if len(values) > 7 else 0.0)
        for key, counts in (data.get("hist") or {}).items():
            self.hist[int(key)].merge(Histogram({int(k): int(v) for k, v in counts.items()}))
        t = float(data.get("t", time.time()))
        self.cpu[worker].append((t, float(data.get("cpu_s", 0.0))))
        self.last_t[worker] = t

    def reported_until(self) -> float:
        """Every process has reported up to this time (0 before the first report of each)."""
        return min(self.last_t.values()) if self.last_t else 0.0

    def step(self, target: float, window: tuple[float, float]) -> StepResult:
        """Everything the processes measured for sends intended inside ``window``."""
        a, b = window
        # whole bins inside the window
        lo, hi = math.ceil(a / REPORT_BIN_S - 1e-9), math.floor(b / REPORT_BIN_S + 1e-9)
        r = StepResult(target=target, seconds=(hi - lo) * REPORT_BIN_S)
        for key in range(lo, hi):
            v = self.bins.get(key)
            if v is not None:
                r.due += int(v[0])
                r.sent += int(v[1])
                r.late += int(v[2])
                r.dropped += int(v[3])
                r.waited += int(v[4])
                r.done += int(v[5])
                r.errors += int(v[6])
            h = self.hist.get(key)
            if h is not None:
                r.histogram.merge(h)
        busiest = None
        for samples in self.cpu.values():
            before = [s for s in samples if s[0] <= a]
            after = [s for s in samples if s[0] >= b]
            if before and after and after[0][0] > before[-1][0]:
                pct = 100.0 * (after[0][1] - before[-1][1]) / (after[0][0] - before[-1][0])
                busiest = pct if busiest is None else max(busiest, pct)
        r.loadgen_cpu_pct = busiest
        return r


class Controller:
    """Drives the schedule of one run from the owning Locust process (see the module docstring)."""

    def __init__(self, environment: Any, settings: dict[str, Any]):
        self.environment = environment
        self.settings = settings
        self.load = Load.model_validate(settings["load"])
        self.duration = float(settings.get("duration") or 0.0)
        self.events = _events(settings.get("run_dir"))
        self.reports = Reports()
        self._glet: Any = None
        self._watch: Any = None
        self._check: Any = None
        self._rate = 0.0
        self._n = 1
        self.search: Search | None = None
        #: the processes (Locust node ids) that got their schedule
        self.acked: set[str] = set()

    # ------------------------------------------------------------------ plumbing

    def send(self, msg_type: str, data: dict[str, Any]) -> None:
        self.environment.runner.send_message(msg_type, data)

    def on_report(self, environment: Any = None, msg: Any = None, **_kw: Any) -> None:
        if msg is not None:
            self.reports.add(str(getattr(msg, "node_id", "local")), msg.data or {})

    def on_ack(self, environment: Any = None, msg: Any = None, **_kw: Any) -> None:
        if msg is not None:
            self.acked.add(str(getattr(msg, "node_id", "local")))

    def unacked(self) -> list[str]:
        """The owning process's connected processes that have not said they got their schedule (a master's
        workers; none for a single process)."""
        clients = getattr(self.environment.runner, "clients", None)
        if clients is None:
            return []
        return sorted(str(c.id) for c in clients.all if str(c.id) not in self.acked)

    def _check_schedules(self, sent_at: float) -> None:
        """A process without the schedule ACK_WITHIN_S after it went out (or after t0) sends nothing all run, and the load is short
        by its share: say so as an ``integrity`` event (the run's figures are not the scenario's; compare and
        gate leave it out) and as a controller error (the load verdict says the schedule broke)."""
        import gevent

        gevent.sleep(max(sent_at + ACK_WITHIN_S - time.time(), 0.0))
        missing = self.unacked()
        if not missing:
            return
        n = len(list(self.environment.runner.clients.all))
        message = (
            f"the load generator was short: {len(missing)} of {n} of its processes never got their schedule "
            f"({ACK_WITHIN_S:g} s after it went out) and sent nothing"
        )
        log.error("%s: %s", message, ", ".join(missing))
        if self.events is not None:
            t = time.time()
            self.events.write({"t": t, "kind": "integrity", "name": "load-schedule", "subject": ", ".join(missing), "message": message})
            self.events.write({"t": t, "kind": "error", "name": "controller", "error": message})

    def phase(self, name: str, t: float, **extra: Any) -> None:
        """A phase of the schedule in events.jsonl (``schedule: true`` tells them from bench's own phases)."""
        if self.events is not None:
            self.events.phase(name, t=t, schedule=True, **extra)
        log.info("phase %s at %.3f %s", name, t, extra)

    def start(self) -> None:
        import gevent

        self._glet = gevent.spawn(self._run)

    def stop(self) -> None:
        for g in (self._glet, self._watch, self._check):
            if g is not None:
                g.kill(block=False)
        self._glet = self._watch = self._check = None

    # ------------------------------------------------------------------ the run

    def _run(self) -> None:
        try:
            self._drive()
        except Exception as exc:
            # the run goes on at the last rate sent; the summary says the schedule broke
            if self.events is not None:
                self.events.write({"t": time.time(), "kind": "error", "name": "controller", "error": f"{type(exc).__name__}: {exc}"})
            raise

    def _drive(self) -> None:
        import gevent

        load = self.load
        n = self._n = worker_count(self.environment.runner)
        started = time.time()
        # a duet (bench gate --run) starts two runs' schedules at one agreed moment, so that both
        # labs get the same offered load at the same time; alone, shortly after the processes are up
        start_at = gate_start_at(self.settings.get("start_gate")) or self.settings.get("start_at")
        t0 = float(start_at) if start_at else started + LEAD_S
        end = started + self.duration
        held = load.held
        setup: dict[str, Any] = {"workers": n}
        if held is not None:
            setup["held"] = {"connections": held.connections, "tls": held.tls_connections}
        self.send(MSG_SETUP, setup)
        if load.is_rate:
            # counted from when the schedule went out: a controller started late (slow processes on a busy
            # machine, an agreed start already past) sends it after t0, and the acks come after that
            self._check = gevent.spawn(self._check_schedules, max(t0, time.time()))
        if load.model == "keep-alive":
            if load.stages:
                self._user_stages(started, n)
            return
        field = load.target_field
        if load.find_max is not None:
            self._find_max(t0, end, n)
            return
        shares = flow_shares(load)

        def schedule(workers: int, from_t: float | None) -> None:
            flows = {flow: [list(s) for s in rate_segments(load, t0, self.duration, share / workers)] for flow, share in shares.items()}
            self.send(MSG_SCHEDULE, {"flows": flows, "from_t": from_t})

        schedule(n, None)
        self._watch = gevent.spawn(self._watch_workers, n, schedule)
        for ph in phases(load, self.duration):
            at = t0 + ph.start
            if at >= end:
                break
            delay = at - time.time()
            if delay > 0:
                gevent.sleep(delay)
            self.phase(ph.name, at, target=ph.target_end, target_start=ph.target_start, field=field, ramp=ph.ramp, end=t0 + ph.end)

    def _watch_workers(self, n: int, resend: Any) -> None:
        """Give the processes new shares when Locust's master gains or loses one (a worker that missed
        its heartbeats is dropped by Locust), so the whole target is still sent."""
        import gevent

        while True:
            gevent.sleep(1.0)
            now_n = worker_count(self.environment.runner)
            if now_n != n and now_n > 0:
                log.warning("load-generator processes: %d -> %d; sharing the schedule again", n, now_n)
                if self.events is not None:
                    self.events.write({"t": time.time(), "kind": "load", "name": "processes changed", "from": n, "to": now_n})
                n = self._n = now_n
                resend(n, time.time() + LEAD_S / 5)

    def _user_stages(self, started: float, n: int) -> None:
        import gevent

        runner = self.environment.runner
        for (offset, users, rate), ph in zip(user_steps(self.load, self.duration), phases(self.load, self.duration), strict=True):
            at = started + offset
            delay = at - time.time()
            if delay > 0:
                gevent.sleep(delay)
            self.phase(ph.name, at, target=ph.target_end, target_start=ph.target_start, field="users", ramp=ph.ramp, end=started + ph.end)
            runner.start(max(users, 0), rate)

    # ------------------------------------------------------------------ find_max

    def _set_rate(self, rate: float, at: float, n: int) -> None:
        flows = {flow: [list(Segment.step(at, rate * share / n))] for flow, share in flow_shares(self.load).items()}
        self.send(MSG_SCHEDULE, {"flows": flows, "from_t": at})
        self._rate = rate

    def _find_max(self, t0: float, end: float, n: int) -> None:
        import gevent

        fm = self.load.find_max
        assert fm is not None
        field = self.load.target_field
        unit = _unit(field)
        search = self.search = Search(start=fm.start, growth=fm.growth, precision=fm.precision, limit=fm.limit)
        self._rate = 0.0
        self._watch = gevent.spawn(self._watch_workers, n, lambda workers, at: self._set_rate(self._rate, at, workers))
        bounds = Bounds(p99_ms=fm.p99_ms, error_pct=fm.error_pct)
        grace = REPORT_INTERVAL + min(fm.p99_ms / 1000.0, 2.0) + 0.2
        plateau_at = end - fm.plateau
        at = t0
        k = 0
        while True:
            target = search.next_target()
            if target is None or at + fm.step + grace > plateau_at:
                break
            k += 1
            self._set_rate(target, at, self._n)
            window = (at + fm.settle, at + fm.step)
            self.phase(f"find-max step {k}: {_num(target)} {unit}", at, target=target, field=field, step=k, end=window[1] + grace)
            # keep the rate until every process has reported past the window and its slow requests had time
            wait_until = window[1] + grace
            while True:
                delay = wait_until - time.time()
                if delay > 0:
                    gevent.sleep(delay)
                if self.reports.reported_until() >= wait_until - REPORT_INTERVAL / 2 or time.time() > wait_until + 5.0:
                    break
                gevent.sleep(REPORT_INTERVAL / 2)
            result = self.reports.step(target, window)
            verdict, reason = judge(result, bounds)
            search.record(target, verdict, reason, step=k)
            decided = time.time()
            p99 = result.p99_ms(max(result.sent - result.done, 0))
            if self.events is not None:
                self.events.write(
                    {
                        "t": decided,
                        "kind": "find-max",
                        "name": verdict,
                        "step": k,
                        "target": target,
                        "field": field,
                        "reason": reason,
                        "window": list(window),
                        "achieved": round(result.achieved, 3),
                        "due": result.due,
                        "sent": result.sent,
                        "late": result.late,
                        "dropped": result.dropped,
                        "waited": result.waited,
                        "done": result.done,
                        "errors": result.errors,
                        "p99_ms": None if p99 is None or p99 == float("inf") else round(p99, 3),
                        "loadgen_cpu_pct": None if result.loadgen_cpu_pct is None else round(result.loadgen_cpu_pct, 1),
                    }
                )
            at = decided
        plateau = search.plateau(fm.fraction)
        if plateau is None:
            # nothing passed: hold the lowest rate tried, and say so
            plateau = min((s["target"] for s in search.steps), default=fm.start) * fm.fraction
        at = max(time.time(), at)
        self._set_rate(plateau, at, self._n)
        self.phase(
            "plateau",
            at,
            target=plateau,
            field=field,
            settle=fm.settle,
            max_ok=search.good,
            first_bad=search.bad,
            fraction=fm.fraction,
            limited_by=search.limited_by,
            steps=len(search.steps),
            end=end,
        )


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


# --------------------------------------------------------------------------- process side


def register(environment: Any, on_setup: Any, on_schedule: Any) -> None:
    """Listen for the controller's messages in this process (every process does, the master too)."""
    runner = environment.runner
    if runner is None:
        return
    from locust.runners import MasterRunner

    if isinstance(runner, MasterRunner):
        return
    runner.register_message(MSG_SETUP, on_setup)
    runner.register_message(MSG_SCHEDULE, on_schedule)


def parse_schedule(data: dict[str, Any]) -> tuple[dict[str, list[Segment]], float | None]:
    """The flows and their segments of a :data:`MSG_SCHEDULE` message."""
    flows = {flow: [Segment(*map(float, seg)) for seg in segs] for flow, segs in (data.get("flows") or {}).items()}
    from_t = data.get("from_t")
    return flows, None if from_t is None else float(from_t)
