"""Held connections (``load.held``): N mostly idle keep-alive connections, established and kept open.

Production load balancers carry far more established connections than
requests in flight: browsers keep connections open between clicks. This pool
reproduces that next to any model. Each load-generator process holds its share
(:func:`share`), so the per-process file-descriptor limit is not the ceiling.

Per held connection one :class:`~bench.load.leanclient.LeanClient` with
unlimited keep-alive: it opens the connection with a first request, then
sends one request every ``interval`` (uniformly jittered by +-20 %, so the
requests spread out), which keeps HAProxy's ``timeout http-keep-alive`` from
closing it. The requests start from timers and run on the client's
hub-driven path; each held connection's greenlet only waits (it takes over
for a response that needs the general reader). A connection the server closes
anyway is opened again by the next request (counted in ``opened``). Openings
are paced at the process's share of ``held.rate``.

Requests are recorded like any other (name ``held <name>``), and the pool's
state goes to ``samples/held/`` once per second (table ``held`` of
:mod:`bench.results.tables`).
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .leanclient import CaptureWrapper

#: Requests on a held connection are spaced by interval x uniform(1 - JITTER, 1 + JITTER).
JITTER = 0.2


def share(total: int, index: int, workers: int) -> int:
    """Process ``index``'s part of ``total`` among ``workers`` (the first ones take the remainder).

    >>> [share(10, i, 3) for i in range(3)]
    [4, 3, 3]
    """
    if workers <= 0:
        return 0
    base, rest = divmod(total, workers)
    return base + (1 if index % workers < rest else 0)


class HeldPool:
    """One process's held connections (see the module docstring).

    ``make_client(tls)`` returns a new LeanClient for a TLS (``https``) or plain
    (``http``) connection; ``on_client``/``off_client`` let the caller register
    it with the process's watchdog.
    """

    def __init__(
        self,
        make_client: Callable[[bool], Any],
        interval: float,
        rate: float,
        run_dir: Path | None = None,
        resumption: bool = True,
        on_client: Callable[[Any], None] = lambda _c: None,
        off_client: Callable[[Any], None] = lambda _c: None,
    ):
        self.make_client = make_client
        self.interval = interval
        self.rate = rate
        self.resumption = resumption
        self.on_client = on_client
        self.off_client = off_client
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.clients: list[tuple[Any, bool]] = []
        self.target = 0
        self.tls_target = 0
        self._opened_seen = 0
        self._resumed_seen = 0
        self.failed = 0
        self._failed_seen = 0
        self._session: Any = None
        self._glets: list[Any] = []
        self._writer: Any = None
        if run_dir is not None:
            from ..results.store import ChunkWriter, process_writer
            from ..results.tables import HELD

            self._writer = ChunkWriter(run_dir, HELD, process_writer())

    # ------------------------------------------------------------------ lifecycle

    def start(self, connections: int, tls_connections: int) -> None:
        """Open ``connections`` (``tls_connections`` of them TLS) at this process's rate, then hold them."""
        import gevent

        self.target = connections
        self.tls_target = tls_connections
        if connections > 0:
            self._glets.append(gevent.spawn(self._open_all))
        if self._writer is not None:
            self._glets.append(gevent.spawn(self._sample_loop))

    def stop(self) -> None:
        """Stop every held connection's greenlet and close it; write the last sample."""
        import gevent

        glets, self._glets = self._glets, []
        gevent.killall(glets, block=True, timeout=5)
        if self._writer is not None:
            self.sample()
            self._writer.close()
        for client, _tls in self.clients:
            self.off_client(client)
            client.close()
        self.clients = []

    # ------------------------------------------------------------------ opening and holding

    def _open_all(self) -> None:
        import gevent

        start = time.time()
        # TLS and plain connections interleaved, so both kinds grow together
        plain = self.target - self.tls_target
        order = _interleave(self.tls_target, plain)
        for i, tls in enumerate(order):
            due = start + i / self.rate
            delay = due - time.time()
            if delay > 0:
                gevent.sleep(delay)
            client = self.make_client(tls)
            # idle most of the time, and many: OpenSSL frees its record buffers between requests
            client.keep_tls_buffers = False
            client.capture = _HeldRecorder(client.capture, self)
            if tls and self.resumption and self._session is not None:
                client._session = self._session
            self.on_client(client)
            self.clients.append((client, tls))
            self._glets.append(gevent.spawn(self._hold, client, tls))

    def _hold(self, client: Any, tls: bool) -> None:
        """Hold one connection: a request now, then one every interval (jittered), all driven from the hub.

        The requests start from timers in gevent's hub and take the client's
        hub-driven path; this greenlet (the client's owner) stays parked
        unless a response needs the general reader, until the pool stops it.
        """
        from .leanclient import Owner

        owner = Owner()
        client.use_owner(owner)
        rng = random.Random()
        loop = owner.hub.loop
        recorder = client.capture
        timers: list[Any] = []

        def done(c: Any, _t1: float, _failed: bool) -> None:
            if not recorder.error and tls and self.resumption and c._session is not None:
                self._session = c._session
            timer = loop.timer(self.interval * rng.uniform(1.0 - JITTER, 1.0 + JITTER))
            timers[:] = [timer]
            timer.start(c.start, 1, math.inf, done)

        try:
            client.start(1, math.inf, done)
            owner.park()  # until the pool stops this greenlet
        finally:
            for timer in timers:
                timer.stop()
            client.abort()

    # ------------------------------------------------------------------ state

    def counts(self) -> tuple[int, int, int, int]:
        """(open, open over TLS, opened so far, resumed so far) right now."""
        open_ = tls_open = opened = resumed = 0
        for client, tls in self.clients:
            opened += client.connections
            resumed += client.resumed
            if client._conn is not None:
                open_ += 1
                if tls:
                    tls_open += 1
        return open_, tls_open, opened, resumed

    def sample(self) -> None:
        if self._writer is None:
            return
        open_, tls_open, opened, resumed = self.counts()
        failed = self.failed
        self._writer.write(
            {
                "t": [time.time()],
                "worker": [self.worker],
                "target": [self.target],
                "tls_target": [self.tls_target],
                "open": [open_],
                "tls_open": [tls_open],
                "opened": [opened - self._opened_seen],
                "resumed": [resumed - self._resumed_seen],
                "failed": [failed - self._failed_seen],
            }
        )
        self._opened_seen, self._resumed_seen, self._failed_seen = opened, resumed, failed

    def _sample_loop(self) -> None:
        import gevent

        while True:
            gevent.sleep(1.0)
            self.sample()


class _HeldRecorder(CaptureWrapper):
    """Between a held client and the run's capture: counts failures, remembers the last outcome."""

    __slots__ = ("error", "inner", "pool")

    def __init__(self, inner: Any, pool: HeldPool):
        self.inner = inner
        self.pool = pool
        self.error = ""

    def record(self, t: float, latency_ms: float, nbytes: int, status: int, error: str, name: str, conn_new: bool | None = None) -> None:
        self.error = error
        if error:
            self.pool.failed += 1
        if self.inner is not None:
            self.inner.record(t, latency_ms, nbytes, status, error, name, conn_new)


def _interleave(a: int, b: int) -> list[bool]:
    """``a`` True and ``b`` False spread evenly (Bresenham), e.g. 1 TLS after every 2 plain for 1:2."""
    total = a + b
    out = []
    placed = 0
    for i in range(total):
        want = (i + 1) * a // total if total else 0
        if want > placed:
            out.append(True)
            placed += 1
        else:
            out.append(False)
    return out
