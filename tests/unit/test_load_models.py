"""The load models' arithmetic, without Docker, Locust or timing: schedules, stages, find-max, fit, corrected latency."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.bottleneck import apply_load_verdict
from bench.analysis.load import corrected_latency, load_summary, pacing_summary, tls_mask
from bench.errors import UserError
from bench.load import capture
from bench.load.control import Reports
from bench.load.findmax import Bounds, Search, StepResult, judge
from bench.load.fit import Machine, limits, max_scale, needs_of, nice_floor, prepare_load, resolve_processes
from bench.load.held import _interleave, share
from bench.load.pacing import LATE_S, Dispatcher, PacingStats, Schedule, Segment, Slot, next_slot
from bench.load.stages import flow_shares, phases, rate_segments, user_steps
from bench.results.store import empty_frame, read_table
from bench.spec import Load, Scenario, load_topology

# --------------------------------------------------------------------------- schedules


def slots(schedule: Schedule, start: float, end: float) -> list[float]:
    out, t = [], start
    while True:
        t = schedule.advance(t, 1.0)
        if t >= end:
            return out
        out.append(t)


def test_constant_rate_slots_are_exact_and_do_not_drift() -> None:
    s = Schedule([Segment.step(1000.0, 250.0)])
    times = slots(s, 1000.0, 1000.0 + 3600.0)
    # an hour at 250/s: every slot exactly 4 ms after the previous, none lost to rounding
    assert len(times) in (899_999, 900_000)
    assert times[-1] == pytest.approx(1000.0 + len(times) / 250.0, abs=1e-6)
    gaps = np.diff(times)
    assert gaps.min() == pytest.approx(0.004, abs=1e-9) and gaps.max() == pytest.approx(0.004, abs=1e-9)


def test_ramp_slots_follow_the_integral() -> None:
    s = Schedule([Segment(0.0, 0.0, 10.0, 100.0)])  # 0 -> 100/s over 10 s, then 100/s
    assert s.count(0.0, 10.0) == pytest.approx(500.0)
    assert s.count(10.0, 12.0) == pytest.approx(200.0)
    assert s.rate(5.0) == pytest.approx(50.0)
    times = slots(s, 0.0, 10.0)
    assert len(times) in (499, 500)
    # the k-th slot of a linear ramp r = 10 t lands at sqrt(2k / 10)
    for k in (1, 50, 300):
        assert times[k - 1] == pytest.approx(math.sqrt(2 * k / 10.0), rel=1e-9)


def test_ramp_down_and_zero_rate() -> None:
    s = Schedule([Segment(0.0, 100.0, 10.0, 0.0)])
    assert s.count(0.0, 10.0) == pytest.approx(500.0)
    assert s.advance(9.99, 5.0) == math.inf  # the rate reaches 0 and stays there
    pause = Schedule([Segment.step(0.0, 0.0), Segment.step(5.0, 10.0)])
    assert pause.advance(0.0, 1.0) == pytest.approx(5.1)


def test_schedule_change_keeps_the_past() -> None:
    s = Schedule([Segment(0.0, 0.0, 10.0, 100.0)])
    s.set([Segment.step(4.0, 7.0)], from_t=4.0)
    assert s.rate(3.0) == pytest.approx(30.0)
    assert s.rate(4.5) == pytest.approx(7.0)
    assert s.count(0.0, 4.0) == pytest.approx(80.0)
    assert s.count(4.0, 5.0) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="bad segment"):
        Schedule([Segment(5.0, 1.0, 4.0, 1.0)])


def test_resharing_a_schedule_keeps_its_shape() -> None:
    # the whole schedule sent again from t=12 with a bigger share (a process left): the past stays,
    # the ramp continues from where it is, at the new share
    s = Schedule([Segment(0.0, 0.0, 20.0, 100.0)])
    s.set([Segment(0.0, 0.0, 20.0, 200.0)], from_t=12.0)
    assert s.rate(11.0) == pytest.approx(55.0)
    assert s.rate(12.0) == pytest.approx(120.0)
    assert s.rate(16.0) == pytest.approx(160.0)
    assert s.rate(25.0) == pytest.approx(200.0)
    assert s.count(0.0, 12.0) == pytest.approx(360.0)


def test_next_slot_never_owes_much_of_the_past() -> None:
    s = Schedule([Segment.step(0.0, 100.0)])
    # a schedule that started 10 s ago does not make the process owe 1000 sends at once
    assert next_slot(s, None, 10.0) == pytest.approx(10.0 - 0.05 + 0.01)
    assert next_slot(s, 9.999, 10.0) == pytest.approx(10.009)


# --------------------------------------------------------------------------- pacing counters


def test_pacing_stats_rows_and_report() -> None:
    st = PacingStats(worker="w", report=True)
    st.due("https", 10.1, 0.001, waited=False)
    st.due("https", 10.6, 0.002, waited=True)
    st.sent("https", 10.1, late=False)
    st.sent("https", 10.6, late=True)
    st.resumed("https", 10.6)
    st.dropped("http", 11.2)
    st.outcome(10.1, True, 3.0)
    st.outcome(10.6, False, 9.0)
    rows = st.take_rows()
    assert rows["t"] == [10.0, 11.0] and rows["flow"] == ["https", "http"]
    assert rows["due"] == [2, 0] and rows["sent"] == [2, 0] and rows["late"] == [1, 0]
    assert rows["waited"] == [1, 0] and rows["resumed"] == [1, 0] and rows["dropped"] == [0, 1]
    assert rows["dispatch_lag_max_ms"][0] == pytest.approx(2.0)
    report = st.take_report()
    assert set(report["bins"]) == {"40", "42", "44"}
    assert report["bins"]["40"][5] == 1 and report["bins"]["42"][6] == 1  # done, errors
    assert sum(report["hist"]["40"].values()) == 1
    assert st.take_rows()["t"] == [] and st.take_report()["bins"] == {}


def test_pacing_stats_handed_is_due_and_sent() -> None:
    """The dispatcher's one-call count (a runner waited) equals due + sent; counting goes on after take_rows."""
    a, b = PacingStats(worker="w", report=True), PacingStats(worker="w", report=True)
    for t, lag, late in ((10.1, 0.001, False), (10.9, 0.02, True), (11.0, 0.0, False), (10.95, 0.003, False)):
        a.handed("https", t, lag, late)
        b.due("https", t, lag, waited=False)
        b.sent("https", t, late)
    assert a.take_rows() == b.take_rows() and a.take_report() == b.take_report()
    a.handed("https", 11.5, 0.0, False)  # the row cached before take_rows is not reused
    assert a.take_rows()["sent"] == [1]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_dispatcher_take_counts_late_and_drops_what_is_too_old() -> None:
    clock = FakeClock(100.0)
    st = PacingStats(worker="w")
    d = Dispatcher(st, max_lag=1.0, clock=clock)
    d.backlog.extend([Slot(98.5, "https"), Slot(99.5, "https"), Slot(100.0 - LATE_S / 2, "https")])
    assert d.take() == Slot(99.5, "https")  # 98.5 is 1.5 s old: dropped
    assert d.take() == Slot(100.0 - LATE_S / 2, "https")
    rows = st.take_rows()
    by_t = dict(zip(rows["t"], zip(rows["sent"], rows["late"], rows["dropped"], strict=True), strict=True))
    assert by_t[98.0] == (0, 0, 1) and by_t[99.0] == (2, 1, 0)
    d.closed = True
    assert d.take() is None


