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

- ``quit`` waits until every worker has quit instead of a fixed 0.5 s, at most
  :data:`QUIT_WAIT_S` (what the three sleeps gave them): a worker sends its final
  statistics before its quit message, on the same connection, so they are in;
- at quitting the master waits (:func:`wait_for_forked`, at most :data:`FORKED_WAIT_S`)
  until its forked processes have exited: they flush their request capture after
  telling the master they quit, and the master's exit is the load's end for `bench run`,
  which then ends whatever is left of the process group (bench.load.runner.end_group).

A ``--workers`` master (worker containers, no forked processes) keeps Locust's waits:
its workers' capture flushes in containers the teardown removes.
"""

from __future__ import annotations

import time
import types
from typing import Any

import gevent

from ..proc import children_alive

#: At most this long the master waits for its workers' quit messages (Locust: three sleeps of 0.5 s).
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
