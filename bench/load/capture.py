"""Per-request capture: every request Locust reports lands in ``samples/requests/``.

One row per request (table ``requests``), timed on the host's wall clock like
every other sample, and alongside, in ``samples/latency_hist/``, one mergeable
latency histogram (:mod:`bench.results.histogram`) per worker per second of the
successful requests. A traced request (1 in N, :class:`Tracer`) also has its
``trace_id``. A request the load generator stopped waiting for before it
finished (the load ended, its user was stopped) is in no ``requests`` row: it
is one row of ``samples/unfinished/`` (:meth:`RequestCapture.unfinished`), so
every request sent is accounted for. The tables are declared in
:mod:`bench.results.tables`. Rows are buffered in
memory for at most ``FLUSH_INTERVAL`` seconds, then appended as one batch (see
:mod:`bench.results.store`).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import ssl
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..results.histogram import buckets_of
from ..results.store import ChunkWriter, process_writer
from ..results.tables import LATENCY_HIST, REQUESTS, UNFINISHED

FLUSH_INTERVAL = 1.0
#: Columns filled per request by :meth:`RequestCapture.record`; the others are derived at flush.
RECORD_COLUMNS = ("t", "latency_ms", "bytes", "status", "error", "name", "worker", "conn_new")

#: The request header that carries a traced request's id through every hop.
TRACE_HEADER = "X-Lbbench-Id"
#: Automatic tracing: about this many traced requests per second per load-generator process.
TRACE_PER_S = 100
#: Automatic tracing's 1 in N until the first flush has measured the process's rate.
AUTO_START = 20


class Tracer:
    """Which requests are traced, and their ids.

    Every HAProxy process of the lab logs the timers of a request that carries
    ``X-Lbbench-Id: <worker>/<seq>`` (topology/templates/_timers.cfg.j2), so the
    analysis can follow it hop by hop and join it to this process's row
    (``trace_id`` = seq). ``every`` is N of "1 in N" (0: none); with ``auto`` it
    follows the process's request rate, once per flush, so that about
    :data:`TRACE_PER_S` requests a second are traced. An engine counts down
    :meth:`every` requests itself (one integer per request on its hot path) and
    asks :meth:`take` for the id when it reaches zero.
    """

    def __init__(self, worker: str, every: int | None = None):
        self.worker = worker
        self.auto = every is None
        # automatic: start at 1 in AUTO_START (the rate is not known before the first flush)
        self.every = AUTO_START if every is None else int(every)
        self.seq = 0

    def take(self) -> int:
        """The next traced request's id (its ``trace_id``)."""
        self.seq += 1
        return self.seq

    def value(self, trace_id: int) -> str:
        """The header's value for ``trace_id``: ``<worker>/<trace_id>``, unique in the run."""
        return f"{self.worker}/{trace_id}"

    def header_line(self, trace_id: int) -> bytes:
        """``X-Lbbench-Id: <worker>/<trace_id>`` and its CRLF, for engines that write requests themselves."""
        return f"{TRACE_HEADER}: {self.value(trace_id)}\r\n".encode("ascii")

    def countdown(self) -> int:
        """Requests until the next traced one (-1: never, when tracing is off)."""
        return self.every if self.every > 0 else -1

    def adapt(self, requests: int, seconds: float) -> None:
        """Automatic mode: trace about TRACE_PER_S of the ``requests`` seen over ``seconds``."""
        if self.auto and seconds > 0:
            self.every = max(1, -(-int(requests) // max(1, int(TRACE_PER_S * seconds))))


#: Error kinds, in the words of the field.
ERROR_KINDS = ("refused", "reset", "timeout", "tls", "http_4xx", "http_5xx", "closed", "other")


def _trace_setting() -> int | None:
    """``trace_every`` of this process's LBBENCH_LOAD settings (None: automatic)."""
    try:
        value = json.loads(os.environ.get("LBBENCH_LOAD", "{}")).get("trace_every")
    except (ValueError, AttributeError):
        return None
    return None if value is None else int(value)


def classify(exception: BaseException | None, status: int) -> str:
    """Map a request's outcome to an error kind ("" when it succeeded)."""
    if exception is None:
        if status >= 500:
            return "http_5xx"
        if status >= 400:
            return "http_4xx"
        return ""
    exc = exception
    # Locust wraps some errors; look through the chain for the transport error.
    seen = 0
    while seen < 5 and not isinstance(exc, OSError) and (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
        seen += 1
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, TimeoutError | socket.timeout | gevent.Timeout):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "refused"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    text = f"{type(exc).__name__} {exc}".lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "refused" in text:
        return "refused"
    if "reset" in text:
        return "reset"
    if "ssl" in text or "certificate" in text:
        return "tls"
    if "closed" in text or "eof" in text or "incomplete" in text:
        return "closed"
    return "other"


def histogram_columns(cols: dict[str, list], worker: str) -> dict[str, list]:
    """Per-second latency histograms of the successful requests in ``cols``."""
    if not cols["t"]:
        return {}
    ok = np.asarray([e == "" for e in cols["error"]], dtype=bool)
    return _histogram(np.asarray(cols["t"], dtype=float), np.asarray(cols["latency_ms"], dtype=float), ok, worker)


def _histogram(t: np.ndarray, latency_ms: np.ndarray, ok: np.ndarray, worker: str) -> dict[str, list]:
    """:func:`histogram_columns` from arrays (``ok``: the request succeeded)."""
    if not ok.any():
        return {}
    seconds = np.floor(t[ok]).astype(np.int64)
    buckets = buckets_of(latency_ms[ok])
    # One integer key per (second, bucket): a 1-D unique is ~100x cheaper than axis=1.
    first = int(seconds.min())
    keys, counts = np.unique(((seconds - first) << 20) | buckets, return_counts=True)
    n = counts.size
    return {
        "t": ((keys >> 20) + first).tolist(),
        "worker": [worker] * n,
        "bucket": (keys & ((1 << 20) - 1)).astype(np.int32).tolist(),
        "count": counts.tolist(),
    }


def _copy_doubles(values: array, start: int, end: int) -> np.ndarray:
    """``values[start:end]`` (an array of doubles) as a new numpy array."""
    return np.frombuffer(values, dtype=np.float64, count=end - start, offset=8 * start).copy()


#: One buffered request: record()'s arguments, in order (converted to columns at flush).
ROW_TYPE = pa.struct([(name, REQUESTS.schema.field(name).type) for name in RECORD_COLUMNS if name != "worker"])


class RequestCapture:
    """Buffers request events and appends them to its streams once per second.

    A request costs one tuple appended to one list (:meth:`record`, or the
    cheaper :attr:`record_row`); the flush turns the tuples into columns in
    Arrow's C++ (one struct conversion), with no Python loop per row.
    """

    def __init__(self, run_dir: Path):
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.writer = ChunkWriter(run_dir, REQUESTS, process_writer())
        self.hist_writer = ChunkWriter(run_dir, LATENCY_HIST, process_writer())
        self.unfinished_writer = ChunkWriter(run_dir, UNFINISHED, process_writer())
        self._rows: list[tuple] = []
        # (t, dropped_t, name, phase, conn_new, intended_t, trace_id, after_stop) of the requests dropped unanswered (unfinished)
        self._unfinished: list[tuple] = []
        #: which requests carry X-Lbbench-Id (an engine asks it; see Tracer)
        self.tracer = Tracer(self.worker, _trace_setting())
        # (row, trace id) of the traced rows: sparse, like _intended
        self._traced: list[tuple[int, int]] = []
        self._flushed_at = 0.0
        #: Record one request from a tuple of :meth:`record`'s seven arguments, in order
        #: (``conn_new`` included): one C call, for engines that count nanoseconds.
        self.record_row = self._rows.append
        # (row, intended send time) of the rows recorded by record_intended: sparse, rate models only
        self._intended: list[tuple[int, float]] = []
        self._flusher: gevent.Greenlet | None = None
        self._stopped = False
        #: when Locust began stopping this process's users (its test_stopping event: the load's end); None before
        self.stopping_at: float | None = None
        # successes recorded column-wise (ok_appenders): (bytes, status, name, counted by ok_stats) -> (start times, latencies)
        self._ok: dict[tuple[int, int, str, bool], tuple[array, array]] = {}
        #: who takes the column-wise successes recorded with ``stats=True`` as its statistics (tap_ok), or None
        self.ok_stats: Any = None
        # how far ok_stats has taken each such pair of arrays (take_ok), and what a flush emptied before it did
        self._ok_taken: dict[tuple[int, int, str, bool], int] = {}
        self._ok_untaken: list[tuple[str, int, np.ndarray, np.ndarray]] = []

    def ok_appenders(self, nbytes: int, status: int, name: str, stats: bool = False) -> tuple[Callable[[float], None], Callable[[float], None]]:
        """Appenders of (start time, latency ms) for requests with these fields, ``error`` "" and ``conn_new`` False.

        For engines that count nanoseconds: a request costs two float appends to
        typed arrays and no Python object, and the flush turns the arrays into
        columns without a Python loop (a row through :attr:`record_row` costs a
        tuple, and Arrow a conversion of each of its fields). Such rows carry no
        ``trace_id`` or ``intended_t``: record those through :meth:`record`.

        ``stats``: these rows are also the statistics of :attr:`ok_stats` (see
        :meth:`tap_ok`), which takes them with :meth:`take_ok`; the engine then
        counts them nowhere else.
        """
        if stats and self.ok_stats is None:
            raise ValueError("ok_appenders(stats=True) needs a consumer: tap_ok() first")
        key = (nbytes, status, name, stats)
        cols = self._ok.get(key)
        if cols is None:
            cols = self._ok[key] = (array("d"), array("d"))
        return cols[0].append, cols[1].append

    def tap_ok(self, consumer: Any) -> None:
        """``consumer`` (one per capture: the process's Locust statistics) takes the successes recorded with ``stats=True``.

        It must call :meth:`take_ok` now and then (a flush keeps what it had not
        taken yet until it does), so each such request is counted once, from
        the same two floats the capture writes, with no third append per request.
        """
        if self.ok_stats is not None and self.ok_stats is not consumer:
            raise ValueError("this capture's column-wise successes are already taken by another consumer")
        self.ok_stats = consumer

    def take_ok(self) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        """(name, body bytes, start times, latencies ms) of the ``stats=True`` successes recorded since the last take."""
        out = self._ok_untaken
        self._ok_untaken = []
        taken = self._ok_taken
        for key, (t, latency) in self._ok.items():
            if not key[3]:
                continue
            start, end = taken.get(key, 0), len(t)
            if end > start:
                # (a view over the array only while it is copied: a buffer export would stop its appends)
                out.append((key[2], key[0], _copy_doubles(t, start, end), _copy_doubles(latency, start, end)))
                taken[key] = end
        return out

    def record(
        self,
        t: float,
        latency_ms: float,
        nbytes: int,
        status: int,
        error: str,
        name: str,
        conn_new: bool | None = None,
    ) -> None:
        """Record one request (for engines that time requests themselves)."""
        self._rows.append((t, latency_ms, nbytes, status, error, name, conn_new))

    def on_request(self, request_type, name, response_time, response_length, response=None, exception=None, start_time=None, **_):
        """Locust ``events.request`` listener."""
        status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
        glet = gevent.getcurrent()
        trace_id = getattr(glet, "lbbench_trace", None)
        if trace_id is not None:  # set by bench.load.users when it sent X-Lbbench-Id
            glet.lbbench_trace = None
            self.mark_traced(trace_id)
        self.record(
            float(start_time) if start_time else 0.0,
            float(response_time or 0.0),
            int(response_length or 0),
            status,
            classify(exception, status),
            str(name),
            # set by bench.load.users in the user's greenlet for this very request
            getattr(glet, "lbbench_conn_new", None),
        )

    def unfinished(
        self,
        t: float,
        name: str,
        phase: str = "",
        conn_new: bool | None = None,
        intended_t: float | None = None,
        trace_id: int | None = None,
    ) -> None:
        """One request sent at ``t`` that will never finish: the load generator drops it now, unanswered.

        An engine calls this where it abandons a request in flight (the load
        ends, Locust stops its user), so it is accounted for: it has no
        ``requests`` row, and the analysis says how many there were and how
        long they had waited (``samples/unfinished/``). ``phase``: "connect"
        (TCP connect or TLS handshake) or "response"; "" when the engine cannot tell.
        """
        # sent after the stop began: a user whose wait ended as Locust stopped it (Locust kills a waiting
        # user at once, and the kill lands after it sent): cut by the stop itself, not load that went unanswered
        after_stop = self.stopping_at is not None and t >= self.stopping_at
        self._unfinished.append((t, time.time(), name, phase, conn_new, intended_t, trace_id, after_stop))
        if self._stopped:  # dropped after the last flush (a pool stopped at exit): written at once
            self._flush_unfinished()
            self.unfinished_writer.close()

    def mark_stopping(self, **_kwargs: Any) -> None:
        """The load ends: Locust began stopping this process's users (a listener of its ``test_stopping`` event).

        A request sent from now on and dropped unanswered is marked ``after_stop`` in ``samples/unfinished/``.
        """
        if self.stopping_at is None:
            self.stopping_at = time.time()

    def mark_traced(self, trace_id: int) -> None:
        """The next row recorded (by any engine) is the traced request ``trace_id``."""
        self._traced.append((len(self._rows), trace_id))

    def record_intended(
        self,
        intended_t: float,
        t: float,
        latency_ms: float,
        nbytes: int,
        status: int,
        error: str,
        name: str,
        conn_new: bool | None = None,
    ) -> None:
        """Record one request that a schedule wanted sent at ``intended_t`` (rate models)."""
        self.record_intended_row(intended_t, (t, latency_ms, nbytes, status, error, name, conn_new))

    def record_intended_row(self, intended_t: float, row: tuple) -> None:
        """:meth:`record_intended` from the intended time and a tuple of :meth:`record`'s arguments."""
        self._intended.append((len(self._rows), intended_t))
        self._rows.append(row)

    def flush(self) -> None:
        """Write what was recorded since the last flush (one batch per table; nothing when empty)."""
        rows = self._rows.copy()
        self._rows.clear()  # in place: record_row is bound to this list
        intended = self._intended
        self._intended = []
        traced = self._traced
        self._traced = []
        ok = self._ok_columns()  # emptied in place too: the appenders are bound to the arrays
        n = len(rows)
        total = n + sum(len(part[0]) for part in ok)
        if self._unfinished:
            self._flush_unfinished()
        now = time.monotonic()
        if self._flushed_at:
            self.tracer.adapt(total, now - self._flushed_at)
        self._flushed_at = now
        if not total:
            return
        parts = []
        if n:
            cols: dict[str, Any] = dict(zip(ROW_TYPE.names, pa.array(rows, type=ROW_TYPE).flatten(), strict=True))
            nulls = pa.nulls(n, pa.float64())
            cols["intended_t"] = cols["latency_corrected_ms"] = nulls
            if intended:
                planned: list[float | None] = [None] * n
                corrected: list[float | None] = [None] * n
                for row, when in intended:
                    planned[row] = when
                    corrected[row] = (rows[row][0] - when) * 1000.0 + rows[row][1]
                cols["intended_t"] = pa.array(planned, pa.float64())
                cols["latency_corrected_ms"] = pa.array(corrected, pa.float64())
            cols["trace_id"] = pa.nulls(n, pa.int64())
            if traced:
                ids: list[int | None] = [None] * n
                for row, trace_id in traced:
                    if row < n:
                        ids[row] = trace_id
                cols["trace_id"] = pa.array(ids, pa.int64())
            parts.append(cols)
        for t, latency, nbytes, status, name in ok:
            m = len(t)
            parts.append(
                {
                    "t": pa.array(t),
                    "latency_ms": pa.array(latency),
                    "bytes": pa.repeat(pa.scalar(nbytes, ROW_TYPE.field("bytes").type), m),
                    "status": pa.repeat(pa.scalar(status, ROW_TYPE.field("status").type), m),
                    "error": pa.repeat(pa.scalar("", ROW_TYPE.field("error").type), m),
                    "name": pa.repeat(pa.scalar(name, ROW_TYPE.field("name").type), m),
                    "conn_new": pa.repeat(pa.scalar(False, pa.bool_()), m),
                    "intended_t": pa.nulls(m, pa.float64()),
                    "latency_corrected_ms": pa.nulls(m, pa.float64()),
                    "trace_id": pa.nulls(m, pa.int64()),
                }
            )
        if len(parts) == 1:
            cols = parts[0]
        else:
            cols = {name: pa.concat_arrays([part[name] for part in parts]) for name in parts[0]}
        cols["worker"] = pa.repeat(pa.scalar(self.worker, pa.string()), total)
        self.writer.write(cols)
        t = cols["t"].to_numpy()
        latency = cols["latency_ms"].to_numpy()
        ok_mask = pc.equal(cols["error"], "").to_numpy(zero_copy_only=False)
        self.hist_writer.write(_histogram(t, latency, ok_mask, self.worker))

    def _flush_unfinished(self) -> None:
        rows, self._unfinished = self._unfinished, []
        names = ("t", "dropped_t", "name", "phase", "conn_new", "intended_t", "trace_id", "after_stop")
        cols: dict[str, list] = {name: [row[i] for row in rows] for i, name in enumerate(names)}
        cols["worker"] = [self.worker] * len(rows)
        self.unfinished_writer.write(cols)

    def _ok_columns(self) -> list[tuple[np.ndarray, np.ndarray, int, int, str]]:
        """(start times, latencies, bytes, status, name) of what :meth:`ok_appenders` recorded; empties the arrays in place.

        What :attr:`ok_stats` has not taken yet of a ``stats=True`` pair is kept for its next :meth:`take_ok`.
        """
        out = []
        for key, (t, latency) in self._ok.items():
            if t:
                nbytes, status, name, stats = key
                t_all, latency_all = np.array(t, dtype=np.float64), np.array(latency, dtype=np.float64)
                out.append((t_all, latency_all, nbytes, status, name))
                if stats:
                    start = self._ok_taken.pop(key, 0)
                    if start < len(t_all):
                        self._ok_untaken.append((name, nbytes, t_all[start:], latency_all[start:]))
                del t[:]
                del latency[:]
        return out

    def start(self) -> None:
        def loop() -> None:
            while True:
                gevent.sleep(FLUSH_INTERVAL)
                self.flush()

        self._flusher = gevent.spawn(loop)

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
        self.flush()
        self._stopped = True
        self.writer.close()
        self.hist_writer.close()
        self.unfinished_writer.close()