# --------------------------------------------------------------------------- stages


def test_phases_steps_ramps_and_hold() -> None:
    load = Load(
        model="open",
        stages=[
            {"duration": "10s", "requests_per_s": 100},
            {"duration": "10s", "requests_per_s": 300, "ramp": True},
        ],
    )
    ph = phases(load, 30.0)
    assert [(p.start, p.end, p.target_start, p.target_end, p.ramp) for p in ph] == [
        (0.0, 10.0, 100.0, 100.0, False),
        (10.0, 20.0, 100.0, 300.0, True),
        (20.0, 30.0, 300.0, 300.0, False),
    ]
    assert ph[1].name.startswith("stage 2: ramp 100 -> 300")
    segs = rate_segments(load, 1000.0, 30.0, share=0.5)
    s = Schedule(segs)
    assert s.count(1000.0, 1010.0) == pytest.approx(500.0)
    assert s.count(1010.0, 1020.0) == pytest.approx(1000.0)
    assert s.count(1020.0, 1030.0) == pytest.approx(1500.0)
    # a run shorter than its stages cuts the ramp where it is
    cut = phases(load, 15.0)
    assert cut[-1].end == 15.0 and cut[-1].target_end == pytest.approx(200.0)


def test_user_steps_and_flow_shares() -> None:
    load = Load(engine="lean", stages=[{"duration": "5s", "users": 10}, {"duration": "10s", "users": 30, "ramp": True}], spawn_rate=7)
    assert user_steps(load, 15.0) == [(0.0, 10, 7.0), (5.0, 30, 2.0)]
    mixed = Load(model="connection-rate", connections_per_s=1000, handshakes_per_s=100)
    assert flow_shares(mixed) == pytest.approx({"https": 0.1, "http": 0.9})
    assert flow_shares(Load(model="open", requests_per_s=5, scheme="http")) == {"http": 1.0}


