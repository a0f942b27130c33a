"""The default locustfile of lbbench scenarios: users from :mod:`bench.load.users`,
:mod:`bench.load.lean` and :mod:`bench.load.models`, the per-request capture into
the run directory, and the load models' control plane."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gevent
from locust import events

from bench.load import lean, models, quitting, users
from bench.load.capture import RequestCapture
from bench.load.lean import LeanHttpsUser
from bench.load.models import LeanRateUser
from bench.load.runner import wait_for_start_gate
from bench.load.users import KeepAliveUser, settings
from bench.proc import quick_exit

__all__ = ["KeepAliveUser", "LeanHttpsUser", "LeanRateUser"]

_capture: RequestCapture | None = None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    global _capture  # noqa: PLW0603 - the process's one capture, made when Locust initialises it
    quick_exit()  # a Locust process: its end is the load's end, which `bench run` waits for
    # Everything that listens goes first: a worker's messages are handled from the moment its
    # runner exists, and the start-gate wait below yields to them. A worker that registered after
    # the wait lost the controller's setup and schedule when the owning process passed the gate
    # first, and sent nothing the whole run (seen in a capacity sweep's keep-alive group).
    models.on_init(environment)
    quitting.install(environment)  # a --processes master ends once its workers did, not after fixed sleeps
    quitting.complete_csv_at_exit()  # and Locust's CSV files hold its final figures
    run_dir = settings().get("run_dir")
    if run_dir and _capture is None:
        _capture = RequestCapture(Path(run_dir))
        environment.events.request.add_listener(_capture.on_request)
        # The lean engine records its requests itself (it fires no events.request).
        lean.attach_capture(_capture)
        users.attach_capture(_capture)
        # the load's end: requests sent after it and cut by the stop are told apart (samples/unfinished/ after_stop)
        environment.events.test_stopping.add_listener(_capture.mark_stopping)
        _capture.start()
    # started ahead of its lab by `bench run`: no user before the go (the owning process starts
    # its users only after this returns, so nothing is sent before it)
    wait_for_start_gate(settings().get("start_gate"), up=_generator_up(environment))
    # Locust's --run-time timer and its spawn pacing count from the gevent loop's "now", which is
    # only updated when the loop runs: if the imports outlasted the lab's start (the gate was open
    # at once) that "now" is the hub's creation, seconds ago, and the load ended that much early.
    gevent.get_hub().loop.update_now()


def _generator_up(environment) -> Callable[[], bool] | bool:
    """When this process tells its starter the load generator is up (bench.load.runner.wait_for_start_gate):
    a master once every worker it expects (its --processes, or --workers containers) is connected, so the
    go releases the whole generator at once; a worker never (its master speaks for it); alone at once."""
    from locust.runners import MasterRunner, WorkerRunner

    runner = getattr(environment, "runner", None)
    if isinstance(runner, WorkerRunner):
        return False
    if isinstance(runner, MasterRunner):
        expected = int(getattr(environment.parsed_options, "expect_workers", 1) or 1)
        return lambda: len(runner.clients.ready) >= expected
    return True


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    if _capture is not None:
        _capture.stop()
    # a --processes master: its forked processes flush their capture after they quit; its exit is the load's end
    quitting.wait_for_forked(environment)
