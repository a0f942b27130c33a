"""`bench run` around the load: the teardown runs in the background of the analysis (always joined, failures in one line); a Locust started ahead waits for the go."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.errors import UserError
from bench.results.layout import RunDir
from bench.run import Teardown


class FakeLab:
    def __init__(self, fail: bool = False):
        self.project = "lbbench-unit"
        self.started = True
        self.fail = fail
        self.calls: list[str] = []
        self.release = threading.Event()
        self.logged = threading.Event()

    def save_logs(self, dest: Path) -> None:
        self.calls.append(f"logs {dest.name}")
        self.logged.set()

    def down(self) -> None:
        self.release.wait(5)
        self.calls.append("down")
        if self.fail:
            raise RuntimeError("compose is gone")


def test_teardown_runs_beside_the_caller_and_join_waits_for_it(tmp_path: Path) -> None:
    lab = FakeLab()
    lab.release.set()
    teardown = Teardown(lab, None, RunDir(tmp_path))  # type: ignore[arg-type]
    assert lab.logged.wait(5)
    time.sleep(0.2)
    assert lab.calls == ["logs logs"]  # the logs at once; compose down only after go() (the summary is out)
    teardown.go()
    teardown.join()
    assert lab.calls == ["logs logs", "down"]
    lab = FakeLab()
    lab.release.set()
    Teardown(lab, None, RunDir(tmp_path)).join()  # join() says go itself: a failed run never waits
    assert lab.calls == ["logs logs", "down"]


def test_a_failed_teardown_names_bench_down(tmp_path: Path) -> None:
    lab = FakeLab(fail=True)
    lab.release.set()
    teardown = Teardown(lab, None, RunDir(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"tearing down lbbench-unit failed: RuntimeError: compose is gone") as info:
        teardown.join()
    assert "bench down lbbench-unit" in str(info.value.fix)
    teardown.join(raise_error=False)  # the failed run's path: the original error is what matters


def test_start_gate_holds_locust_until_bench_says_go(tmp_path: Path) -> None:
    from bench.load.runner import open_start_gate, start_gate, wait_for_start_gate

    gate = start_gate(tmp_path)
    Path(gate["file"]).parent.mkdir(parents=True)
    wait_for_start_gate(None)  # no gate: at once
    with pytest.raises(SystemExit):
        wait_for_start_gate(gate, timeout=0.05)  # no go within the time: no load at all
    opener = threading.Timer(0.1, open_start_gate, args=(gate,))
    opener.start()
    wait_for_start_gate(gate, timeout=5)  # returns once the file is there
    opener.join()
    with pytest.raises(SystemExit):  # the owner is gone: give up at once
        wait_for_start_gate({"file": str(tmp_path / "never"), "owner": 2**22 + 12345}, timeout=60)


def test_a_master_says_it_is_up_only_with_every_worker_and_a_worker_never(tmp_path: Path) -> None:
    # bench capacity and the duet give their go (and start their schedules' clock) once the whole load
    # generator waits at its gate: a master tells it only when the workers it expects are connected
    from bench.load.runner import gate_waiting, open_start_gate, start_gate, wait_for_start_gate

    gate = start_gate(tmp_path)
    Path(gate["file"]).parent.mkdir(parents=True)
    connected: list[str] = []
    seen: list[bool] = []

    def go() -> None:
        time.sleep(0.15)
        seen.append(gate_waiting(gate))  # no worker yet: not up
        connected.append("worker-1")
        time.sleep(0.15)
        seen.append(gate_waiting(gate))  # every worker: up
        open_start_gate(gate)

    opener = threading.Thread(target=go)
    opener.start()
    wait_for_start_gate(gate, timeout=5, up=lambda: len(connected) >= 1)
    opener.join()
    assert seen == [False, True]
    # a worker (its master speaks for it) never says so, whether the gate is open or not
    Path(gate["file"] + ".waiting").unlink()
    wait_for_start_gate(gate, timeout=5, up=False)
    other = start_gate(tmp_path / "other")
    Path(other["file"]).parent.mkdir(parents=True)
    with pytest.raises(SystemExit):
        wait_for_start_gate(other, timeout=0.1, up=False)
    assert not gate_waiting(gate) and not gate_waiting(other)


def test_waiting_at_a_gate_ends_with_the_generator_up_or_says_why_not(tmp_path: Path) -> None:
    import subprocess
    import sys

    from bench.load.runner import LocustProcess, start_gate, wait_at_gate

    def stand_in(code: str, where: Path) -> tuple[LocustProcess, dict]:
        gate = start_gate(where)
        Path(gate["file"]).parent.mkdir(parents=True)
        proc = subprocess.Popen([sys.executable, "-c", code.replace("GATE", gate["file"])], start_new_session=True)
        return LocustProcess(proc, where / "locust.log", time.time()), gate

    up, gate = stand_in("import pathlib, time; time.sleep(0.2); pathlib.Path('GATE.waiting').touch(); time.sleep(30)", tmp_path / "up")
    try:
        assert wait_at_gate(up, gate, timeout=20) is None
    finally:
        up.stop()
    gone, gate = stand_in("raise SystemExit(4)", tmp_path / "gone")
    assert "exited with status 4" in (wait_at_gate(gone, gate, timeout=20) or "")
    slow, gate = stand_in("import time; time.sleep(30)", tmp_path / "slow")
    try:
        assert "not up within 0.3 s" in (wait_at_gate(slow, gate, timeout=0.3) or "")
        started = time.monotonic()
        assert wait_at_gate(slow, gate, timeout=20, check=lambda: "worker 2 exited: boom") == "worker 2 exited: boom"
        assert time.monotonic() - started < 5
    finally:
        slow.stop()
    assert slow.proc.returncode is not None


#: A Locust process's start, twice (Locust imported once, in a subprocess: importing it monkey-patches the process):
#: first the gevent loop's clock after imports that outlast the lab's start, then what _on_init does first.
_LOCUST_INIT = """
import json, time
from types import SimpleNamespace