# --------------------------------------------------------------------------- find-max


def test_search_grows_then_bisects() -> None:
    s = Search(start=100, growth=2, precision=0.1)
    outcome = {100: "pass", 200: "pass", 400: "pass", 800: "fail"}
    tried = []
    while (t := s.next_target()) is not None:
        tried.append(t)
        s.record(t, outcome.get(t, "pass" if t <= 500 else "fail"))
    assert tried[:4] == [100, 200, 400, 800]
    assert tried[4:] == [600, 500, 550]  # 550 - 500 is within 10 % of 500: done
    assert s.good == 500 and s.bad == 550
    assert s.plateau(0.7) == pytest.approx(350.0)


def test_search_stops_at_the_load_generator_and_at_the_limit() -> None:
    s = Search(start=100)
    s.record(s.next_target(), "pass")
    s.record(s.next_target(), "loadgen", "cpu")
    assert s.next_target() is None and s.good == 100 and s.limited_by == "loadgen"
    capped = Search(start=100, limit=300)
    tried = []
    while (t := capped.next_target()) is not None:
        tried.append(t)
        capped.record(t, "pass")
    assert tried == [100, 200, 300]


def test_search_when_nothing_passes() -> None:
    s = Search(start=160)
    tried = []
    while (t := s.next_target()) is not None:
        tried.append(t)
        s.record(t, "fail")
    assert tried == [160, 80, 40, 20, 10] and s.good is None and s.plateau(0.7) is None


def step(**kw: object) -> StepResult:
    base = {"target": 100.0, "seconds": 2.0, "due": 200, "sent": 200, "done": 200}
    return StepResult(**{**base, **kw})  # type: ignore[arg-type]


def test_judge_verdicts() -> None:
    bounds = Bounds(p99_ms=50.0, error_pct=1.0)
    good = step()
    good.histogram.add_many([5.0] * 200)
    assert judge(good, bounds)[0] == "pass"
    slow = step()
    slow.histogram.add_many([5.0] * 190 + [80.0] * 10)
    assert judge(slow, bounds) == ("fail", "p99 80.3 ms > 50 ms") or judge(slow, bounds)[0] == "fail"
    unfinished = step(done=190)
    unfinished.histogram.add_many([5.0] * 190)
    assert judge(unfinished, bounds)[1].startswith("p99 over 1% unfinished")
    errors = step(errors=5)
    errors.histogram.add_many([5.0] * 195)
    assert judge(errors, bounds)[0] == "fail"
    short = step(sent=180, due=200, done=180, waited=20, late=20)
    short.histogram.add_many([5.0] * 180)
    verdict, reason = judge(short, bounds)
    assert verdict == "fail" and "every connection busy" in reason
    behind = step(late=50)
    behind.histogram.add_many([5.0] * 200)
    assert judge(behind, bounds)[0] == "loadgen"
    hot = step(loadgen_cpu_pct=97.0)
    assert judge(hot, bounds)[0] == "loadgen"


