"""The lean load engine under Locust: :class:`LeanHttpsUser` (``load: {engine: lean}``).

Locust's ``FastHttpUser`` spends most of its time in its client library and in
per-request bookkeeping. :class:`LeanHttpsUser` runs one
:class:`~bench.load.leanclient.LeanClient` per user instead: plain non-blocking
sockets on gevent's loop, TLS by ``ssl`` on those sockets, the response read by
:mod:`bench.load.http1`; see :mod:`bench.load.leanclient` for the details.

What stays Locust's: users, spawning, shapes, ``wait_time`` (think time), the
console, web UI, CSV files and distributed mode. What changes:

- every request is recorded exactly into our timeline
  (:meth:`RequestCapture.record`, with ``conn_new``), and into Locust's
  statistics in batches: per-name lists in this process (for the keep-alive
  hot path's successes, the capture's own arrays: :meth:`StatsBatch.tap`),
  merged into ``environment.stats`` every ``STATS_FLUSH`` seconds and when the
  test stops.
  ``events.request`` is *not* fired per request, so other listeners of that
  event do not see this engine's requests;
- with ``think_time`` 0 a task is a burst of back-to-back requests
  (:meth:`LeanClient.burst`, driven from gevent's hub), bounded by
  ``BURST_REQUESTS`` and ``BURST_SECONDS`` so stopping stays prompt;
- on its first user, each process freezes the objects alive at that point out of
  the garbage collector's reach and raises its thresholds (the profile showed
  the collector at a fifth of the CPU otherwise).

Several processes: Locust's ``--processes N`` (``load.processes``) forks N
workers, each with its own connections, file-descriptor limit and capture
files; the master merges their statistics as usual.

Settings (``LBBENCH_LOAD`` JSON, written by :mod:`bench.load.runner`)::

    ca, path, name, think_time, timeout, connect_timeout,
    requests_per_connection (0 = unlimited), resumption (bool)
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import gevent
from locust import User, constant, task
from locust.exception import StopUser
from locust.user.users import LOCUST_STATE_STOPPING

from .capture import RequestCapture
from .leanclient import (
    LabTrust,
    LeanClient,
    LeanSettings,
    LeanTimeout,
    StatsBatch,
    Watchdog,
    error_kind,
)
from .users import check_lab_host, settings

#: A burst of back-to-back requests ends after this many requests ...
BURST_REQUESTS = 512
#: ... or this many seconds, so Locust can stop or rebalance users in time.
BURST_SECONDS = 0.5
#: Seconds between merges of the aggregated statistics into Locust's (its CSV writer runs every 1 s).
STATS_FLUSH = 0.25

_time = time.time


class _Process:
    """Per-process state shared by all lean users of this Locust process."""

    def __init__(self) -> None:
        self.pid = -1
        self.capture: RequestCapture | None = None
        self.batch = StatsBatch()
        self.watchdog = Watchdog()
        self.settings: LeanSettings | None = None
        self.ctx: LabTrust | None = None
        self.flusher: gevent.Greenlet | None = None
        self.environment: Any = None
        self.gc_tuned = False

    def setup(self, user: User) -> None:
        """First user in this process: settings, TLS context, stats flusher, GC tuning.

        Locust forks its ``--processes`` workers before any user starts, so each
        process sets itself up on its own first user.
        """
        self.setup_env(user.environment, user.host or "")

    def setup_env(self, environment: Any, host: str) -> None:
        """:meth:`setup` without a user (a process that only holds connections, or gets a message first)."""
        if self.pid == os.getpid():
            return
        self.pid = os.getpid()
        try:
            s = settings()
            self.settings = LeanSettings.from_settings(host, s)
            tls = self.settings.scheme == "https" or s.get("hosts")
            self.ctx = LabTrust(self.settings.ca, tls12=s.get("tls_version") == "1.2") if tls else None
        except ValueError as exc:
            self.pid = -1
            raise StopUser(str(exc)) from None
        self.environment = environment
        if type(self.capture) is RequestCapture:
            # the keep-alive hot path's successes count in Locust's statistics from the capture's arrays
            self.batch.tap(self.capture)
        events = environment.events
        events.test_stopping.add_listener(lambda **_kw: self.flush_stats())
        events.test_stop.add_listener(lambda **_kw: self.flush_stats())
        events.quitting.add_listener(lambda **_kw: self.flush_stats())
        self.flusher = gevent.spawn(self._flush_loop)
        if not self.gc_tuned:
            # Everything alive now (Locust, numpy, pyarrow ...) becomes permanent, so
            # collections scan only what requests allocate; and they run less often.
            # The profile showed the collector at a fifth of the CPU without this.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 10)
            self.gc_tuned = True

    def flush_stats(self) -> None:
        if self.environment is not None:
            self.batch.flush(self.environment.stats)

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(STATS_FLUSH)
            self.flush_stats()


_PROC = _Process()


def attach_capture(capture: RequestCapture | None) -> None:
    """Record this process's lean requests into ``capture`` (the locustfile calls this at init)."""
    _PROC.capture = capture


class LeanHttpsUser(User):
    """Keep-alive or new-connection HTTPS (or HTTP) from plain sockets; see the module doc.

    One connection (one :class:`LeanClient`) per user. With ``think_time`` 0, a
    task is a burst of back-to-back requests (at most ``BURST_REQUESTS`` or
    ``BURST_SECONDS``); otherwise one request per task and Locust's
    ``wait_time`` sleeps between them.
    """

    abstract = False
    wait_time = constant(float(settings().get("think_time", 0.0) or 0.0))

    def on_start(self) -> None:
        check_lab_host(self.host or "")
        _PROC.setup(self)
        s = _PROC.settings
        assert s is not None
        self.client = LeanClient(s, _PROC.ctx, _PROC.batch.lists(s.name), _PROC.capture)
        self._burst = BURST_REQUESTS if s.think_time <= 0 else 1
        _PROC.watchdog.add(self.client, min(s.timeout, s.connect_timeout))

    def on_stop(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            _PROC.watchdog.discard(client)
            client.close()
        _PROC.flush_stats()

    @task
    def run_requests(self) -> None:
        """A burst of requests (one when there is think time)."""
        # LeanClient.burst drives the requests from gevent's hub (no greenlet switch per
        # request); a stopping user finishes its burst (at most BURST_SECONDS) first.
        if self._state != LOCUST_STATE_STOPPING:
            self.client.burst(self._burst, _time() + BURST_SECONDS)


__all__ = ["LeanClient", "LeanHttpsUser", "LeanSettings", "LeanTimeout", "attach_capture", "error_kind"]
