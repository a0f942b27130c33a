"""LocustProcess.stop() with real processes: nothing of a Locust's process group outlives it."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


#: A locustfile with bench's end of a --processes master (bench.load.quitting, as bench/load/locustfile.py
#: installs it): each worker process counts what it sent and, after it told the master it quit, takes
#: FLUSH_S to "flush" it (as the request capture does), longer than Locust's own waits at the end (1.5 s).
FORKED = """
import json, os, time
from locust import User, constant, events, task
from bench.load import quitting

FLUSH_S = 2.0
sent = 0

class Counting(User):
    wait_time = constant(0.02)

    @task
    def one(self):
        global sent
        sent += 1
        self.environment.events.request.fire(request_type="GET", name="/", response_time=1, response_length=0, exception=None, context={})

@events.init.add_listener
def _init(environment, **_kw):
    if quitting.install(environment):
        open(os.path.join(os.environ["OUT"], "installed"), "w").close()
    quitting.complete_csv_at_exit()

@events.quitting.add_listener
def _quitting(environment, **_kw):
    if os.environ.get("LOCUST_FORKED_WORKER_INDEX") is not None or getattr(environment.parsed_options, "worker", False):
        time.sleep(FLUSH_S)
        with open(os.path.join(os.environ["OUT"], f"flushed-{os.getpid()}"), "w") as f:
            f.write(str(sent))
    quitting.wait_for_forked(environment)
"""


def _json_values(text: str) -> list[Any]:
    """The JSON values written one after another in ``text`` (whitespace between them or not)."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return values
        value, i = decoder.raw_decode(text, i)
        values.append(value)


def test_a_forked_master_ends_after_its_workers_flushed_and_with_their_final_statistics(tmp_path: Path) -> None:
    """The master's exit is the load's end for `bench run`: every forked worker has flushed (its capture) and
    sent its last figures by then, without Locust's fixed sleeps, and Locust's CSV holds them (bench.load.quitting)."""
    locustfile = tmp_path / "forked_locustfile.py"
    locustfile.write_text(FORKED)
    # a master port of its own, as `bench run` takes (bench.load.runner.start_locust): Locust's default 5557 was
    # taken once by another Locust on the machine (a unit suite beside this one), and this master could not bind it
    port = runner.free_port(runner.LOOPBACK)
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--processes", "2", "--users", "4", "--spawn-rate", "100",
           "--master-bind-host", runner.LOOPBACK, "--master-bind-port", str(port), "--master-host", runner.LOOPBACK, "--master-port", str(port),
           "--run-time", "1s", "--only-summary", "--json", "--csv", str(tmp_path / "locust"), "--loglevel", "WARNING"]  # fmt: skip
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout_file, err.open("w") as stderr_file:  # not pipes: the workers would hold them open
        proc = subprocess.Popen(cmd, stdout=stdout_file, stderr=stderr_file, env=env, start_new_session=True)
    try:
        assert proc.wait(timeout=120) == 0, err.read_text()
        stdout, stderr = out.read_text(), err.read_text()
        # when the master is gone, so is every worker, each having flushed
        assert not group_alive(proc.pid)
        assert (tmp_path / "installed").exists(), "this Locust's master quits through bench.load.quitting"
        flushed = sorted(tmp_path.glob("flushed-*"))
        assert len(flushed) == 2, stderr
        # and the master's statistics hold every request the workers sent (their final reports came in)
        # --json: each process prints its statistics (a worker's are empty), each a JSON list; two workers'
        # prints can share a line ("[][]" once, on a loaded machine), so the lists are read one after another
        stats = [s for chunk in _json_values(stdout) for s in chunk]
        sent = sum(int(f.read_text()) for f in flushed)
        assert sum(s["num_requests"] for s in stats) == sent > 0
        # Locust's CSV too (it rewrites it once a second, and once more at its end)
        with (tmp_path / "locust_stats.csv").open() as f:
            assert [int(row["Request Count"]) for row in csv.DictReader(f) if row["Name"] == "Aggregated"] == [sent]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


#: Locust's CSV writer at the end of a run whose last figures came after its last once-a-second write.
CSV_AT_EXIT = """
import csv, sys
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter
from bench.load import quitting

quitting.complete_csv_at_exit()
env = Environment()
writer = StatsCSVFileWriter(env, PERCENTILES_TO_REPORT, sys.argv[1], full_history=True)
for _ in range(7):
    env.stats.log_request("GET", "/", 12, 100)
env.stats.log_error("GET", "/", "refused")
writer.close_files()  # as Locust's shutdown does, never having written since these came in
with open(sys.argv[1] + "_stats.csv") as f:
    print([row["Request Count"] for row in csv.DictReader(f) if row["Name"] == "Aggregated"])
with open(sys.argv[1] + "_failures.csv") as f:
    print([row["Occurrences"] for row in csv.DictReader(f)])
"""


def test_locusts_csv_files_hold_the_final_figures(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", CSV_AT_EXIT, str(tmp_path / "locust")], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["['7']", "['1']"]
