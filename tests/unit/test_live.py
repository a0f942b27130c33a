"""The live view and the metrics endpoint, fed by a run directory written like a real run writes it."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.errors import UserError
from bench.live import view as viewmod
from bench.live.metrics import MetricsServer, RunCollector
from bench.live.state import SETTLE_S, WINDOW_S, LiveState
from bench.results.store import ChunkWriter

T0 = 1_800_000_000.0


def _run(tmp_path: Path, thresholds: dict | None = None) -> dict:
    return {
        "id": "live-test",
        "scenario": {"duration": 30, "load": {"model": "open", "requests_per_s": 100}, "thresholds": thresholds or {}},
        "lab": {"project": "lbbench-0000live", "vip": "198.18.0.100"},
    }


def _requests(tmp_path: Path, seconds: range, per_s: int = 100, latency_ms: float = 10.0, errors: int = 0, writer: str = "1") -> None:
    w = ChunkWriter(tmp_path, "requests", writer)
    for s in seconds:
        t = T0 + s + np.arange(per_s) / per_s
        err = ["timeout"] * errors + [""] * (per_s - errors)
        w.write(
            {
                "t": t.tolist(),
                "latency_ms": [latency_ms] * per_s,
                "bytes": [100] * per_s,
                "status": [200] * per_s,
                "error": err,
                "name": ["GET /"] * per_s,
                "worker": ["w"] * per_s,
                "conn_new": [i % 10 == 0 for i in range(per_s)],
            }
        )


def _lab_samples(tmp_path: Path) -> None:
    cpu = ChunkWriter(tmp_path, "cpu", "collector")
    for i, t in enumerate((T0, T0 + 1.0)):
        cpu.write({
            "t": [t] * 3, "container": ["lb-a-frontend", "loadgen", "host"], "role": ["frontend", "loadgen", "host"], "node": ["lb-a", "", ""],
            "cpu": [0, 0, 0], "usage_s": [10.0 + 0.25 * i, 5.0 + 0.5 * i, 100.0 + 1.5 * i],
        })  # fmt: skip
    cpu.write({"t": [T0 + 9.0] * 2, "container": ["loadgen", "host"], "role": ["loadgen", "host"], "node": ["", ""], "cpu": [0, 0], "usage_s": [5.5 + 0.5 * 8, 101.5 + 1.5 * 8]})
    info = ChunkWriter(tmp_path, "haproxy_info", "collector")
    info.write({
        "t": [T0] * 3, "node": ["lb-a"] * 3, "service": ["lb-a-frontend"] * 3, "kind": ["frontend"] * 3,
        "metric": ["ConnRate", "SslFrontendKeyRate", "CurrConns"], "value": [12.0, 3.0, 40.0],
    })  # fmt: skip
    # lb-b's frontend answers on; lb-a's stopped (crashed) after T0: its last sample must not count
    info.write({"t": [T0 + 9.0] * 2, "node": ["lb-b"] * 2, "service": ["lb-b-frontend"] * 2, "kind": ["frontend"] * 2, "metric": ["ConnRate", "CurrConns"], "value": [5.0, 20.0]})
    stat = ChunkWriter(tmp_path, "haproxy_stat", "collector")
    stat.write({
        "t": [T0], "node": ["lb-a"], "service": ["lb-a-frontend"], "kind": ["frontend"], "pxname": ["fe_https"], "svname": ["FRONTEND"],
        "type": [0], "status": ["OPEN"], "scur": [40.0], "stot": [900.0], "req_tot": [3000.0],
    })  # fmt: skip
    vrrp = ChunkWriter(tmp_path, "vrrp", "collector")
    vrrp.write({"t": [T0, T0], "node": ["lb-a", "lb-b"], "holds_vip": [True, False]})
    vrrp.write({"t": [T0 + 5, T0 + 5], "node": ["lb-a", "lb-b"], "holds_vip": [False, True]})
    # lb-b crashes while holding it, lb-a takes it back: lb-b's last sample stays but is stale
    vrrp.write({"t": [T0 + 6], "node": ["lb-b"], "holds_vip": [True]})
    vrrp.write({"t": [T0 + 9, T0 + 10], "node": ["lb-a", "lb-a"], "holds_vip": [True, True]})
    with open(tmp_path / "events.jsonl", "w") as fh:
        fh.write(json.dumps({"t": T0, "kind": "phase", "name": "load"}) + "\n")
        fh.write(json.dumps({"t": T0 + 2, "kind": "phase", "name": "steady"}) + "\n")
        fh.write(json.dumps({"t": T0 + 4, "kind": "fault", "name": "crash", "id": 1, "node": "lb-a"}) + "\n")
        fh.write('{"t": 1800000009, "kind": "pha')  # a torn last line: read once complete


def _state(tmp_path: Path, thresholds: dict | None = None) -> LiveState:
    _lab_samples(tmp_path)
    _requests(tmp_path, range(10), per_s=100, errors=2)
    state = LiveState(tmp_path, _run(tmp_path, thresholds))
    state.set_phase("load", T0)
    state.poll()
    return state


def test_snapshot_rates_errors_latency_and_lab(tmp_path: Path) -> None:
    state = _state(tmp_path)
    snap = state.snapshot(now=T0 + 10 + SETTLE_S)  # seconds 5..9 complete
    assert snap.window_s == WINDOW_S
    assert snap.requests_per_s == pytest.approx(100) and snap.errors_per_s == pytest.approx(2)
    assert snap.errors_window == {"timeout": 10} and snap.totals["errors"] == {"timeout": 20}
    assert snap.conn_new_per_s == pytest.approx(10)
    assert snap.p50_ms == pytest.approx(10.0, rel=0.01) and snap.p99_ms == pytest.approx(10.0, rel=0.01)
    assert snap.target == 100 and snap.target_field == "requests_per_s"
    # lb-a-frontend's CPU and HAProxy samples stopped at T0 + 1 / T0: stale, left out
    assert snap.cpu_pct == {"loadgen": pytest.approx(50.0), "host": pytest.approx(150.0)}
    assert snap.haproxy["ConnRate"] == 5 and snap.haproxy["CurrConns"] == 20
    assert snap.vip_holders == ["lb-a"] and snap.vip_changes == 2
    assert [e["kind"] for e in snap.events] == ["fault", "vip", "vip"]
    assert snap.load_phase == "steady" and snap.elapsed_s == pytest.approx(10 + SETTLE_S) and snap.left_s == pytest.approx(30 - 10 - SETTLE_S)


def test_only_new_chunks_are_read_and_incomplete_seconds_wait(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _requests(tmp_path, range(10, 12), per_s=300)
    state.poll()
    assert state.total.count == 10 * 100 + 2 * 300  # nothing counted twice
    # second 11 is not complete at T0 + 12: the window ends at second 9
    assert state.snapshot(now=T0 + 12.0).requests_per_s == pytest.approx(100)
    assert state.snapshot(now=T0 + 12 + SETTLE_S).requests_per_s == pytest.approx((3 * 100 + 2 * 300) / WINDOW_S)
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('se", "name": "hold"}\n')
    state.poll()
    assert state.events[-1]["name"] == "hold"


def test_the_window_counts_only_whole_seconds_of_the_load(tmp_path: Path) -> None:
    """A load that starts and ends mid-second: its partial first and last seconds never dilute the rate."""
    _requests(tmp_path, range(10), per_s=100)  # 100 req/s in every whole second T0 .. T0 + 9
    state = LiveState(tmp_path, _run(tmp_path, {"load.achieved_pct.requests_per_s": ">= 95"}))
    state.set_phase("load", T0 - 0.6)  # the go came 0.6 s before the first whole second
    state.poll()
    early = state.snapshot(now=T0 + 1 + SETTLE_S - 0.1)  # no whole second of the load has settled yet
    assert early.requests_per_s is None and early.window_s == 0 and early.p50_ms is None
    first = state.snapshot(now=T0 + 1 + SETTLE_S + 0.1)  # second T0 has settled: one second, not five
    assert first.window_s == 1 and first.requests_per_s == pytest.approx(100)
    assert {t["threshold"]: t["status"] for t in first.thresholds}["load.achieved_pct.requests_per_s >= 95"] == "pass"
    assert state.snapshot(now=T0 + 3 + SETTLE_S + 0.1).window_s == 3
    state.set_phase("stop", T0 + 9.5)  # the load ended half-way through second 9
    _requests(tmp_path, range(9, 10), per_s=50, writer="2")  # ... and second 9 got its first half only
    state.poll()
    end = state.snapshot(now=T0 + 30)
    assert end.window_s == WINDOW_S and end.requests_per_s == pytest.approx(100)  # seconds 4 .. 8


def test_live_thresholds_judge_what_they_can_now(tmp_path: Path) -> None:
    state = _state(tmp_path, {"latency_ms.p99": "< 50", "errors.pct": "< 1", "tls.resumption_pct": ">= 90"})
    got = {t["threshold"]: (t["status"], t["value"]) for t in state.snapshot(now=T0 + 12.5).thresholds}
    assert got["latency_ms.p99 < 50"][0] == "pass"
    assert got["errors.pct < 1"] == ("fail", pytest.approx(2.0))
    assert got["tls.resumption_pct >= 90"] == ("at the end", None)


def test_panel_and_line_render_with_separators(tmp_path: Path) -> None:
    state = _state(tmp_path, {"errors.pct": "< 0.01"})
    _requests(tmp_path, range(10, 20), per_s=2000, writer="2")
    state.poll()
    snap = state.snapshot(now=T0 + 20 + SETTLE_S)
    text = viewmod.line(snap)
    assert "2,000 req/s" in text and "failing: errors.pct < 0.01" in text and "VIP lb-a" in text
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=140, force_terminal=False).print(viewmod.render(snap))
    screen = out.getvalue()
    for words in ("2,000 req/s", "p99", "loadgen 50%", "fault crash on lb-a", "✗ errors.pct < 0.01", "VIP"):
        assert words in screen, words


def test_lines_mode_prints_one_line_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lab_samples(tmp_path)
    _requests(tmp_path, range(3))
    out = io.StringIO()
    live = viewmod.LiveView("lines", stream=out)
    live.state = LiveState(tmp_path, _run(tmp_path))
    live._tick()
    live._tick()  # within LINE_EVERY_S: no second line
    live._tick(final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("live [") for line in lines)


def test_metrics_text_parses_and_holds_client_and_haproxy_figures(tmp_path: Path) -> None:
    state = _state(tmp_path, {"errors.pct": "< 1"})
    coll = RunCollector()
    coll.watch(state)
    coll.update(state.snapshot(now=T0 + 12.5))
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(coll)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    req = {s.labels["outcome"]: s.value for s in families["lbbench_client_requests"].samples if s.name.endswith("_total")}
    assert req == {"ok": 980.0, "timeout": 20.0}
    hist = {s.labels.get("le"): s.value for s in families["lbbench_client_latency_seconds"].samples if s.name.endswith("_bucket")}
    assert hist["0.005"] == 0 and hist["0.025"] == 980 and hist["+Inf"] == 980
    assert [(s.labels["type"], s.value) for s in families["lbbench_haproxy_sessions"].samples if s.name.endswith("_total")] == [("frontend", 900.0)]
    assert {s.labels["node"] for s in families["lbbench_vip_holder"].samples} == {"lb-a"}
    assert [s.value for s in families["lbbench_threshold_ok"].samples] == [0.0]


def test_metrics_server_answers_and_a_used_port_is_one_line() -> None:
    probe = MetricsServer(65000)
    try:
        probe.start()
    except UserError:
        pytest.skip("port 65000 busy on this machine")
    try:
        body = urllib.request.urlopen(probe.url, timeout=5).read().decode()
        assert "lbbench_run_active 0.0" in body
        with pytest.raises(UserError, match="already in use"):
            MetricsServer(65000).start()
    finally:
        probe.stop()
    with pytest.raises(UserError, match="not a TCP port"):
        MetricsServer(70000)


def test_watch_a_finished_run_shows_its_last_seconds(tmp_path: Path) -> None:
    import shutil

    golden = Path(__file__).resolve().parents[1] / "golden" / "runs" / "smoke"
    shutil.copytree(golden, tmp_path / "run")
    out = io.StringIO()
    assert viewmod.watch_run(tmp_path / "run", "lines", stream=out) == "completed"
    text = out.getvalue()
    assert text.startswith("live [done") and " 0 req/s" not in text and "p99" in text
