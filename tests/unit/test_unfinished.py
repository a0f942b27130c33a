"""Requests sent and never finished: every engine path counts them, the run directory keeps them, and the
summary, the thresholds and the report say what they could change.

The engine tests drive :class:`LeanClient` against loopback servers that never answer (threads, no Docker),
as the lean engine's own tests do; the analysis tests add an ``unfinished`` table to a copy of the golden
smoke run (a real run directory).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import threading
import time
from html import escape
from pathlib import Path

import gevent
import pandas as pd
import pytest

from bench.analysis.summary import headline, summarise
from bench.analysis.unfinished import figure_bounds, unfinished_summary
from bench.load.capture import RequestCapture
from bench.load.held import HeldPool
from bench.load.leanclient import Watchdog
from bench.load.pacing import Dispatcher, PacingStats, Segment, SlotRecorder, SlotRunner
from bench.report.header import render_header
from bench.results.store import ChunkWriter, empty_frame, read_table
from bench.results.tables import UNFINISHED
from bench.thresholds import evaluate, parse_thresholds

from .test_lean_client import FakeCapture, IntendedCapture, Server, client_for, ok, pki  # noqa: F401 - pki is a fixture

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"


class DropCapture(IntendedCapture):
    """Rows as the lean tests' captures keep them, and the requests dropped unanswered."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[tuple] = []

    def unfinished(self, t, name, phase="", conn_new=None, intended_t=None, trace_id=None) -> None:
        self.dropped.append((t, name, phase, conn_new, intended_t, trace_id))


@pytest.fixture
def silent(pki) -> object:  # noqa: F811 - the fixture above
    """A TLS server that reads each request and never answers it."""
    hold = threading.Event()

    def never(_conn: socket.socket, _request: bytes) -> bool:
        hold.wait(10)
        return False

    server = Server(never, pki[1])
    yield server
    hold.set()
    server.close()


def test_a_killed_burst_counts_its_request_in_flight(silent, pki) -> None:  # noqa: F811
    """Locust killing a keep-alive user mid-request: the request is unfinished, not lost (it has no row)."""
    client = client_for(silent.port, pki[0], timeout=30)
    capture = client.capture = DropCapture()
    sent = time.time()
    glet = gevent.spawn(client.burst, 10, math.inf)
    gevent.sleep(0.5)  # connected, request sent, no answer
    glet.kill(block=True, timeout=5)
    client.close()  # (LeanHttpsUser.on_stop): nothing is counted twice
    assert capture.rows == []
    assert len(capture.dropped) == 1
    t, name, phase, conn_new, intended, trace_id = capture.dropped[0]
    assert sent <= t < sent + 0.5 and name == "GET /x" and phase == "response" and conn_new is True and intended is None and trace_id is None


def test_a_request_dropped_during_the_handshake_waits_for_the_connect(pki) -> None:  # noqa: F811
    """A listener that never accepts: TCP connects (the backlog), the TLS handshake never ends."""
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        client = client_for(sock.getsockname()[1], pki[0], timeout=30, connect_timeout=30)
        capture = client.capture = DropCapture()
        glet = gevent.spawn(client.request)
        gevent.sleep(0.3)
        glet.kill(block=True, timeout=5)
        client.close()
    finally:
        sock.close()
    assert [(d[2], d[3]) for d in capture.dropped] == [("connect", True)]


def test_a_rate_slot_dropped_carries_its_intended_time(silent, pki) -> None:  # noqa: F811
    """Rate models: the user stops (SlotRunner.abort) with its slot's first request unanswered."""
    stats = PacingStats(worker="w")
    dispatcher = Dispatcher(stats, max_lag=1.0)
    capture = DropCapture()
    clients = []

    def make_client(_flow: str):
        client = client_for(silent.port, pki[0], timeout=30)
        clients.append(client)
        return client

    runner = SlotRunner(dispatcher, stats, SlotRecorder(capture, stats), 1, make_client, lambda: False)
    start = time.time()
    dispatcher.set_schedule("https", [Segment.step(start, 20.0)])
    dispatcher.start()
    glet = gevent.spawn(runner.serve, start + 30)
    gevent.sleep(0.5)
    glet.kill(block=True, timeout=5)  # serve's abort, then the user's on_stop
    runner.abort()
    dispatcher.close()
    for client in clients:
        client.close()
    assert capture.rows == []
    assert len(capture.dropped) == 1
    t, _name, phase, _conn_new, intended, _ = capture.dropped[0]
    assert phase == "response" and intended is not None and start <= intended <= t