def test_reports_merge_processes_by_bin() -> None:
    r = Reports()
    r.add("a", {"bins": {"400": [10, 10, 0, 0, 0, 10, 0, 0.001]}, "hist": {"400": {"100": 10}}, "t": 99.0, "cpu_s": 1.0})
    r.add("b", {"bins": {"400": [10, 9, 1, 1, 0, 9, 1, 0.002], "401": [5, 5, 0, 0, 0, 5, 0, 0]}, "t": 99.0, "cpu_s": 5.0})
    r.add("a", {"t": 102.0, "cpu_s": 1.6})
    r.add("b", {"t": 102.0, "cpu_s": 7.7})
    res = r.step(100.0, (100.0, 100.5))
    assert (res.due, res.sent, res.late, res.dropped, res.done, res.errors) == (25, 24, 1, 1, 24, 1)
    assert res.histogram.total == 10
    assert res.loadgen_cpu_pct == pytest.approx(90.0)
    assert r.reported_until() == 102.0


# --------------------------------------------------------------------------- held connections


def test_held_shares_add_up() -> None:
    assert sum(share(40_001, i, 3) for i in range(3)) == 40_001
    assert [share(5, i, 8) for i in range(8)] == [1, 1, 1, 1, 1, 0, 0, 0]
    mix = _interleave(2, 4)
    assert mix.count(True) == 2 and len(mix) == 6 and mix[:3].count(True) == 1


# --------------------------------------------------------------------------- fit


SEED = {
    "name": "peak",
    "scalable": True,
    "duration": 30,
    "overrides": {"lb": {"frontend": {"maxconn": 9900}}},
    "load": {
        "model": "connection-rate",
        "connections_per_s": 15000,
        "handshakes_per_s": 600,
        "requests_per_connection": 2,
        "users": 2000,
        "processes": "auto",
        "held": {"connections": 120000, "tls": 40000, "interval": "20s"},
    },
}
MACHINE = Machine(cores=2, fd_limit=20000, haproxy_fd_limit=20000, port_range=28232)


def seed() -> tuple[Scenario, object]:
    sc = Scenario.model_validate(SEED)
    topo, _ = load_topology("split", base_overrides={"lb": {"frontend": {"maxconn": 9900}, "timeouts": {"http_keep_alive": "60s"}}})
    return sc, topo


def test_needs_scale_linearly() -> None:
    sc, _ = seed()
    n1 = needs_of(sc.load, sc.duration, 20.0)
    n2 = needs_of(sc.scaled(0.1).load, sc.duration, 20.0)
    assert n1.held == 120000 and n1.held_tls == 40000
    assert n1.tls_connections_per_s == pytest.approx(600) and n1.plain_connections_per_s == pytest.approx(14400)
    assert n2.held == 12000 and n2.tls_connections_per_s == pytest.approx(60)
    assert n2.requests_per_s == pytest.approx(n1.requests_per_s * 0.1)


def test_max_scale_names_the_binding_limit() -> None:
    sc, topo = seed()
    best, binding = max_scale(sc, topo, MACHINE, 20.0)
    # one HAProxy frontend holds every client connection: (120000 held + 2000 pool) F <= maxconn 9900
    # (and 2 x that + 100 <= 20000 file descriptors), unless the cores bind first
    bound = 9900 / 122000
    assert best == pytest.approx(bound, rel=1e-3) or (best < bound and binding == "load-generator cores")
    assert binding in ("HAProxy frontend maxconn", "load-generator cores")
    lim = {x.name: x for x in limits(needs_of(sc.scaled(best * 0.99).load, 30, 20.0), MACHINE, topo, 2, cores_check=True)}
    assert all(x.fits for x in lim.values())


def test_prepare_load_refuses_a_scale_that_does_not_fit_in_one_line() -> None:
    sc, topo = seed()
    with pytest.raises(UserError) as err:
        prepare_load(sc, topo, scale=0.5, machine=MACHINE, log=lambda _m: None)
    text = str(err.value)
    assert "does not fit this machine" in text and "largest scale that fits" in text and "\n" not in text


def test_prepare_load_default_scale_and_processes() -> None:
    sc, topo = seed()
    said = []
    scaled, extra, fit = prepare_load(sc, topo, machine=MACHINE, log=said.append)
    assert fit.scale is not None and 0 < fit.scale <= fit.max_scale * 0.5 + 1e-9
    assert fit.scale == nice_floor(fit.scale)
    assert scaled.load.held.connections == round(120000 * fit.scale)
    assert isinstance(scaled.load.processes, int) and scaled.load.processes >= 2
    assert extra["held_interval"] == 20.0 and said and "default" in said[0]


