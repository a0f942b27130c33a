"""The end of a Locust ``--processes`` master without Locust's fixed waits.

With ``load.processes`` > 1 the Locust that `bench run` starts forks its worker
processes and becomes their master. At the end of a headless run Locust's
``MasterRunner.quit`` tells the workers to quit and then sleeps 0.5 s "for the final
stats report from all workers"; it runs up to three times (the run time's end, the
last worker's quit, the shutdown), so the master exited ~1.7 s after the last
request, and `bench run`'s load window ended that much after the load (every
multi-process run, the duet's sides, each group of a capacity sweep). Locust's own
wait for its forked processes at exit does not wait (a running child reads as exited).

Here (:func:`install`, from the locustfile's init, master with forked processes only):

- ``quit`` waits until every worker has quit instead of a fixed 0.5 s (after which Locust
  stopped listening), at most :data:`QUIT_WAIT_S`: a worker sends its final statistics
  before its quit message, on the same connection, so they are in;
- at quitting the master waits (:func:`wait_for_forked`, at most :data:`FORKED_WAIT_S`)
  until its forked processes have exited: they flush their request capture after
  telling the master they quit, and the master's exit is the load's end for `bench run`,
  which then ends whatever is left of the process group (bench.load.runner.end_group).

A ``--workers`` master (worker containers, no forked processes) keeps Locust's waits:
its workers' capture flushes in containers the teardown removes.

And in every Locust process (:func:`complete_csv_at_exit`): Locust rewrites its CSV files
(``locust/locust_stats.csv``, ``_failures``, ``_exceptions``; ``_stats_history`` gets a row)
once a second and not at its end, so they missed up to the last second (a smoke run:
23,756 requests in ``locust_stats.csv``, 25,676 recorded); they are written once more when
Locust closes them, after the last figures are in (a master's sleeps used to hide this).
"""

from __future__ import annotations

import contextlib
import time
import types
from typing import Any

import gevent

from ..proc import children_alive

#: At most this long the master waits for its workers' quit messages (Locust waited 0.5 s, then stopped listening).
QUIT_WAIT_S = 1.5
#: At most this long the master waits for its forked processes to exit once it quits.
FORKED_WAIT_S = 5.0
#: Seconds between looks.
POLL_S = 0.01


def forked_master(environment: Any) -> bool:
    """Whether this process is the master of worker processes it forked (``--processes`` N > 1, not ``--worker``)."""
    from locust.runners import MasterRunner

    options = getattr(environment, "parsed_options", None)
    processes = getattr(options, "processes", None) or 1
    return isinstance(getattr(environment, "runner", None), MasterRunner) and processes > 1 and not getattr(options, "worker", False)


def install(environment: Any) -> bool:
    """Make a forked master's ``quit`` wait for its workers rather than sleep; whether it did (see the module)."""
    if not forked_master(environment):
        return False
    runner = environment.runner
    if not (hasattr(getattr(runner, "clients", None), "all") and hasattr(getattr(runner, "server", None), "send_to_client") and hasattr(runner, "greenlet")):
        return False  # another Locust than the one _quit copies: its own quit, fixed waits and all
    runner.quit = types.MethodType(_quit, runner)
    return True


def _quit(self: Any) -> None:
    """Locust's ``MasterRunner.quit``, waiting until every worker quit (at most QUIT_WAIT_S) instead of 0.5 s."""
    from locust.rpc import Message

    self.stop(send_stop_to_client=False)
    for client in self.clients.all:
        self.server.send_to_client(Message("quit", None, client.id))
    until = time.monotonic() + QUIT_WAIT_S
    while len(self.clients) and time.monotonic() < until:
        gevent.sleep(POLL_S)
    self.greenlet.kill(block=True)


def wait_for_forked(environment: Any, timeout: float = FORKED_WAIT_S) -> None:
    """In a forked master at quitting: wait until its forked processes have exited (at most ``timeout``)."""
    import os

    if not forked_master(environment):
        return
    until = time.monotonic() + timeout
    while children_alive(os.getpid()) and time.monotonic() < until:
        gevent.sleep(POLL_S)


def complete_csv_at_exit() -> None:
    """Make Locust write its CSV files once more, with the final figures, when it closes them at its end."""
    from locust.stats import StatsCSVFileWriter

    close = StatsCSVFileWriter.close_files
    if getattr(close, "lbbench_final_rows", False):
        return

    def close_files(self: Any) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # the files as they are, rather than none
            _final_rows(self)
        close(self)

    close_files.lbbench_final_rows = True  # type: ignore[attr-defined]
    StatsCSVFileWriter.close_files = close_files  # type: ignore[method-assign]


def _final_rows(w: Any) -> None:
    """What Locust's once-a-second writer (StatsCSVFileWriter.stats_writer) writes, once, now."""
    for fh, writer, columns, rows in (
        (w.requests_csv_filehandle, w.requests_csv_writer, w.requests_csv_columns, w._requests_data_rows),
        (w.failures_csv_filehandle, w.failures_csv_writer, w.failures_columns, w._failures_data_rows),
        (w.exceptions_csv_filehandle, w.exceptions_csv_writer, w.exceptions_columns, w._exceptions_data_rows),
    ):
        fh.seek(0)
        writer.writerow(columns)
        rows(writer)
        fh.truncate()
    if w.stats_history_csv_filehandle.tell() == 0:
        w.stats_history_csv_writer.writerow(w.stats_history_csv_columns)
    w._stats_history_data_rows(w.stats_history_csv_writer, time.time())