def test_held_connections_stopped_count_their_requests_in_flight(silent, pki) -> None:  # noqa: F811
    capture = DropCapture()
    dog = Watchdog()

    def make_client(_tls: bool):
        client = client_for(silent.port, pki[0], timeout=30)
        client.capture = capture
        return client

    pool = HeldPool(make_client, interval=0.1, rate=1000.0, on_client=lambda c: dog.add(c, 30.0), off_client=dog.discard)
    pool.start(3, 3)
    for _ in range(100):
        gevent.sleep(0.05)
        if silent.accepted == 3:
            break
    gevent.sleep(0.3)
    pool.stop()
    assert capture.rows == [] and len(capture.dropped) == 3


def test_the_capture_writes_them_to_the_run_directory(tmp_path: Path) -> None:
    cap = RequestCapture(tmp_path)
    before = time.time()
    cap.unfinished(before - 2.5, "GET /", "response", True, None, 7)
    cap.unfinished(before - 0.5, "GET /", "connect", True, before - 0.6, None)
    cap.stop()
    # dropped after the last flush (a pool stopped at exit): still written
    cap.unfinished(before - 1.0, "held GET / (https)", "response", False)
    got = read_table(tmp_path, "unfinished").sort_values("t")
    assert got["name"].astype(str).tolist() == ["GET /", "held GET / (https)", "GET /"]
    assert got["phase"].astype(str).tolist() == ["response", "response", "connect"]
    assert (got["dropped_t"] >= before).all() and (got["worker"].astype(str) == cap.worker).all()
    assert got["trace_id"].tolist()[0] == 7 and pd.isna(got["trace_id"].tolist()[1])
    assert got["intended_t"].tolist()[2] == pytest.approx(before - 0.6)


def test_requests_sent_after_the_stop_began_are_marked(tmp_path: Path) -> None:
    """A user whose wait ends as Locust stops it sends, and the kill lands after: that request is marked after_stop."""
    cap = RequestCapture(tmp_path)
    before = time.time()
    cap.unfinished(before - 1.0, "GET /", "response")  # hung before the stop
    cap.mark_stopping(environment=None)  # (Locust's test_stopping event)
    cap.mark_stopping()  # a second stop keeps the first moment
    assert cap.stopping_at is not None and before <= cap.stopping_at <= time.time()
    cap.unfinished(time.time(), "GET /", "")  # sent as it stopped
    cap.stop()
    got = read_table(tmp_path, "unfinished").sort_values("t")
    assert got["after_stop"].tolist() == [False, True]


# --------------------------------------------------------------------------- analysis


def _unf(rows: list[tuple[float, float, str]]) -> pd.DataFrame:
    """An unfinished table from (t, dropped_t, worker) rows."""
    frame = empty_frame("unfinished")
    if not rows:
        return frame
    data = {c: [None] * len(rows) for c in frame.columns}
    data["t"], data["dropped_t"], data["worker"] = ([r[i] for r in rows] for i in range(3))
    data["name"] = ["GET"] * len(rows)
    data["phase"] = ["response"] * len(rows)
    return pd.DataFrame(data)


def _requests(latencies: list[float], t0: float = 100.0) -> pd.DataFrame:
    n = len(latencies)
    return pd.DataFrame({"t": [t0 + i * 0.001 for i in range(n)], "latency_ms": latencies, "error": [""] * n, "conn_new": [None] * n, "status": [200] * n})


def test_counts_waits_and_who() -> None:
    req = _requests([10.0] * 1000)
    unf = _unf([(100.5, 103.5, "h:1"), (100.9, 102.9, "h:1"), (99.0, 103.0, "h:2"), (106.0, 107.0, "h:2")])
    latency = {"p50": 10.0, "p90": 10.0, "p99": 10.0, "p999": 10.0, "mean": 10.0, "max": 10.0, "source": "requests"}
    s = unfinished_summary(unf, req, empty_frame("latency_hist"), (100.0, 105.0), latency)
    assert s["total"] == 4 and s["oldest_s"] == 4.0
    assert s["steady"] == 3  # sent before the window ended: the one sent before it too (hung through it), not the one after
    assert s["by_worker"] == {"h:1": {"count": 2, "oldest_s": 3.0}, "h:2": {"count": 2, "oldest_s": 4.0}}
    assert s["by_phase"] == {"response": 4}
    assert s["steady_pct"] == pytest.approx(100 * 3 / 1003, abs=1e-3)
    assert s["large"] is True  # waited 4 s, every finished request 10 ms: a hang
    none = unfinished_summary(_unf([]), req, empty_frame("latency_hist"), (100.0, 105.0), latency)
    assert none == {"total": 0, "at_stop": 0, "steady": 0, "steady_pct": 0.0, "oldest_s": None, "large": False, "by_phase": {}, "by_worker": {}, "bounds": {}}


