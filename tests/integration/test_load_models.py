"""Every load model, briefly, against the split topology: what summary.json says about target and achieved.

Each test runs a shipped scenario (or a short variant of it) end to end with
``bench.run.run_scenario(..., duration='6s')`` (longer where the scenario's
ramp or stages need it) and asserts on summary.json; tests that only read a run
share it (a module fixture: the open model's checks read the stages run).
No rate threshold is asserted (the lab machines are small and shared): only
that targets and achieved figures are there and consistent, that nothing
failed, and ratios within one run that noise cannot flip (a full handshake
is not a resumed one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.errors import UserError
from bench.results.events import read_events
from bench.results.store import read_table
from bench.run import run_scenario

from .conftest import project_leftovers

pytestmark = pytest.mark.integration


def run(name: str, tmp_path: Path, duration: str = "6s", **kw: Any) -> tuple[dict[str, Any], Path]:
    out = tmp_path / "run"
    run_dir = run_scenario(name, duration=duration, out=out, log=lambda _m: None, **kw)
    summary = json.loads((run_dir / "summary.json").read_text())
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["status"] == "completed"
    assert project_leftovers(run_json["lab"]["project"]) == ([], [])
    return summary, run_dir


def assert_load(summary: dict[str, Any], *figures: str) -> dict[str, Any]:
    """target and achieved present for ``figures``, no error, something achieved."""
    load = summary["load"]
    assert summary["errors"]["total"] == 0, summary["errors"]
    for key in figures:
        assert load["target"][key] is not None and load["target"][key] > 0, key
        assert load["achieved"][key] is not None and load["achieved"][key] > 0, key
    assert load["verdict"]
    assert load["reached"] is not None
    return load


def test_keep_alive_model(node_image: str, tmp_path: Path) -> None:
    """Also the lean engine through a full lab (VIP, split topology, dummy servers): every body whole, connections renewed."""
    summary, run_dir = run("keep-alive", tmp_path)
    load = summary["load"]
    assert summary["errors"]["total"] == 0
    assert load["model"] == "keep-alive" and load["target"]["users"] == 50
    assert load["achieved"]["requests_per_s"] > 0
    # 100 requests per connection: many requests, few connections
    assert load["achieved"]["connections_per_s"] < load["achieved"]["requests_per_s"]
    df = read_table(run_dir, "requests")
    # /?size=1024 on the lean engine: each response's body counted whole; a new connection at least every 100 requests
    assert (df["bytes"] == 1024).all() and df["conn_new"].sum() >= len(df) / 100


def test_connection_rate_model(node_image: str, tmp_path: Path) -> None:
    summary, run_dir = run("connection-rate", tmp_path)
    load = assert_load(summary, "connections_per_s", "requests_per_s", "handshakes_per_s")
    assert load["target"]["requests_per_s"] == pytest.approx(4 * load["target"]["connections_per_s"])
    # four requests per connection, counted by the client over the whole run (only the last connections may end early)
    df = read_table(run_dir, "requests")
    assert len(df) == pytest.approx(4 * int(df["conn_new"].sum()), rel=0.05)
    if load["reached"]:
        # and in the 2 s steady window while the client kept its schedule; a client behind it (an overloaded
        # machine: 144 of 200 connections/s once; 200 connections/s but 716 of 800 requests/s another time)
        # opens connections ahead of their requests there, and says so
        assert load["achieved"]["requests_per_s"] == pytest.approx(4 * load["achieved"]["connections_per_s"], rel=0.1)
    else:
        assert load["reached"] is False and load["limited_by"], load["verdict"]
    assert load["achieved_haproxy"]["connections_per_s"] > 0
    assert {c["name"]: c["ok"] for c in summary["checks"]}["connections"] is True


def test_full_handshakes(node_image: str, tmp_path: Path) -> None:
    summary, _ = run("handshake-rate", tmp_path)
    load = assert_load(summary, "handshakes_per_s")
    hap = load["achieved_haproxy"]
    assert summary["tls"]["resumption_pct"] is not None and summary["tls"]["resumption_pct"] <= 5.0
    # every handshake full: SslFrontendKeyRate carries (nearly) all of them
    assert hap["full_handshakes_per_s"] > 0.8 * hap["handshakes_per_s"]


@pytest.mark.parametrize("scenario", ["handshake-rate-resumed", "handshake-rate-session-ids"])
def test_resumed_handshakes(node_image: str, tmp_path: Path, scenario: str) -> None:
    summary, run_dir = run(scenario, tmp_path)
    load = assert_load(summary, "handshakes_per_s")
    assert summary["tls"]["resumption_pct"] >= 80.0
    assert load["achieved"]["resumption_pct"] >= 80.0
    hap = load["achieved_haproxy"]
    assert hap["full_handshakes_per_s"] < 0.5 * hap["handshakes_per_s"]
    checks = {c["name"]: c for c in summary["checks"]}
    assert checks["resumption"]["client"] > 0 and checks["resumption"]["haproxy"] > 0
    tickets_off = "no-tls-tickets" in (run_dir / "configs" / "lb-a" / "frontend.cfg").read_text()
    assert tickets_off == (scenario == "handshake-rate-session-ids")


def test_held_connections_beside_an_open_model(node_image: str, tmp_path: Path) -> None:
    summary, run_dir = run("held", tmp_path, duration="10s")  # the scenario opens them over a 6 s ramp
    load = assert_load(summary, "requests_per_s", "held_connections")
    target = load["target"]["held_connections"]
    assert load["held"]["opened"] >= target and load["held"]["failed"] == 0
    # HAProxy holds them: its client connections include every held one
    assert summary["connections"]["client_max"] >= 0.9 * target
    assert load["achieved_haproxy"]["client_connections_max"] >= 0.9 * target
    held = read_table(run_dir, "held")
    assert held["worker"].nunique() == json.loads((run_dir / "run.json").read_text())["scenario"]["load"]["processes"]


@pytest.fixture(scope="module")
def stages_run(node_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The stages scenario (an open model in steps), read by two tests: one lab for both."""
    return run("stages", tmp_path_factory.mktemp("stages"), duration="10s")  # two 6 s steps: 200, then 400 req/s


