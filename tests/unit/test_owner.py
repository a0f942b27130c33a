"""Lab ownership: a lab of a live run is recognised (pid + start time + boot), a dead or reused pid is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import doctor, engine, labctl
from bench.results.layout import LabDir
from bench.topology import owner


def test_this_process_is_alive_and_a_finished_one_is_not(tmp_path: Path) -> None:
    mine = owner.write_owner(tmp_path / "lbbench-aaaa", "run")
    assert owner.alive(mine) and owner.live_run_owner(tmp_path / "lbbench-aaaa") == mine
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {**mine, "pid": child.pid, "start_ticks": None}
    assert not owner.alive(gone)


def test_a_reused_pid_or_another_boot_is_not_the_owner() -> None:
    mine = owner.this_process("run")
    assert not owner.alive({**mine, "start_ticks": (mine["start_ticks"] or 0) + 1})
    assert not owner.alive({**mine, "boot_id": "another-boot"})
    assert not owner.alive(None) and not owner.alive({"pid": "x"})


def test_by_hand_labs_are_never_live_runs(tmp_path: Path) -> None:
    owner.write_owner(tmp_path, "up")
    assert owner.live_run_owner(tmp_path) is None
    assert labctl.owner_state(owner.read_owner(tmp_path)) == "by-hand"
    assert labctl.owner_state(None) == "unknown"
    assert labctl.owner_state({**owner.this_process("run"), "pid": 2**22 + 7}) == "leftover"


def test_a_torn_owner_file_reads_as_none(tmp_path: Path) -> None:
    LabDir(tmp_path).owner_json.write_text("{not json")
    assert owner.read_owner(tmp_path) is None


def test_doctor_never_advises_removing_a_live_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import paths
    from bench.topology import lab as labmod

    monkeypatch.setattr(paths, "STATE", tmp_path)
    owner.write_owner(tmp_path / "lbbench-live0001", "run")
    dead = {**owner.this_process("run"), "start_ticks": -1}
    (tmp_path / "lbbench-dead0002").mkdir()
    LabDir(tmp_path / "lbbench-dead0002").owner_json.write_text(json.dumps(dead))
    owner.write_owner(tmp_path / "lbbench-hand0003", "up")
    monkeypatch.setattr(labmod, "list_labs", lambda: {"lbbench-live0001": [], "lbbench-dead0002": [], "lbbench-hand0003": []})
    monkeypatch.setattr(engine, "sweep_probes", lambda: 0)  # no engine in unit tests
    checks = {c.name: c for c in doctor._leftovers(True)}
    assert checks["labs of live runs"].level == "ok" and "lbbench-live0001" in checks["labs of live runs"].detail
    assert checks["leftover labs"].fix == "bench down lbbench-dead0002"
    assert "lbbench-hand0003" in checks["labs up by hand"].fix
    for c in checks.values():
        assert "--all" not in c.fix and "lbbench-live0001" not in c.fix
    assert set(labmod.live_projects()) == {"lbbench-live0001"}
    assert os.getpid() == json.loads(LabDir(tmp_path / "lbbench-live0001").owner_json.read_text())["pid"]