def test_bounds_of_a_percentile_follow_the_rank_the_unfinished_reach() -> None:
    """u unfinished slower than all of n finished reach the p99 once u > 1 % of n + u: then it is unbounded."""
    req = _requests([float(i) for i in range(1, 1001)])  # 1 .. 1000 ms
    latency = {"p50": 500.5, "p90": 900.5, "p99": 990.0, "p999": 999.0, "mean": 500.5, "max": 1000.0, "source": "requests"}
    window = (100.0, 105.0)
    few = figure_bounds(req, empty_frame("latency_hist"), window, latency, pd.Series([0.002] * 5).to_numpy(), pd.Series([True] * 5).to_numpy())
    assert few["latency_ms.p99"]["high"] == 995.0  # the 995th of 1000 is the 99th percentile of 1005
    assert few["latency_ms.p99"]["low"] < 990.0  # as if the five had answered in 2 ms
    assert few["latency_ms.p999"]["high"] is None and few["latency_ms.max"]["high"] is None
    many = figure_bounds(req, empty_frame("latency_hist"), window, latency, pd.Series([3.0] * 11).to_numpy(), pd.Series([True] * 11).to_numpy())
    assert many["latency_ms.p99"]["high"] is None
    assert many["latency_ms.p99"]["low"] == 990.0  # waits of 3 s lower no latency figure
    assert many["requests.per_s"] == {"low": 200.0, "high": 202.2}
    assert many["errors.pct"] == {"low": 0.0, "high": pytest.approx(100 * 11 / 1011, abs=1e-3)}


@pytest.mark.parametrize(
    ("bound", "expr", "status"),
    [
        ({"low": 40.0, "high": 45.0}, "< 50", "pass"),
        ({"low": 40.0, "high": None}, "< 50", "undecided"),
        ({"low": 40.0, "high": 60.0}, "< 50", "undecided"),
        ({"low": 51.0, "high": None}, "< 50", "fail"),
        ({"low": 45.0, "high": 60.0}, "== 47.744", "undecided"),
    ],
)
def test_a_threshold_the_unfinished_could_flip_is_undecided(bound, expr, status) -> None:
    s = json.loads((GOLDEN / "smoke" / "summary.json").read_text())  # p99 47.744
    if status == "fail":
        s["latency_ms"]["p99"] = 52.0
    s["unfinished"] = {"total": 3, "bounds": {"latency_ms.p99": bound}}
    s["bottleneck"] = {"component": "none"}  # (the golden run's own verdict would make any pass inconclusive)
    got = evaluate(parse_thresholds({"latency_ms.p99": expr}), s)
    assert got["results"][0]["status"] == status
    assert got["status"] == {"pass": "pass", "fail": "fail", "undecided": "inconclusive"}[status]
    assert got["undecided"] == (status == "undecided")
    if status == "undecided":
        assert "3 unfinished" in got["results"][0]["message"] and "undecided" in got["results"][0]["message"]


def _golden_with_unfinished(tmp_path: Path, rows: list[tuple[float, float]], thresholds: dict | None = None) -> Path:
    run_dir = tmp_path / "smoke"
    shutil.copytree(GOLDEN / "smoke", run_dir, ignore=shutil.ignore_patterns("summary.json"))
    if thresholds is not None:
        run = json.loads((run_dir / "run.json").read_text())
        run["scenario"]["thresholds"] = thresholds
        (run_dir / "run.json").write_text(json.dumps(run))
    writer = ChunkWriter(run_dir, UNFINISHED, "test")
    if rows:
        writer.write({"t": [r[0] for r in rows], "dropped_t": [r[1] for r in rows], "worker": ["h:1"] * len(rows), "name": ["GET"] * len(rows)})
    writer.close()
    return run_dir