def test_prepare_load_refuses_too_few_processes_and_unscalable_scale() -> None:
    sc = Scenario.model_validate({"name": "x", "load": {"model": "open", "requests_per_s": 10, "users": 10, "processes": 1, "held": {"connections": 25000, "tls": False}}})
    topo, _ = load_topology("split")
    with pytest.raises(UserError, match="need 25210 file descriptors per process, the limit is 20000"):
        prepare_load(sc, topo, machine=MACHINE, log=lambda _m: None)
    with pytest.raises(UserError, match="not scalable"):
        prepare_load(sc, topo, scale=0.1, machine=MACHINE, log=lambda _m: None)


def test_processes_auto_follows_cores_and_file_descriptors() -> None:
    load = Load(model="open", requests_per_s=10, users=100, processes="auto", held={"connections": 50000})
    needs = needs_of(load, 30, 5.0)
    assert resolve_processes(load, needs, MACHINE) == 3  # 50100 connections / 19800 per process
    small = Load(model="open", requests_per_s=10, users=10, processes="auto")
    assert resolve_processes(small, needs_of(small, 30, None), MACHINE) == 2  # one per core
    assert resolve_processes(small, needs_of(small, 30, None), MACHINE, workers=3) == 1


def test_held_interval_must_beat_the_keep_alive_timeout() -> None:
    sc = Scenario.model_validate({"name": "x", "load": {"model": "open", "requests_per_s": 10, "held": {"connections": 10, "interval": "9s"}}})
    topo, _ = load_topology("split")
    with pytest.raises(UserError, match="http_keep_alive"):
        prepare_load(sc, topo, machine=MACHINE, log=lambda _m: None)


def test_nice_floor() -> None:
    assert [nice_floor(x) for x in (0.37, 0.019, 3, 0.1, 7.5)] == [0.2, 0.01, 2.0, 0.1, 5.0]
    assert nice_floor(0) == 0.0