import locust  # noqa: F401 - monkey-patches first, as in a Locust process
import gevent

from bench.load import locustfile, models

loop = gevent.get_hub().loop
busy_until = time.time() + 1.0
while time.time() < busy_until:  # imports that outlast the lab's start: CPU, the loop never runs
    pass
before = loop.now() - time.time()
locustfile._on_init(SimpleNamespace(runner=None))  # no gate (already open): returns at once
print(json.dumps({"before": before, "after": loop.now() - time.time()}))

calls = []
models.on_init = lambda _env: calls.append("listen")
locustfile.wait_for_start_gate = lambda _gate, **_kw: calls.append("gate")
locustfile._on_init(SimpleNamespace(runner=None))
print(json.dumps(calls))
"""


@pytest.fixture(scope="module")
def locust_init(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """_LOCUST_INIT's two answers: the loop's clock before and after _on_init, then the order of its calls."""
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "LBBENCH_LOAD"}
    cwd = tmp_path_factory.mktemp("locust-init")
    done = subprocess.run([sys.executable, "-c", _LOCUST_INIT], capture_output=True, text=True, timeout=120, check=False, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    clock, calls = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    return clock, calls


def test_locust_counts_its_run_time_from_the_go_not_from_its_imports(locust_init: tuple[Any, Any]) -> None:
    # Locust's --run-time timer starts from the gevent loop's cached "now": stale by the imports'
    # time when the gate is already open, and the load then ended that much early (8 s runs of 1.6 s).
    got = locust_init[0]
    assert got["before"] < -0.9  # the situation: the loop's clock is behind
    assert got["after"] > -0.5, got  # brought up to date before any timer starts


def test_a_worker_listens_for_the_controller_before_it_waits_for_the_go(locust_init: tuple[Any, Any]) -> None:
    # A worker's runner handles the owning process's messages as soon as it exists, and the gate
    # wait yields to it: listening after the wait lost the setup and schedule whenever the owner
    # passed the gate first, and that worker sent nothing all run (a capacity sweep's keep-alive
    # group: 0 requests from 2 processes, 1 sweep in 3 here).
    assert locust_init[1] == ["listen", "gate"]


#: A "bench run" after its load: the teardown in its thread, the report in the main thread when SIGTERM comes.
AFTER_THE_LOAD = """
import sys, time
from pathlib import Path
from bench.results.layout import RunDir
from bench.proc import sigterm_as_interrupt
from bench.run import Teardown
out = Path(sys.argv[1])

class Lab:
    project = "lbbench-unit"
    started = True
    def save_logs(self, dest):
        pass
    def down(self):
        time.sleep(0.5)  # compose down takes a while
        (out / "down").write_text("done")

teardown = Teardown(Lab(), None, RunDir(out))
teardown.go()
guard = sigterm_as_interrupt()  # held: entered for the rest of this process when "guarded"
if sys.argv[2] == "guarded":
    guard.__enter__()
try:
    print("report", flush=True)
    time.sleep(30)  # the report being built
except BaseException:
    teardown.join(raise_error=False)
    raise
"""


@pytest.mark.parametrize("mode", ["guarded", "bare"])
def test_sigterm_while_the_report_is_built_still_tears_the_lab_down(tmp_path: Path, mode: str) -> None:
    """bench run after its load: SIGTERM abandons the report as Ctrl-C does, and the lab still goes
    (bare: SIGTERM's default, what happened before, ends the process with the lab left running)."""
    proc = subprocess.Popen([sys.executable, "-c", AFTER_THE_LOAD, str(tmp_path), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "report"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if mode == "guarded":
        assert proc.returncode not in (0, -signal.SIGTERM) and "KeyboardInterrupt" in stderr, stderr
        assert (tmp_path / "down").read_text() == "done"
    else:
        assert proc.returncode == -signal.SIGTERM
        assert not (tmp_path / "down").exists()
