"""Per-request capture: every request Locust reports lands in ``samples/requests/``.

One row per request, timed on the host's wall clock like every other sample::

    t           float64  request start, seconds since the epoch
    latency_ms  float64  time to the full response (or to the error)
    bytes       int64    response body bytes
    status      int32    HTTP status; 0 when no response arrived
    error       string   "" on success, else an error kind (see ``classify``)
    name        string   request name (Locust's)
    worker      string   host:pid of the Locust process
    conn_new    bool     the request opened a new connection (null when the engine cannot tell)

Alongside, ``samples/latency_hist/`` holds one mergeable latency histogram
(:mod:`bench.analysis.histogram`) per worker per second of successful requests::

    t           int64    second (floor of the request start)
    worker      string
    bucket      int32    histogram bucket
    count       int64

Rows are buffered in memory for at most ``FLUSH_INTERVAL`` seconds, then written
as one chunk (see :mod:`bench.collect.store`).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from pathlib import Path

import gevent
import numpy as np
import pyarrow as pa

from ..analysis.histogram import buckets_of
from ..collect.store import ChunkWriter

FLUSH_INTERVAL = 1.0
TABLE = "requests"

SCHEMA = pa.schema(
    [
        ("t", pa.float64()),
        ("latency_ms", pa.float64()),
        ("bytes", pa.int64()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("name", pa.string()),
        ("worker", pa.string()),
        ("conn_new", pa.bool_()),
    ]
)

HIST_TABLE = "latency_hist"
HIST_SCHEMA = pa.schema(
    [
        ("t", pa.int64()),
        ("worker", pa.string()),
        ("bucket", pa.int32()),
        ("count", pa.int64()),
    ]
)

#: Error kinds, in the words of the field.
ERROR_KINDS = ("refused", "reset", "timeout", "tls", "http_4xx", "http_5xx", "closed", "other")


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
    while seen < 5 and not isinstance(exc, OSError) and (exc.__cause__ or exc.__context__):
        exc = exc.__cause__ or exc.__context__
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
    t = np.asarray(cols["t"], dtype=float)
    ok = np.asarray([e == "" for e in cols["error"]], dtype=bool)
    if not ok.any():
        return {}
    seconds = np.floor(t[ok]).astype(np.int64)
    buckets = buckets_of(np.asarray(cols["latency_ms"], dtype=float)[ok])
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


class RequestCapture:
    """Buffers request events and flushes them to chunk files once per second."""

    def __init__(self, run_dir: Path):
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.writer = ChunkWriter(run_dir, TABLE, f"{os.getpid()}", SCHEMA)
        self.hist_writer = ChunkWriter(run_dir, HIST_TABLE, f"{os.getpid()}", HIST_SCHEMA)
        self._reset()
        self._flusher: gevent.Greenlet | None = None

    def _reset(self) -> None:
        self.cols: dict[str, list] = {name: [] for name in SCHEMA.names}

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
        cols = self.cols
        cols["t"].append(t)
        cols["latency_ms"].append(latency_ms)
        cols["bytes"].append(nbytes)
        cols["status"].append(status)
        cols["error"].append(error)
        cols["name"].append(name)
        cols["worker"].append(self.worker)
        cols["conn_new"].append(conn_new)

    def on_request(self, request_type, name, response_time, response_length, response=None, exception=None, start_time=None, **_):
        """Locust ``events.request`` listener."""
        status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
        self.record(
            float(start_time) if start_time else 0.0,
            float(response_time or 0.0),
            int(response_length or 0),
            status,
            classify(exception, status),
            str(name),
        )

    def flush(self) -> None:
        cols = self.cols
        self._reset()
        self.writer.write(cols)
        self.hist_writer.write(histogram_columns(cols, self.worker))

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