# --------------------------------------------------------------------------- spec


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ({"model": "open"}, "needs a target: set requests_per_s"),
        ({"model": "open", "requests_per_s": 5, "engine": "fasthttp"}, "lean engine"),
        ({"model": "connection-rate", "connections_per_s": 5, "requests_per_connection": 0}, "at least 1"),
        ({"model": "handshake-rate", "handshakes_per_s": 5, "scheme": "http"}, "scheme: https"),
        ({"model": "open", "requests_per_s": 5, "connections_per_s": 3}, "not a field of model open"),
        ({"model": "connection-rate", "connections_per_s": 5, "handshakes_per_s": 9}, "must not exceed"),
        ({"model": "open", "stages": [{"duration": "1s", "users": 3}]}, "set exactly the model's target"),
        ({"model": "keep-alive", "find_max": {"start": 10}}, "find_max searches a rate"),
        ({"model": "open", "requests_per_s": 5, "held": {"connections": 10, "tls": 11}}, "between 0 and connections"),
        ({"model": "open", "requests_per_s": 5, "processes": 0}, "between 1 and 64"),
        ({"model": "open", "requests_per_s": 5, "processes": "0"}, "between 1 and 64"),  # found by test_cli_fuzz
        ({"model": "open", "requests_per_s": 5, "processes": 0.0}, "between 1 and 64"),
    ],
)
def test_load_spec_errors(load: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Load.model_validate(load)


def test_load_spec_defaults_by_model() -> None:
    hs = Load.model_validate({"model": "handshake-rate", "handshakes_per_s": 10})
    assert hs.engine == "lean" and hs.requests_per_connection == 1 and hs.target_field == "handshakes_per_s"
    op = Load.model_validate({"model": "open", "requests_per_s": 10})
    assert op.requests_per_connection == 0 and op.is_rate
    held = Load.model_validate({"held": {"connections": 10, "tls": 4}})
    assert held.engine == "lean" and held.held.tls_connections == 4
    with pytest.raises(ValueError, match="too short for find_max"):
        Scenario.model_validate({"name": "x", "duration": 10, "load": {"model": "open", "find_max": {"start": 5, "step": "4s", "plateau": "5s"}}})


def test_scaled_load() -> None:
    sc, _ = seed()
    small = sc.scaled(0.01).load
    assert small.connections_per_s == pytest.approx(150) and small.handshakes_per_s == pytest.approx(6)
    assert small.held.connections == 1200 and small.held.tls == 400 and small.users == 20
    with pytest.raises(UserError):
        sc.scaled(0)


# --------------------------------------------------------------------------- corrected latency


def test_capture_stores_intended_time_and_corrected_latency(tmp_path: Path) -> None:
    cap = capture.RequestCapture(tmp_path)
    cap.record(10.0, 5.0, 100, 200, "", "GET /", False)
    cap.record_intended(19.9, 20.0, 5.0, 100, 200, "", "GET /", True)  # sent 100 ms late
    cap.flush()
    df = read_table(tmp_path, "requests")
    assert df["intended_t"].isna().tolist() == [True, False]
    assert df["latency_corrected_ms"].iloc[1] == pytest.approx(105.0)
    assert pd.isna(df["latency_corrected_ms"].iloc[0])


def requests_frame(n: int = 100, late_ms: float = 0.0) -> pd.DataFrame:
    t = 1000.0 + np.arange(n) * 0.01
    return pd.DataFrame(
        {
            "t": t + late_ms / 1000.0,
            "latency_ms": np.full(n, 2.0),
            "bytes": 10,
            "status": 200,
            "error": "",
            "name": "GET /",
            "worker": "w",
            "conn_new": False,
            "intended_t": t,
            "latency_corrected_ms": np.full(n, 2.0 + late_ms),
        }
    )


def test_corrected_latency_next_to_the_uncorrected() -> None:
    out = corrected_latency(requests_frame(late_ms=30.0), (1000.0, 1001.0))
    assert out["n"] == 100
    assert out["p50"] == pytest.approx(32.0) and out["p50_uncorrected"] == pytest.approx(2.0)
    closed = requests_frame().assign(intended_t=np.nan, latency_corrected_ms=np.nan)  # a closed-loop run
    assert corrected_latency(closed, (1000.0, 1001.0)) is None


def test_tls_mask_by_flow_names() -> None:
    df = pd.DataFrame({"name": ["GET / (https)", "GET / (http)", "held GET / (https)", "GET /"]})
    assert tls_mask(df, "https").tolist() == [True, False, True, True]
    assert tls_mask(df, "http").tolist() == [True, False, True, False]


def run_json(load: dict) -> dict:
    return {"scenario": {"name": "x", "load": {"engine": "lean", "scheme": "https", "requests_per_connection": 0, "processes": 1, **load}}}


def pacing_frame(seconds: int, due: int, sent: int, waited: int = 0, late: int = 0, dropped: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "t": 1000.0 + np.arange(seconds, dtype=float),
            "worker": "w",
            "flow": "https",
            "due": due,
            "sent": sent,
            "late": late,
            "dropped": dropped,
            "waited": waited,
            "resumed": 0,
            "dispatch_lag_max_ms": 1.0,
        }
    )


def summarise_load(run: dict, req: pd.DataFrame, pacing: pd.DataFrame, util: dict | None = None) -> dict:
    return load_summary(run, req, pacing, empty_frame("held"), [], (1000.0, 1001.0), {"per_s": None}, {}, {}, util or {})


def test_load_summary_target_reached() -> None:
    s = summarise_load(run_json({"model": "open", "requests_per_s": 100}), requests_frame(), pacing_frame(1, 100, 100))
    assert s["target"]["requests_per_s"] == 100 and s["achieved"]["requests_per_s"] == 100
    assert s["reached"] is True and s["limited_by"] is None and s["verdict"].endswith("target reached")
    assert pacing_summary(pacing_frame(3, 100, 100), (1000.2, 1002.9))["seconds"] == 1.0


