"""Short-lived check containers never outlive their call, and only lbbench's labs count as labs.

Seen on the shared engine: a `haproxy -vv` probe of a user's HAProxy build stayed
behind in state "Created" after its process was killed, and `bench status` /
`bench doctor` then listed it as a lab ("? VIP ? on ? 0/1 running", "fix: bench
down ?"). The engine is replaced by a recording one that answers like docker-py
(its label filter, its errors); the cleanup code, the signals and the processes
whose liveness decides a sweep are real.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from bench import doctor, engine, paths, proc
from bench.cli import main
from bench.topology import lab as labmod
from bench.topology import render

RUN = render.LABEL_RUN
OURS = {render.LABEL_PROJECT: render.PROJECT_VALUE}


class _Response:
    status_code = 500
    reason = "Internal Server Error"
    url = "http+docker://localhost/v1.43/containers/x/start"


def _api_error(text: str) -> docker.errors.APIError:
    return docker.errors.APIError("500 Server Error", response=_Response(), explanation=text)  # type: ignore[arg-type]


class FakeContainer:
    def __init__(self, engine_: FakeEngine, labels: dict[str, str], name: str = "c", **behaviour: Any) -> None:
        self.engine, self.labels, self.name, self.behaviour = engine_, labels, name, behaviour
        self.status = "created"
        self.id = f"id-{name}"

    def start(self) -> None:
        if "start" in self.behaviour:
            self.behaviour["start"]()
        self.status = "running"

    def wait(self) -> dict[str, int]:
        if "wait" in self.behaviour:
            self.behaviour["wait"]()
        self.status = "exited"
        return {"StatusCode": self.behaviour.get("exit", 0)}

    def logs(self, stdout: bool = True, stderr: bool = False) -> bytes:
        return (b"out\n" if stdout else b"") + (b"err\n" if stderr else b"")

    def remove(self, force: bool = False) -> None:
        if "remove" in self.behaviour:
            self.behaviour["remove"]()
        assert force, "a probe is removed whatever its state"
        self.engine.containers_.remove(self)
        self.engine.removed.append(self.name)


class FakeEngine:
    """The part of docker-py's client lbbench uses here: create, and list with label filters."""

    def __init__(self, **behaviour: Any) -> None:
        self.containers_: list[FakeContainer] = []
        self.removed: list[str] = []
        self.behaviour = behaviour

    @property
    def containers(self) -> FakeEngine:
        return self

    def create(self, image: str, command: list[str], labels: dict[str, str], **_kw: Any) -> FakeContainer:
        c = FakeContainer(self, labels, name=f"probe{len(self.containers_)}", **self.behaviour)
        self.containers_.append(c)
        return c

    def add(self, labels: dict[str, str], name: str, status: str = "running") -> FakeContainer:
        c = FakeContainer(self, labels, name=name)
        c.status = status
        self.containers_.append(c)
        return c

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:  # noqa: A002 - docker-py's name
        key, _, value = (filters or {}).get("label", "").partition("=")
        return [c for c in self.containers_ if not key or (key in c.labels and (not value or c.labels[key] == value))]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    f = FakeEngine()
    monkeypatch.setattr(engine, "client", lambda: f)
    return f


def _use(monkeypatch: pytest.MonkeyPatch, f: FakeEngine) -> FakeEngine:
    monkeypatch.setattr(engine, "client", lambda: f)
    return f


def test_a_probe_returns_its_output_and_is_gone_labelled_with_its_creator(fake: FakeEngine) -> None:
    assert engine.run_once("img", ["-vv"], labels=OURS, stderr=True) == b"out\nerr\n"
    assert fake.removed == ["probe0"] and fake.containers_ == []
    # the creator is named by pid, start time and boot: this very process
    pid, ticks, boot = engine.probe_tag().split(":")
    assert int(pid) == os.getpid() and int(ticks) == proc.start_ticks(os.getpid()) and boot == proc.boot_id()


