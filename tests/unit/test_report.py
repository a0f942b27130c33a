"""The report builder on small synthetic run directories: empty, requests only, interrupted; and `bench report`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.summary import summarise
from bench.cli import main
from bench.load import capture
from bench.report import build, build_report
from bench.report.html import render_html
from bench.report.plots import OPTIONAL_PLOTS, PLOTS, Plot
from bench.results.store import ChunkWriter

T0 = 1_700_000_000.0


def make_run(tmp_path: Path, *, requests: bool = True, end: float | None = T0 + 6.0, events: list[dict] | None = None) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = {
        "schema_version": 1,
        "id": "unit-base-1",
        "status": "completed" if end else "interrupted",
        "scenario": {"name": "unit", "ramp_up": 1.0, "duration": 6.0, "load": {"scheme": "https", "users": 2, "processes": 1}},
        "topology": {"name": "split", "lb": {"layout": "split", "frontend": {"nbthread": 1}, "backend": {"nbthread": 1, "processes": 2}}, "servers": {"nbthread": 1}},
        "variant": None,
        "machine": {"cpus": 2},
        "versions": {"lbbench": "0.1.0"},
        "load_window": {"start": T0, "end": end},
        "started_at": "2023-11-14T22:13:20+00:00",
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    if requests:
        rng = np.random.default_rng(1)
        t = np.sort(T0 + rng.uniform(0, 6, 600))
        lat = rng.gamma(2.0, 2.0, t.size)
        err = np.where((t > T0 + 3.0) & (t < T0 + 3.5), "refused", "")
        cols = {
            "t": t.tolist(),
            "latency_ms": lat.tolist(),
            "bytes": [100] * t.size,
            "status": np.where(err == "", 200, 0).tolist(),
            "error": err.tolist(),
            "name": ["GET /"] * t.size,
            "worker": ["w:1"] * t.size,
            "conn_new": [None] * t.size,
        }
        ChunkWriter(run_dir, "requests", "1").write(cols)
        ChunkWriter(run_dir, "latency_hist", "1").write(capture.histogram_columns(cols, "w:1"))
    if events:
        (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run_dir


def test_empty_run_renders_with_nulls(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, requests=False)
    report = build_report(run_dir)
    html = report.read_text()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["requests"]["total"] == 0 and s["latency_ms"]["p50"] is None
    assert s["connections"]["client_max"] is None and s["cpu"]["host_per_core_pct"] is None
    assert s["bottleneck"]["component"] is None
    assert all(c["ok"] is None for c in s["checks"])
    # empty panels are left out, and named once
    assert "<img" not in html and "Not drawn (no data in this run): Requests, errors and latency, Latency distribution" in html
    named = html.split("Not drawn (no data in this run): ")[1].split(".</p>")[0]
    assert all(title in named for name, title, _ in PLOTS if name not in OPTIONAL_PLOTS)
    assert not list((run_dir / "plots").glob("*.png"))


def test_requests_only_run_with_events(tmp_path: Path) -> None:
    events = [{"t": T0 + 3.0, "kind": "fault", "name": "crash", "id": 1, "target": "master", "node": "lb-a"}, {"t": T0 + 3.5, "kind": "recovery", "name": "crash", "id": 1}]
    run_dir = make_run(tmp_path, events=events)
    html = build_report(run_dir).read_text()
    assert (run_dir / "plots" / "requests.png").exists()
    assert not (run_dir / "plots" / "cpu_cores.png").exists()
    assert "<td>fault</td><td>crash</td>" in html and "<td>recovery</td>" in html
    s = json.loads((run_dir / "summary.json").read_text())
    assert [e["kind"] for e in s["failover"]["events"]] == ["crash"]
    assert "<h2>Failover</h2>" in html and "<td>crash</td><td>master</td>" in html
    assert s["errors"]["by_kind"]["refused"] == s["errors"]["total"] > 0
    assert s["latency_ms"]["source"] == "latency_hist"


def test_stale_plots_are_removed(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, requests=False)
    (run_dir / "plots").mkdir()
    (run_dir / "plots" / "ports.png").write_bytes(b"old")
    build_report(run_dir)
    assert not (run_dir / "plots" / "ports.png").exists()


def test_interrupted_run_without_end(tmp_path: Path) -> None:
    s = summarise(make_run(tmp_path, end=None))
    assert s["run"]["status"] == "interrupted"
    assert s["window"]["seconds"] > 0 and s["requests"]["per_s"] > 0


def test_a_killed_run_counts_as_ended_once_its_streams_fall_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "QUIET_S", 0.3)
    gone = subprocess.Popen([sys.executable, "-c", ""], start_new_session=True)  # a load generator's group, killed
    gone.wait()
    w = ChunkWriter(tmp_path, "vrrp", "killed")
    w.write({"t": [1.0], "node": ["lb-a"], "holds_vip": [True]})  # its last batch, just now
    killed = {"status": "running", "load_pid": gone.pid}
    assert build.writers_gone(tmp_path, killed)  # after waiting for the streams to be quiet
    assert not build.writers_gone(tmp_path, {**killed, "load_pid": os.getpgrp()})  # the load generator lives
    assert build.writers_gone(tmp_path, {"status": "interrupted", "load_pid": os.getpgrp()})  # bench ended it
    # the load generator is gone but something still appends (collectors of a run being torn down)
    stop = threading.Event()

    def append() -> None:
        while not stop.wait(0.02):
            w.write({"t": [2.0], "node": ["lb-a"], "holds_vip": [True]})

    w.write({"t": [2.0], "node": ["lb-a"], "holds_vip": [True]})
    writer = threading.Thread(target=append)
    writer.start()
    try:
        assert not build.writers_gone(tmp_path, killed)
    finally:
        stop.set()
        writer.join()
        w.close()


def test_failing_check_is_red_and_named() -> None:
    summary = json.loads((Path(__file__).resolve().parents[1] / "golden" / "runs" / "smoke" / "summary.json").read_text())
    summary["checks"][0].update(ok=False, client=900.0, haproxy=1000.0, diff_pct=-10.0)
    html = render_html({}, summary, [Plot("x", "X", "x", None)], _no_events(), 0.0)
    assert "<div class=\"verdict fail\"><b>Cross-checks:</b> 0 passed, 1 failed" in html
    assert "FAILED: requests" in html
    assert "<tr class='fail'><td>requests</td><td>FAIL</td>" in html


def _no_events() -> pd.DataFrame:
    return pd.DataFrame(columns=["t", "kind", "name"])


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_run(tmp_path, requests=False)
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run.json" in capsys.readouterr().err
    damaged = run_dir / "samples" / "requests" / "part-9-000000.arrow"
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(b"not an Arrow file")
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: cannot read this sample file" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_long_lines_keep_every_spike_and_gap() -> None:
    from bench.report.plots import envelope

    x = np.arange(100_000, dtype=float)
    y = np.zeros_like(x)
    y[12_345] = 50.0  # one spike
    y[70_000] = -5.0  # one dip
    y[40_000:41_000] = np.nan  # a gap in the data
    xs, ys = envelope(x, y, 500)
    assert xs.size <= 1000 + 10 and np.all(np.diff(xs) > 0)
    assert 12_345.0 in xs and ys[xs == 12_345.0][0] == 50.0
    assert np.nanmin(ys) == -5.0 and np.isnan(ys).any()
    assert not np.isnan(ys[(xs < 39_000) | (xs > 42_000)]).any()


def test_a_killed_load_generator_not_yet_reaped_writes_nothing() -> None:
    # bench run killed: its Locust, SIGKILLed too, waits as a zombie until init reaps it, and a
    # zombie still answers killpg(pgid, 0); the report must not take it for a live writer
    import os
    import subprocess
    import time

    from bench.report.build import group_alive

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert group_alive(child.pid)
        os.killpg(child.pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
            time.sleep(0.01)
        assert not group_alive(child.pid)  # a zombie, not reaped yet (we have not waited for it)
    finally:
        child.kill()
        child.wait()
    assert not group_alive(child.pid)


def test_plots_drawn_in_two_processes_are_the_plots_drawn_in_one(tmp_path: Path) -> None:
    """build_report draws FORKED_PLOTS in a forked copy (before the summary): the page, the files and their order are what one process draws."""
    from bench.analysis.common import load_run
    from bench.analysis.series import build_series
    from bench.report.plots import make_context, render_plots

    assert {name for name, _, _ in PLOTS} > build.FORKED_PLOTS  # a renamed plot would be drawn here only
    run_dir = make_run(tmp_path)
    (run_dir / "plots").mkdir()
    (run_dir / "plots" / "traffic.png").write_bytes(b"old")  # a forked plot without data: its stale file goes too
    html = build_report(run_dir).read_text()
    data = load_run(run_dir)
    series = build_series(data)
    alone = render_plots(make_context(data, series, summarise(run_dir)))
    drawn = [p for p in alone if p.png is not None]
    assert {p.name for p in drawn} & build.FORKED_PLOTS and {p.name for p in drawn} - build.FORKED_PLOTS  # both processes drew some
    # the copy draws before the summary exists: its plots read none of it (reading NO_SUMMARY raises; the parent would redo them)
    early = render_plots(make_context(data, series, build.NO_SUMMARY), names=build.FORKED_PLOTS)
    assert [(p.name, p.png) for p in early] == [(p.name, p.png) for p in alone if p.name in build.FORKED_PLOTS]
    with pytest.raises(RuntimeError, match="reads the summary"):
        build.NO_SUMMARY.get("ports")
    with pytest.raises(RuntimeError, match="reads the summary"):
        build.NO_SUMMARY["errors"]
    assert sorted(f.name for f in (run_dir / "plots").iterdir()) == sorted(f"{p.name}.png" for p in drawn)
    for p in drawn:
        assert (run_dir / "plots" / f"{p.name}.png").read_bytes() == p.png
    positions = [html.index(f"<h2>{p.title}</h2><figure><img alt='{p.title}' src='data:image/png;base64,{base64.b64encode(p.png).decode()}'>") for p in drawn]
    assert positions == sorted(positions)  # in PLOTS' order, each with its own picture


def test_a_failed_or_stalled_copy_leaves_its_step_to_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a forked copy fails (or is stopped as stalled), build_report does its step itself: the same files and page."""
    from bench.proc import Forked, ForkStalled

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_run(tmp_path / "a")
    html = build_report(first).read_text()
    files = {p.relative_to(first): p.read_bytes() for p in first.glob("*/*") if p.parent.name in ("plots", "derived")}

    def fail(self: Forked, stall_s: float = 20.0) -> None:
        self.close(wait_s=0.0)
        raise ForkStalled("stopped")

    monkeypatch.setattr(Forked, "result", fail)
    second = make_run(tmp_path / "b")
    for p in [*second.glob("plots/*"), *second.glob("derived/*")]:
        p.unlink()
    assert build_report(second).read_text() == html
    again = {p.relative_to(second): p.read_bytes() for p in second.glob("*/*") if p.parent.name in ("plots", "derived")}
    assert again == files and any(str(k).startswith("derived") for k in files) and any(str(k).startswith("plots") for k in files)