def test_load_summary_says_when_the_generator_is_the_limit() -> None:
    req = requests_frame(60)
    behind = summarise_load(run_json({"model": "open", "requests_per_s": 100}), req, pacing_frame(1, 100, 60, late=40, dropped=40))
    assert behind["reached"] is False and behind["limited_by"] == "loadgen"
    assert "TARGET MISSED" in behind["verdict"] and "the load generator is the limit" in behind["verdict"]
    # a generator stalled for the whole window (every send dropped, none sent) is not the load balancer's doing
    stalled = summarise_load(run_json({"model": "open", "requests_per_s": 100}), requests_frame(0), pacing_frame(1, 100, 0, dropped=100))
    assert stalled["limited_by"] == "loadgen" and "100 of 100 sends were late or dropped" in stalled["verdict"]
    pool = summarise_load(run_json({"model": "open", "requests_per_s": 100}), req, pacing_frame(1, 100, 60, waited=40, late=40))
    assert pool["limited_by"] == "pool"
    hot = summarise_load(run_json({"model": "open", "requests_per_s": 100}), req, pacing_frame(1, 100, 60), {"loadgen": 95.0})
    assert hot["limited_by"] == "loadgen"
    cpu = {"by_container": {"loadgen": {"role": "loadgen", "total_mean_pct": 180.0, "mean_pct": [90.0, 90.0]}}}
    b = apply_load_verdict({"component": "contended", "verdict": "x", "saturated": [], "evidence": []}, behind, cpu)
    assert b["component"] == "loadgen" and "loadgen" in b["saturated"] and any("180.0" in e for e in b["evidence"])
    untouched = apply_load_verdict({"component": "none"}, {"limited_by": "pool"}, {})
    assert untouched["component"] == "none"


def test_a_process_that_never_got_its_schedule_is_the_harness_not_the_load_balancer(tmp_path: Path) -> None:
    import time
    from types import SimpleNamespace

    from bench.analysis.integrity import integrity_summary
    from bench.load.control import Controller
    from bench.results.events import read_events

    # the owning process's view: two workers connected, one said it got the schedule
    workers = SimpleNamespace(all=[SimpleNamespace(id="host_w1"), SimpleNamespace(id="host_w2")])
    env = SimpleNamespace(runner=SimpleNamespace(clients=workers))
    load = {"model": "open", "requests_per_s": 100, "scheme": "https", "processes": 2}
    ctl = Controller(env, {"load": load, "duration": 10, "run_dir": str(tmp_path)})
    ctl.on_ack(msg=SimpleNamespace(node_id="host_w1"))
    assert ctl.unacked() == ["host_w2"]
    ctl._check_schedules(time.time() - 10)
    events = read_events(tmp_path)
    problem = [e for e in events if e["kind"] == "integrity"]
    assert len(problem) == 1 and problem[0]["subject"] == "host_w2" and "1 of 2" in problem[0]["message"]
    integrity = integrity_summary(events, time.time() - 20)
    assert integrity["ok"] is False and "never got their schedule" in integrity["headline"]

    # the run it leaves: half the target sent, every send of the one process on time
    run = run_json({"model": "open", "requests_per_s": 100, "processes": 2})
    alone = summarise_load(run, requests_frame(50), pacing_frame(1, 50, 50))
    assert alone["limited_by"] == "lb"  # without the controller's word the shortfall looks like the LB's
    told = load_summary(run, requests_frame(50), pacing_frame(1, 50, 50), empty_frame("held"), events, (1000.0, 1001.0), {"per_s": None}, {}, {}, {})
    assert told["limited_by"] == "loadgen" and "THE SCHEDULE BROKE" in told["verdict"] and "never got their schedule" in told["verdict"]
    assert "load generator is the limit (its schedule broke)" in told["verdict"]

    # every process acknowledged: nothing to say
    ok = Controller(env, {"load": load, "duration": 10, "run_dir": str(tmp_path / "ok")})
    (tmp_path / "ok").mkdir()
    for w in ("host_w1", "host_w2"):
        ok.on_ack(msg=SimpleNamespace(node_id=w))
    ok._check_schedules(time.time() - 10)
    assert not [e for e in read_events(tmp_path / "ok") if e["kind"] == "integrity"]
    # a single process (no master): nothing to count
    assert Controller(SimpleNamespace(runner=SimpleNamespace()), {"load": load, "duration": 10}).unacked() == []
    b = apply_load_verdict({"component": "contended", "verdict": "x", "saturated": [], "evidence": []}, told, {}, {"scenario": {"load": {"processes": 2}}})
    assert b["component"] == "loadgen" and "rerun: the load generator itself failed" in b["verdict"] and "raise load.processes" not in b["verdict"]