def test_open_model_measures_from_the_intended_send_time(stages_run: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = stages_run
    load = assert_load(summary, "requests_per_s")
    assert load["model"] == "open"
    assert load["pacing"]["due"] > 0 and load["pacing"]["sent"] > 0
    lat = summary["latency_ms"]["corrected"]
    assert lat is not None and lat["n"] > 0
    # latency from the intended time can only add to the latency from the actual send
    for key in ("p50", "p99", "max"):
        assert lat[key] >= lat[f"{key}_uncorrected"]
    df = read_table(run_dir, "requests")
    scheduled = df[df["intended_t"].notna()]
    assert len(scheduled) == len(df)
    assert (scheduled["t"] >= scheduled["intended_t"] - 1e-6).all()
    assert (scheduled["latency_corrected_ms"] >= scheduled["latency_ms"] - 1e-6).all()


def test_stages(stages_run: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = stages_run
    assert summary["errors"]["total"] == 0
    phases = summary["load"]["phases"]
    assert len(phases) >= 2 and phases[0]["target"] == 200 and phases[1]["target"] == 400
    assert all(p["achieved"] is not None and p["achieved"] > 0 for p in phases[:2])
    # the second step sends more than the first
    assert phases[1]["achieved"] > phases[0]["achieved"]
    events = read_events(run_dir)
    assert sum(1 for e in events if e.get("schedule")) >= 2


def test_find_max_in_one_run(node_image: str, tmp_path: Path) -> None:
    scenario = tmp_path / "find-max-short.yaml"
    scenario.write_text(
        "extends: find-max\nname: find-max-short\nduration: 12s\nramp_up: 1s\n"
        "load: {find_max: {start: 200, growth: 2, step: 2s, settle: 0.5s, plateau: 3s, p99_ms: 150}}\n"
    )
    summary, run_dir = run(str(scenario), tmp_path, duration="12s")
    fm = summary["load"]["find_max"]
    assert fm is not None and len(fm["steps"]) >= 1
    assert all(s["verdict"] in ("pass", "fail", "loadgen") for s in fm["steps"])
    assert fm["plateau_target"] is not None and fm["plateau_target"] > 0
    if fm["max_ok"] is not None:
        assert fm["plateau_target"] == pytest.approx(0.7 * fm["max_ok"])
    events = read_events(run_dir)
    plateau = [e for e in events if e.get("name") == "plateau"]
    assert len(plateau) == 1
    # the steady window is the plateau
    assert summary["window"]["start"] >= plateau[0]["t"]


def test_seed_peak_at_the_default_scale(node_image: str, tmp_path: Path) -> None:
    # 15 s: the scenario's 10 s ramp, then 5 s of steady window (the held connections, 2400 at the default
    # scale opened at 480/s, are all open ~5 s in)
    summary, run_dir = run("seed-peak", tmp_path, duration="15s")
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["scale"] is not None and 0 < run_json["scale"] <= run_json["load_fit"]["max_scale"]
    load = assert_load(summary, "connections_per_s", "handshakes_per_s", "requests_per_s", "held_connections")
    assert load["scale"] == run_json["scale"]
    assert summary["connections"]["client_max"] >= 0.9 * load["target"]["held_connections"]


def test_seed_peak_refuses_a_scale_that_does_not_fit(node_image: str, tmp_path: Path) -> None:
    out = tmp_path / "too-big"
    with pytest.raises(UserError, match=r"does not fit this machine.*largest scale that fits is"):
        run_scenario("seed-peak", duration="20s", out=out, scale=5.0, log=lambda _m: None)
    assert not out.exists()


def test_workers_in_containers(node_image: str, tmp_path: Path) -> None:
    summary, run_dir = run("open", tmp_path, workers=2)
    assert_load(summary, "requests_per_s")
    df = read_table(run_dir, "requests")
    workers = {w.split(":")[0] for w in df["worker"].unique()}
    # every request came from a worker container (Locust's master may drop a worker that misses its
    # heartbeats on a busy machine; the controller then gives the others its share)
    assert workers and workers <= {"loadgen-worker1", "loadgen-worker2"}, workers
    cpu = summary["cpu"]["by_container"]
    assert {"loadgen-worker1", "loadgen-worker2"} <= set(cpu) and cpu["loadgen-worker1"]["role"] == "loadgen"
    assert (run_dir / "locust" / "loadgen-worker1.log").exists()
