"""`make test` runs two pytest processes: every integration test in one, one after another; unit tests beside them.

Labs must never overlap (each integration test measures its own lab, and the session's shared runs
live in one process), so the check is made on the real test tree with the command's own options:
a plugin records which process each test was given instead of running it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

RECORD_ONLY = '''
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    with open(os.environ["LBBENCH_TEST_RECORD"], "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "-") + " " + item.nodeid + "\\n")
    return True  # recorded, not run
'''


def test_make_test_gives_every_integration_test_to_one_process(tmp_path: Path) -> None:
    options = ["--numprocesses", "2"]
    test_line = next(line for line in (ROOT / "scripts" / "dev.sh").read_text().splitlines() if line.strip().startswith("test)"))
    assert " ".join(options) in test_line  # what `make test` runs
    (tmp_path / "record_only.py").write_text(RECORD_ONLY)
    record = tmp_path / "record.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "LBBENCH_TEST_RECORD": str(record)}
    unit_files = ["tests/unit/test_cores.py", "tests/unit/test_thresholds.py"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *options, "-p", "record_only", "-p", "no:cacheprovider", "-q", "tests/integration", *unit_files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert record.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    by_process: dict[str, list[str]] = defaultdict(list)
    for line in record.read_text().splitlines():
        process, nodeid = line.split(" ", 1)
        by_process[process].append(nodeid)
    lab = {p for p, ids in by_process.items() for i in ids if i.startswith("tests/integration/")}
    integration = [i for ids in by_process.values() for i in ids if i.startswith("tests/integration/")]
    assert len(integration) > 40  # the whole lab suite was scheduled
    assert len(lab) == 1, {p: len(ids) for p, ids in by_process.items()}  # one process, so one lab at a time
    (lab_process,) = lab
    # the unit tests ran beside them, in the other process
    others = [p for p in by_process if p != lab_process]
    assert others and all(i.startswith("tests/unit/") for p in others for i in by_process[p])