def test_a_refused_start_or_a_failed_exit_removes_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # a distroless image has no /bin/sh: docker-py's containers.run left such a container "Created"
    def refuse() -> None:
        raise _api_error('exec: "/bin/sh": stat /bin/sh: no such file or directory')

    f = _use(monkeypatch, FakeEngine(start=refuse))
    with pytest.raises(docker.errors.APIError, match="no such file"):
        engine.run_once("img", ["sh"], labels=OURS)
    assert f.removed == ["probe0"] and f.containers_ == []

    f = _use(monkeypatch, FakeEngine(exit=1))
    with pytest.raises(docker.errors.ContainerError) as info:
        engine.run_once("img", ["-c"], labels=OURS)
    assert info.value.exit_status == 1 and info.value.stderr == b"err\n"
    assert f.removed == ["probe0"] and f.containers_ == []


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_while_the_probe_runs_removes_it_and_a_second_ctrl_c_waits_for_the_removal(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the real signal: Python raises KeyboardInterrupt in the main thread

    def second_ctrl_c_during_removal() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        order.append("removal went on after the second Ctrl-C")

    f = _use(monkeypatch, FakeEngine(wait=ctrl_c, remove=second_ctrl_c_during_removal))
    with pytest.raises(KeyboardInterrupt):
        engine.run_once("img", ["-vv"], labels=OURS)
    assert order == ["removal went on after the second Ctrl-C"]
    assert f.removed == ["probe0"] and f.containers_ == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sweep_removes_only_probes_whose_creator_is_gone(fake: FakeEngine) -> None:
    live = subprocess.Popen(["sleep", "30"])
    try:
        boot = proc.boot_id()
        ticks = proc.start_ticks(live.pid)
        fake.add({**OURS, engine.PROBE_LABEL: f"{live.pid}:{ticks}:{boot}"}, "live-creator", "created")
        fake.add({**OURS, engine.PROBE_LABEL: f"{live.pid}:{ticks}:another-boot"}, "other-machine", "created")
        fake.add({**OURS, engine.PROBE_LABEL: "garbage"}, "unreadable", "created")
        fake.add({**OURS, engine.PROBE_LABEL: f"{live.pid}:{(ticks or 0) + 1}:{boot}"}, "reused-pid", "created")
        assert engine.sweep_probes() == 1 and fake.removed == ["reused-pid"]
    finally:
        live.kill()
        live.wait()
    # the creator was killed (as SIGKILL ends a session): its probe goes, the others stay
    assert engine.sweep_probes() == 1 and fake.removed == ["reused-pid", "live-creator"]
    assert {c.name for c in fake.containers_} == {"other-machine", "unreadable"}


def _engine_with_a_lab_and_strangers(fake: FakeEngine) -> None:
    lab = "lbbench-1a2b3c4d"
    compose = {**OURS, RUN: lab, labmod.COMPOSE_PROJECT: lab}
    fake.add({**compose, "com.docker.compose.service": "lb-a", render.LABEL_ROLE: "lb"}, "lab-lb-a")
    fake.add({**OURS, RUN: lab, render.LABEL_ROLE: "loadgen", "org.lbbench.service": "w0"}, "lab-worker")
    # ours but of no lab: a probe as the killed session left it (no run label), a config check, calibrate
    fake.add({**OURS}, "old-probe", "created")
    fake.add({**OURS, RUN: "lbbench-99999999"}, "config-check", "exited")
    fake.add({**OURS, RUN: "lbbench-calibrate-1", render.LABEL_ROLE: "calibrate"}, "calibrate")
    # strangers: someone's compose project, and a container that copies our label but no lab name
    fake.add({labmod.COMPOSE_PROJECT: "lbbench-1a2b3c4d", "com.docker.compose.service": "web"}, "stranger-compose")
    fake.add({**OURS, labmod.COMPOSE_PROJECT: "shop", RUN: "?"}, "odd")


def test_only_lbbench_labs_are_listed(fake: FakeEngine) -> None:
    _engine_with_a_lab_and_strangers(fake)
    labs = labmod.list_labs()
    assert list(labs) == ["lbbench-1a2b3c4d"]
    assert sorted(c["service"] for c in labs["lbbench-1a2b3c4d"]) == ["lab-worker", "lb-a"]


def test_status_and_doctor_never_name_a_container_that_is_no_lab(
    fake: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "STATE", tmp_path)
    _engine_with_a_lab_and_strangers(fake)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    labs = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert labs == ["lbbench-1a2b3c4d"]  # a lab without lab.json says "VIP ? on ?": the lab is named, never "?"
    assert "calibrate" not in out and "99999999" not in out and "old-probe" not in out
    checks = {c.name: c for c in doctor._leftovers(True)}
    assert checks["labs without an owner"].fix.startswith("bench down lbbench-1a2b3c4d ")
    assert "1 lab(s)" in checks["labs without an owner"].detail
    for c in checks.values():
        assert "?" not in c.fix and "99999999" not in c.fix


def test_the_first_probe_of_a_process_sweeps_and_later_ones_do_not(fake: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine._sweep_once.cache_clear()
    monkeypatch.setattr(engine, "_creator_gone", lambda tag: tag == "killed")
    fake.add({**OURS, engine.PROBE_LABEL: "killed"}, "left-by-a-kill", "created")
    engine.run_once("img", ["-vv"], labels=OURS)
    assert fake.removed[0] == "left-by-a-kill"
    fake.add({**OURS, engine.PROBE_LABEL: "killed"}, "left-later", "created")
    engine.run_once("img", ["-vv"], labels=OURS)
    assert "left-later" not in fake.removed, "one engine list per process, not one per probe"
    assert engine.sweep_probes() == 1 and fake.removed[-1] == "left-later"  # bench doctor's sweep still finds it
    engine._sweep_once.cache_clear()
