"""A Locust process started before its run's settings are known: its imports first, then Locust.

`bench run` starts one as its very first step (:func:`bench.load.runner.start_warm`), so
Locust's imports (2-6 s on a busy 2-core machine: gevent, Flask, requests, numpy,
pyarrow) overlap the preflight, the CA and ``compose up`` instead of following them.
It imports what every locustfile run needs WITHOUT reading the run's settings (the
modules that read ``LBBENCH_LOAD`` when imported, bench.load.users and what imports it,
are left to Locust's own start), then reads one JSON line on stdin::

    {"argv": [Locust's arguments], "env": {"LBBENCH_LOAD": ...}, "cwd": RUN_DIR, "log": LOG_FILE}

and becomes that Locust: stdout and stderr go to the log file, stdin is /dev/null, and
``locust.main.main()`` runs with that command line, exactly as ``python -m locust ARGS``
would (a locustfile's start gate, its message handlers, ``--processes`` forks: all
unchanged, they happen after this point). End of stdin without a line (its starter
exited, was killed, or gave the run up) ends the process without load.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

#: Imported ahead: none of them reads the run's settings when imported (a unit test checks that
#: bench.load.users, which does, is not among what they import).
WARM_MODULES = (
    "locust",
    "locust.main",
    "locust.contrib.fasthttp",
    "geventhttpclient",
    "numpy",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.ipc",
    "pandas",  # pyarrow imports it when it first converts a Python list (the capture's first flush)
    "bench.results.store",
    "bench.load.capture",
    "bench.load.control",
    "bench.load.stages",
    "bench.load.pacing",
    "bench.load.held",
    "bench.load.leanclient",
)


def warm_up() -> None:
    """Import :data:`WARM_MODULES`; one that fails is left for Locust's own start, which says why in its log."""
    for name in WARM_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def become_locust(order: dict) -> None:
    """Run Locust as ``order`` says (see the module's docstring); exits with Locust's status."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path[0] = order["cwd"]  # `python -m` puts its working directory first, as Locust's would be
    os.chdir(order["cwd"])
    os.environ.update(order["env"])
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.argv = ["locust", *order["argv"]]
    from locust.main import main as locust_main

    locust_main()


def main() -> None:
    warm_up()
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit(0)  # no run for us: nothing was sent, nothing is
    become_locust(json.loads(line))


if __name__ == "__main__":
    main()
