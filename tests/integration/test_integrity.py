"""A lab that changes under a run: a container killed by someone else than the fault injector."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from bench import engine
from bench.cli import main

from .conftest import project_leftovers

pytestmark = pytest.mark.integration


def _kill_when_loaded(run_dir: Path, service: str, after_s: float, done: dict) -> None:
    """Once the run's load has started, SIGKILL ``service`` of its lab from outside bench (as a crash or an admin would)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            run = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            run = {}
        start = (run.get("load_window") or {}).get("start")
        if start:
            time.sleep(max(0.0, start + after_s - time.time()))
            label = f"org.lbbench.run={run['lab']['project']}"
            for c in engine.client().containers.list(filters={"label": label}):
                if c.labels.get("com.docker.compose.service") == service:
                    done["t"] = time.time()
                    c.kill()
            return
        time.sleep(0.2)


def test_a_container_killed_outside_a_fault_invalidates_the_run(node_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "changed.yaml"
    scenario.write_text(
        "extends: smoke\nname: test-lab-changed\nduration: 6s\nramp_up: 1s\n"
        "overrides: {lb: {nodes: 1}}\nload: {engine: lean, users: 4, path: '/?size=128&delay_ms=5'}\n"
    )
    out = tmp_path / "run"
    killed: dict = {}
    killer = threading.Thread(target=_kill_when_loaded, args=(out, "srv2", 3.0, killed), daemon=True)
    killer.start()
    code = main(["run", str(scenario), "--out", str(out)])
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert killed, "the container was never killed"
    # bench run says so in one line and exits non-zero
    assert code == 3
    lines = [line for line in err.splitlines() if line.startswith("INVALID: the lab changed during the run")]
    assert len(lines) == 1 and "srv2 exited (code 137)" in lines[0], err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "invalid"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    changes = [e for e in events if e["kind"] == "integrity"]
    assert changes and changes[0]["name"] == "container-exited" and changes[0]["subject"] == "srv2"
    assert abs(changes[0]["t"] - killed["t"]) < 2.0
    s = json.loads((out / "summary.json").read_text())
    assert s["integrity"]["ok"] is False and s["integrity"]["problems"][0]["name"] == "container-exited"
    assert s["bottleneck"]["valid"] is False and all(c["valid"] is False for c in s["checks"])
    # the report opens with it, in red
    html = (out / "report.html").read_text()
    assert html.index("INVALID: the lab changed during the run") < html.index("<b>Bottleneck:</b>")
    # the collectors' failure of the killed server is one summarised line, not one per sampler
    assert sum("collectors:" in line and "srv2" in line and "failed" in line for line in err.splitlines()) <= 1


def test_a_lab_that_changes_mid_duet_stops_the_gate_at_once_as_not_comparable(
    node_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "duet-changed.yaml"
    scenario.write_text(
        "extends: smoke\nname: test-duet-changed\nduration: 60s\nramp_up: 1s\n"
        "overrides: {lb: {nodes: 1}}\nload: {engine: lean, model: open, requests_per_s: 100, users: 10, path: '/?size=128'}\n"
    )
    out = tmp_path / "duet"
    killed: dict = {}
    killer = threading.Thread(target=_kill_when_loaded, args=(out / "candidate", "srv2", 3.0, killed), daemon=True)  # 2 s after the warm-up
    killer.start()
    code = main(["gate", "--run", str(scenario), "--rate", "100", "--slice", "2s", "--warmup", "2s", "--budget", "60s", "--fixed", "--out", str(out)])
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert killed, "the container was never killed: " + err
    # the gate's one line names the lab change, not a side's Locust, and decides nothing
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and "not comparable: the candidate's lab changed during the duet" in errors[0], err
    assert "srv2" in errors[0] and "locust exited" not in err
    # the duet stopped on the change, not at its only look (--fixed: after all 30 planned slices)
    design = json.loads((out / "duet.json").read_text())["design"]
    first_look = design["start_at"] + design["warmup_s"] + design["planned"] * design["slice_s"]
    for side in ("baseline", "candidate"):
        run = json.loads((out / side / "run.json").read_text())
        assert run["load_window"]["end"] < first_look, (side, run["load_window"], first_look)
        assert project_leftovers(run["lab"]["project"]) == ([], [])
    assert json.loads((out / "candidate" / "summary.json").read_text())["integrity"]["ok"] is False
    assert json.loads((out / "baseline" / "summary.json").read_text())["integrity"]["ok"] is True
