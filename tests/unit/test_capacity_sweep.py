"""bench.capacity.sweep around the lab: what sweep.json records, and that the lab always goes (Ctrl-C keeps what was measured).

The lab, its collectors and Locust are stand-ins here (their own tests start real ones;
tests/integration/test_capacity.py runs a real sweep): this checks the runner's order
of things and its record.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from bench.capacity import sweep as sweep_mod
from bench.capacity.analyse import read_sweep, sweep_windows
from bench.capacity.plan import QUICK
from bench.errors import RunInterrupted, UserError
from bench.load.control import gate_start_at
from bench.load.runner import LocustProcess


class FakeLab:
    made: ClassVar[list[FakeLab]] = []

    def __init__(self, topology: Any, image: str, variant: Any, log: Any = print):
        self.topology = topology
        self.project = f"lbbench-fake{len(FakeLab.made)}"
        self.started = False
        self.calls: list[str] = []
        self.plan = SimpleNamespace(vip="198.18.0.100")
        self.tls = SimpleNamespace(ca_pem=Path("/nonexistent/ca.pem"))
        FakeLab.made.append(self)

    def prepare(self) -> SimpleNamespace:
        return self.plan

    def up(self) -> None:
        self.started = True
        self.calls.append("up")
        self.up_at = time.time()

    def copy_public_configs(self, dest: Path) -> None:
        pass

    def save_logs(self, dest: Path) -> None:
        self.calls.append("logs")

    def down(self) -> None:
        self.started = False
        self.calls.append("down")


class FakeCollectors:
    def __init__(self, folder: Path, lab: FakeLab, log: Any = print):
        self.lab = lab
        self.tracked: list[int] = []

    def start(self) -> None:
        self.lab.calls.append("collect")

    def track_loadgen(self, pid: int) -> None:
        self.tracked.append(pid)

    def stop(self) -> None:
        self.lab.calls.append("stop-collect")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import bench.collect.collectors
    import bench.run

    FakeLab.made = []
    started: list[dict[str, Any]] = []
    state: dict[str, Any] = {"interrupt_at": None, "exit": 0, "run_s": 0}

    def start_locust(scenario: Any, host: str, ca: Path, run_dir: Path, duration: float, extra: dict[str, Any]) -> LocustProcess:
        started.append({"scenario": scenario, "host": host, "extra": extra, "dir": run_dir, "at": time.time()})
        if state["interrupt_at"] == len(started):
            raise RunInterrupted(2)
        gate = extra["start_gate"]
        Path(gate["file"]).parent.mkdir(parents=True, exist_ok=True)
        # a stand-in load generator that comes up, waits at its start gate like Locust's init, runs
        # (``run_s``), writes when it ended and exits
        code = (
            "import json, pathlib, sys, time; from bench.load.runner import wait_for_start_gate; wait_for_start_gate(json.loads(sys.argv[1])); "
            f"time.sleep({state['run_s']}); pathlib.Path(sys.argv[2]).write_text(repr(time.time())); raise SystemExit({state['exit']})"
        )
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(gate), str(run_dir / "ended")], start_new_session=True)
        return LocustProcess(proc, run_dir / "locust.log", time.time())

    monkeypatch.setattr(sweep_mod, "Lab", FakeLab)
    monkeypatch.setattr(sweep_mod, "start_locust", start_locust)
    monkeypatch.setattr(sweep_mod, "IDLE_S", 0.01)
    monkeypatch.setattr(sweep_mod.engine, "client", lambda: None)
    monkeypatch.setattr(sweep_mod.engine, "compose_binary", lambda: ["docker", "compose"])
    monkeypatch.setattr(sweep_mod.images, "ensure_images", lambda flavour, log=print: SimpleNamespace(node_tag=f"lbbench/{flavour}:fake"))
    monkeypatch.setattr(bench.collect.collectors, "Collectors", FakeCollectors)
    return {"started": started, "state": state}


def test_a_sweep_records_every_stage_window_and_tears_every_lab_down(tmp_path: Path, fakes: dict[str, Any]) -> None:
    out = sweep_mod.SweepRunner(tmp_path / "cap", plan="quick", stage_s=4.0, log=lambda _m: None).run()
    doc = read_sweep(out)
    assert doc.status == "completed" and doc.plan == "quick"
    assert [lab.calls for lab in FakeLab.made] == [["up", "collect", "stop-collect", "logs", "down"]]
    phase = doc.phases[0]
    assert [g.name for g in phase.groups] == [g.name for g in QUICK[0].groups]
    assert all(g.exit_code == 0 for g in phase.groups)
    for g, run in zip(phase.groups, fakes["started"], strict=True):
        assert gate_start_at(run["extra"]["start_gate"]) == g.start_at  # the schedule starts at the recorded instant, once the generator is up
        first = g.stages[0]
        assert first.start == g.start_at and first.window == [first.start + 2.5, first.end - 0.5]
    held = phase.groups[0]
    assert not held.stages[0].measured and held.stages[1].measured
    assert fakes["started"][0]["extra"]["held_interval"] == 30.0
    windows = sweep_windows(doc)["phases/base"]
    assert windows[0].step == "base:idle" and len(windows) == 1 + 1 + 2 + 2
    assert fakes["started"][1]["host"] == "https://198.18.0.100" and fakes["started"][2]["host"] == "http://198.18.0.100"


def test_each_load_generator_starts_ahead_and_only_one_at_a_time_sends(tmp_path: Path, fakes: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # the first group's Locust starts before the lab comes up, each next one while the group before
    # it still runs (here at once: its stages are not waited out), and no gate opens before the
    # load generator before it ended
    fakes["state"]["run_s"] = 1.0
    monkeypatch.setattr(sweep_mod, "NEXT_GROUP_AFTER_S", -1e6)
    out = sweep_mod.SweepRunner(tmp_path / "cap", plan="quick", stage_s=4.0, log=lambda _m: None).run()
    doc = read_sweep(out)
    assert doc.status == "completed"
    started = fakes["started"]
    assert started[0]["at"] < FakeLab.made[0].up_at
    ended = [float((run["dir"] / "ended").read_text()) for run in started]
    for k, g in enumerate(doc.phases[0].groups[1:], start=1):
        assert started[k]["at"] < ended[k - 1]  # imported while the group before it ran
        assert g.start_at - sweep_mod.GO_LEAD_S >= ended[k - 1]  # its go came after that one ended
        assert gate_start_at(started[k]["extra"]["start_gate"]) == g.start_at


def test_ctrl_c_stops_the_sweep_keeps_the_record_and_takes_the_lab_down(tmp_path: Path, fakes: dict[str, Any]) -> None:
    fakes["state"]["interrupt_at"] = 2
    runner = sweep_mod.SweepRunner(tmp_path / "cap", plan="quick", stage_s=4.0, log=lambda _m: None)
    runner.run()
    doc = read_sweep(tmp_path / "cap")
    assert doc.status == "interrupted" and doc.ended_at is not None
    assert FakeLab.made[0].calls[-1] == "down"
    assert len(doc.phases[0].groups) == 1  # the held group ran; the interrupted one never started


def test_a_load_generator_that_fails_fails_the_sweep_in_one_line(tmp_path: Path, fakes: dict[str, Any]) -> None:
    fakes["state"]["exit"] = 3
    with pytest.raises(UserError, match="exited with status 3"):
        sweep_mod.SweepRunner(tmp_path / "cap", plan="quick", stage_s=4.0, log=lambda _m: None).run()
    assert read_sweep(tmp_path / "cap").status == "failed"
    assert FakeLab.made[0].calls[-1] == "down"


def test_everything_is_checked_before_anything_starts(tmp_path: Path, fakes: dict[str, Any]) -> None:
    with pytest.raises(UserError, match="no such sweep plan"):
        sweep_mod.SweepRunner(tmp_path / "cap", plan="huge")
    with pytest.raises(UserError, match=r"lb\.backend\.processes"):
        sweep_mod.SweepRunner(tmp_path / "cap", sets=["lb.backend.processes=0"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(UserError, match="not empty"):
        sweep_mod.SweepRunner(tmp_path / "full", plan="quick")
    assert FakeLab.made == [] and not (tmp_path / "cap").exists()
