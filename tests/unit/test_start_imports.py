"""What `bench run` imports before its checks: not the analysis' heavy libraries (they load in the background)."""

from __future__ import annotations

import json
import subprocess
import sys

#: Imported by the live view, the collectors, the load generator and the analysis: each costs
#: 0.1-0.5 s of CPU, which `bench run` spends in a background thread (bench.run._import_analysis)
#: or in the warm Locust, never before its first check.
HEAVY = ("numpy", "pandas", "pyarrow", "matplotlib", "gevent", "locust")


def test_bench_runs_start_imports_none_of_the_heavy_libraries() -> None:
    # what the CLI imports until `run_scenario` starts the warm Locust and the preflight
    code = (
        "import json, sys\n"
        "import bench.cli, bench.commands.run, bench.run, bench.preflight, bench.matrix, bench.thresholds\n"
        "from bench.live.view import LiveView\n"
        "LiveView('quiet')\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_imports_before_the_go_leave_matplotlib_until_the_plots() -> None:
    # bench run's background imports (joined before the load starts) import the report's module but not matplotlib:
    # the plots import it once the summary is saved (bench/report/build.py), after the load
    code = (
        "import json, sys\n"
        "import bench.run\n"
        "bench.run._import_analysis()\n"
        "print(json.dumps([sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'), 'bench.report.build' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [[], True]
