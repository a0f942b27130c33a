"""LocustProcess.stop() with real processes: nothing of a Locust's process group outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.load import runner
from bench.load.runner import LocustProcess
from bench.proc import group_alive

#: A "master" that forks two "workers" into its group and exits on its own, as Locust's
#: --processes master can: one worker stops on SIGTERM (and says so), one ignores it.
MASTER = """
import os, signal, sys, time
folder = sys.argv[1]
for name in ("polite", "stubborn"):
    if os.fork() == 0:
        if name == "polite":
            def on_term(*_):
                open(os.path.join(folder, "polite.term"), "w").close()
                os._exit(0)
            signal.signal(signal.SIGTERM, on_term)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(os.path.join(folder, name + ".tmp"), "w").write(str(os.getpid()))
        os.rename(os.path.join(folder, name + ".tmp"), os.path.join(folder, name))
        time.sleep(120)
        os._exit(0)
"""


def _state(pid: int) -> str | None:
    """A process's state letter (Z: a zombie), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2]


def test_stop_ends_the_workers_a_master_that_exited_on_its_own_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "STRAY_GRACE", 0.5)
    proc = subprocess.Popen([sys.executable, "-c", MASTER, str(tmp_path)], start_new_session=True)
    try:
        assert proc.wait(timeout=30) == 0  # the master exited on its own
        deadline = time.monotonic() + 30
        while not all((tmp_path / n).exists() for n in ("polite", "stubborn")) and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = [int((tmp_path / n).read_text()) for n in ("polite", "stubborn")]
        assert group_alive(proc.pid) and all(_state(pid) not in (None, "Z") for pid in workers)

        assert LocustProcess(proc, tmp_path / "locust.log", time.time()).stop() == 0

        assert not group_alive(proc.pid)
        assert all(_state(pid) in (None, "Z") for pid in workers)  # gone, or dead and waiting for its new parent
        assert (tmp_path / "polite.term").exists()  # asked first (SIGTERM: a Locust worker seals its samples)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_stop_of_a_master_alone_returns_its_status(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    proc.wait(timeout=30)
    assert LocustProcess(proc, tmp_path / "locust.log", time.time()).stop() == 3
    assert not runner.end_group(proc.pid)
