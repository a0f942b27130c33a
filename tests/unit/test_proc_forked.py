"""bench.proc.Forked: a step run in a forked copy of the process, its value or its failure brought back."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench import proc
from bench.proc import Forked, ForkStalled, children_alive


def test_the_copy_reads_the_parents_data_and_returns_its_value() -> None:
    data = np.arange(1_000_000)  # shared with the copy, not sent to it
    job = Forked(lambda: (os.getpid(), int(data.sum())))
    pid, total = job.result()
    assert pid != os.getpid() and total == int(data.sum())
    job.close()  # once ended, closing again is a no-op


def test_the_copys_exception_is_raised_here_with_its_traceback() -> None:
    def fail() -> None:
        raise ValueError("bad table")

    job = Forked(fail)
    with pytest.raises(ValueError, match="bad table") as info:
        job.result()
    assert any("in a forked step" in note and "fail" in note for note in info.value.__notes__)


def test_a_copy_that_dies_without_answering_is_an_error() -> None:
    job = Forked(lambda: os._exit(3))
    with pytest.raises(RuntimeError, match="exit code 3"):
        job.result()


def test_an_unpicklable_value_is_an_error_that_says_so() -> None:
    job = Forked(lambda: (lambda: None))
    with pytest.raises(RuntimeError, match="could not be sent back"):
        job.result()


@pytest.mark.usefixtures("ctrl_c_raises")
def test_the_copy_finishes_its_step_through_ctrl_c_and_leaves_the_parents_handlers() -> None:
    def step() -> str:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches the whole process group: the copy ignores it
        return "written"

    job = Forked(step)
    assert job.result() == "written"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_waits_until_the_copy_has_finished_its_step(tmp_path: Path) -> None:
    def write() -> None:
        time.sleep(0.3)
        (tmp_path / "done").write_text("yes")

    job = Forked(write)  # nobody asks for its result (the report failed meanwhile): close still waits for it
    job.close()
    assert (tmp_path / "done").read_text() == "yes"


def test_a_copy_stuck_on_a_lock_is_stopped_and_said_so() -> None:
    stuck = threading.Lock()
    stuck.acquire()  # held as by a thread the fork did not copy: the copy waits for it forever, using no CPU
    job = Forked(stuck.acquire)
    started = time.monotonic()
    with pytest.raises(ForkStalled, match="no CPU"):
        job.result(stall_s=1.0)
    assert time.monotonic() - started < 10
    assert not job._proc.is_alive()


def test_a_copy_that_outlives_a_failed_report_is_killed_after_the_wait() -> None:
    job = Forked(lambda: time.sleep(60))
    started = time.monotonic()
    job.close(wait_s=0.2)
    assert time.monotonic() - started < 10 and not job._proc.is_alive()


def test_children_alive_sees_a_running_child_and_not_a_zombie() -> None:
    # a parent that never reaps: the shell starts a child, then becomes `sleep 60` (exec)
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & exec sleep 60"])
    try:
        kids: list[str] = []
        for _ in range(250):  # bounded: until the shell has started its child and exec'd
            kids = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
            if kids and Path(f"/proc/{parent.pid}/cmdline").read_bytes().startswith(b"sleep"):
                break
            time.sleep(0.02)
        assert len(kids) == 1 and children_alive(parent.pid) is True
        os.kill(int(kids[0]), signal.SIGKILL)
        for _ in range(250):  # bounded: until the killed child is a zombie
            if Path(f"/proc/{kids[0]}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.02)
        assert children_alive(parent.pid) is False  # a zombie child writes nothing
        assert children_alive(parent.pid) is proc._any_live(1, parent.pid)  # the same answer as the whole scan
    finally:
        parent.kill()
        parent.wait()
