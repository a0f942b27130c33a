"""`bench run` attaches its live view beside the lab's start, not before it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: A child that makes the live view's state slow to import, as it is when `bench run`'s background import is
#: still at numpy and pyarrow once the checks end, then asks bench.run to attach the view.
CHILD = """
import importlib.abc, json, sys, threading
release = threading.Event()

class SlowImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "bench.live.state":
            release.wait(10)
        return None  # the usual finders import it

sys.meta_path.insert(0, SlowImport())
import bench.run
from bench.live.view import LiveView

live = LiveView("quiet")
attached = bench.run.attach_live(live, sys.argv[1], {"status": "starting"})
returned_first = not attached.done()  # the start goes on (compose up) while the state imports
release.set()
attached.result(timeout=30)
print(json.dumps([returned_first, live.state.phase]))
"""


def test_attaching_the_live_view_does_not_hold_the_labs_start(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out) == [True, "lab up"]


def test_no_live_view_nothing_to_wait_for(tmp_path: Path) -> None:
    from bench.run import attach_live

    assert attach_live(None, tmp_path, {}) is None
