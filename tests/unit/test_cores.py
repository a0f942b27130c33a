"""tests/unit/cores.py: the error-rate tests' trials shared out over the cores give the serial results, in order."""

from __future__ import annotations

import os

from .cores import map_on_cores


def test_map_on_cores_is_the_serial_map_in_order() -> None:
    items = list(range(11))
    got = map_on_cores(lambda x: (x * x, os.getpid()), items)
    assert [v for v, _ in got] == [x * x for x in items]
    pids = {pid for _, pid in got}
    assert os.getpid() in pids and len(pids) == min(len(os.sched_getaffinity(0)), len(items))
    assert map_on_cores(lambda x: x, []) == []
