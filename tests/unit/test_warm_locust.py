"""The Locust process `bench run` starts before its settings are known (bench/load/warm.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.load.runner import WarmLocust, start_warm

#: A locustfile that reports what the process looks like when Locust loads it, then ends it.
_PROBE = """
import json, os, sys
print("probe on stdout")
json.dump({
    "cwd": os.getcwd(),
    "load": os.environ.get("LBBENCH_LOAD"),
    "argv": sys.argv,
    "stdin_is_null": os.path.samefile("/proc/self/fd/0", os.devnull),
    "imported": sorted(m for m in ("locust", "pyarrow", "bench.load.capture", "bench.load.users", "bench.load.lean",
                                   "bench.load.models", "pandas", "matplotlib") if m in sys.modules),
}, open(os.environ["PROBE_OUT"], "w"))
raise SystemExit(7)
"""


def test_a_warm_locust_runs_the_command_line_it_is_given_and_one_without_orders_ends(tmp_path: Path) -> None:
    probe = tmp_path / "probe_locustfile.py"
    probe.write_text(_PROBE)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    warm, orphan = start_warm(), start_warm()
    assert warm is not None and orphan is not None and orphan.proc.stdin is not None
    orphan.proc.stdin.close()  # what a `bench run` killed before it had a run for it leaves it
    try:
        settings = json.dumps({"run_dir": str(run_dir)})
        order_env = {"LBBENCH_LOAD": settings, "PROBE_OUT": str(tmp_path / "probe.json")}
        assert warm.launch(["-f", str(probe), "--headless"], order_env, run_dir, run_dir / "locust.log")
        assert warm.proc.wait(timeout=120) == 7
        assert orphan.proc.wait(timeout=120) == 0  # it ended without load
    finally:
        warm.discard()
        orphan.discard()
    got = json.loads((tmp_path / "probe.json").read_text())
    assert got["cwd"] == str(run_dir)
    assert got["load"] == settings
    assert got["argv"][1:] == ["-f", str(probe), "--headless"]
    assert got["stdin_is_null"]
    # imported ahead: Locust and the capture's libraries (pandas too: pyarrow imports it on the first
    # flush otherwise, a 1-3 s stall of the load); not the modules that read the settings when
    # imported (they would have read none), nor the report's matplotlib
    assert got["imported"] == ["bench.load.capture", "locust", "pandas", "pyarrow"]
    assert "probe on stdout" in (run_dir / "locust.log").read_text()


def test_a_warm_locust_that_is_gone_is_replaced_and_discard_kills_one_that_imports(tmp_path: Path) -> None:
    gone = WarmLocust(subprocess.Popen(["true"], stdin=subprocess.PIPE))
    gone.proc.wait(timeout=10)
    assert not gone.launch(["--headless"], {}, tmp_path, tmp_path / "log")  # start_locust then starts one afresh
    busy = WarmLocust(subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, start_new_session=True))
    busy.discard()
    assert busy.proc.returncode is not None


def test_a_workers_master_gives_up_on_its_workers_before_bench_stops_it(tmp_path: Path) -> None:
    """A --workers master waits for its worker containers (their start: 5-25 s seen on a busy machine) before
    its run time starts. bench's deadline counts from the master's start, so it must cover that wait, and a
    master whose workers never come must give up on its own (exit 1, one line): SIGTERMed while it waits it
    died with -15, an empty log and 0 users (a full suite's failure, blamed on the warm Locust)."""
    from bench.load.runner import WORKERS_START_TIMEOUT, processes_of, start_locust
    from bench.run import LOCUST_EXIT_GRACE, load_deadline_s
    from bench.spec import load_scenario

    scenario, _ = load_scenario("open", "6s")
    # a real process in the warm Locust's place: it writes down the orders it is handed
    orders = tmp_path / "orders.jsonl"
    with orders.open("wb") as out:
        warm = WarmLocust(subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=out))
        locust = start_locust(scenario, "https://198.18.0.10", tmp_path / "ca.pem", tmp_path / "run", 6.0, master=("198.18.0.1", 5557, 2), warm=warm)
        assert locust.proc.wait(timeout=30) == 0
    argv = json.loads(orders.read_text())["argv"]
    wait_s = int(argv[argv.index("--expect-workers-max-wait") + 1])
    # every sending process: 2 containers of load.processes each (each forked process is a worker of the master)
    assert argv[argv.index("--expect-workers") + 1] == str(2 * processes_of(scenario))
    assert 0 < wait_s == WORKERS_START_TIMEOUT
    assert load_deadline_s(6.0, workers=2) >= wait_s + 6.0 + LOCUST_EXIT_GRACE  # it gives up before bench would stop it
    assert load_deadline_s(6.0, workers=0) == 6.0 + LOCUST_EXIT_GRACE  # no wait for workers without them