def test_a_normal_run_reads_as_before_with_a_zero_count(tmp_path: Path) -> None:
    """The golden smoke run with an empty unfinished table: the summary as before, and 0."""
    s = summarise(_golden_with_unfinished(tmp_path, []))
    before = json.loads((GOLDEN / "smoke" / "summary.json").read_text())
    assert before["unfinished"] is None  # recorded before the count: it could not tell
    assert s["unfinished"]["total"] == 0 and s["unfinished"]["large"] is False
    assert {k: v for k, v in s.items() if k != "unfinished"} == {k: v for k, v in before.items() if k != "unfinished"}
    assert headline(s) == headline(before)
    assert "0 unfinished" in render_header({}, s) and "Unfinished requests" not in render_header({}, s)


def test_requests_cut_by_the_stop_are_in_no_range_and_decide_nothing(tmp_path: Path) -> None:
    """Two requests sent as the load stopped and cut at once (as a paced run ends: Locust kills a waiting user, and the
    kill lands after it sent): counted apart (at_stop), in no figure's range, so errors.total <= 0 still passes."""
    run = json.loads((GOLDEN / "smoke" / "run.json").read_text())
    end = run["load_window"]["end"]
    run_dir = _golden_with_unfinished(tmp_path, [], {"errors.total": "<= 0"})
    writer = ChunkWriter(run_dir, UNFINISHED, "test2")
    writer.write({"t": [end - 0.03, end - 0.02], "dropped_t": [end - 0.0298, end - 0.0197], "worker": ["h:1"] * 2, "name": ["GET"] * 2, "after_stop": [True, True]})
    writer.close()
    s = summarise(run_dir)
    u = s["unfinished"]
    assert u["total"] == 2 and u["at_stop"] == 2 and u["steady"] == 0 and u["large"] is False and u["bounds"] == {}
    assert s["thresholds"]["results"][0]["status"] == "pass"
    line = "2 requests sent as the load stopped, cut by the stop at once (in no figure's range)"
    assert line in headline(s)
    html = render_header({}, s)
    assert escape(line) in html and "0 unfinished" in html
    # the same two, not known to be cut (a run recorded before the mark): the rule could flip, as before
    s = summarise(_golden_with_unfinished(tmp_path / "old", [(end - 0.03, end - 0.0298), (end - 0.02, end - 0.0197)], {"errors.total": "<= 0"}))
    assert s["unfinished"]["at_stop"] == 0 and s["thresholds"]["results"][0]["status"] == "undecided"


def test_a_hung_run_says_so_everywhere(tmp_path: Path) -> None:
    """50 requests of the steady window never answered (over 1 % of it): the p99 could be anything above the
    finished requests' p99, so a p99 threshold that the finished requests pass is undecided, not passed."""
    run = json.loads((GOLDEN / "smoke" / "run.json").read_text())
    end = run["load_window"]["end"]
    window = json.loads((GOLDEN / "smoke" / "summary.json").read_text())["window"]
    rows = [(window["start"] + 1.0 + i * 0.05, end + 5.0) for i in range(50)]
    s = summarise(_golden_with_unfinished(tmp_path, rows, {"latency_ms.p99": "< 100", "errors.pct": "< 5"}))
    u = s["unfinished"]
    assert u["total"] == 50 and u["steady"] == 50 and u["large"] is True
    assert u["oldest_s"] == pytest.approx(end + 5.0 - rows[0][0], abs=1e-3)
    assert u["bounds"]["latency_ms.p99"]["high"] is None
    results = {r["metric"]: r["status"] for r in s["thresholds"]["results"]}
    assert results == {"latency_ms.p99": "undecided", "errors.pct": "pass"}  # 50 of 5,192 are under 5 % however they ended
    assert s["thresholds"]["status"] == "inconclusive"
    line = f"50 requests unfinished at the load's end, oldest waiting {u['oldest_s']:.1f} s"
    assert any(x.startswith(line) for x in headline(s))
    assert line in s["bottleneck"]["verdict"]
    assert "50 requests unfinished when the load stopped (sent, never answered) are in no client count" in s["checks"][0]["note"]
    html = render_header({}, s)
    assert "Unfinished requests" in html and escape(line) in html and "undecided" in html
    assert "p99 up to unbounded with 50 unfinished" in html  # the latency tile says its p99 is of the finished ones
