"""The lean load engine's client, without Locust: sockets, TLS, timeouts, recording.

:mod:`bench.load.lean` puts :class:`LeanClient` under a Locust ``User``; this
module imports no Locust (importing Locust monkey-patches the process), so
tests and tools can drive the client directly inside gevent greenlets.

Per request the client sends one pre-built ``GET``, reads the response, and
records it twice: exactly, into the run's
:class:`~bench.load.capture.RequestCapture` (one tuple; ``conn_new`` says the
request opened its connection, its latency then includes the connect and the
TLS handshake), and cheaply, as three list appends that :class:`StatsBatch`
later merges into Locust's statistics.

The usual response (HTTP/1.1, one Content-Length, nothing else that frames it)
arriving whole is recognised in scratch buffers without allocating
(:meth:`Connection._receive`); anything else goes to
:func:`bench.load.http1.read_response`. :meth:`LeanClient.request` does one
request from its greenlet; :meth:`LeanClient.burst` drives back-to-back
requests on a kept-alive connection from gevent's hub (the socket's read
callback records a response and sends the next request), which saves the two
greenlet switches per request.

I/O: one non-blocking socket per client, waited on with gevent's loop; TLS
through an ``ssl.SSLObject`` over memory BIOs, so a small request costs one
``send`` and one ``recv`` system call and raises no exception on the hot path.
Certificates are always verified against the given CA. Timeouts (connect =
TCP + TLS handshake; response = from sending the request to the end of the
response) are enforced by one :class:`Watchdog` greenlet per process.
Targets are restricted to 198.18.0.0/15 and loopback (:func:`check_target`).
"""

from __future__ import annotations

import _ssl
import errno
import ipaddress
import math
import os
import random
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import gevent
import numpy as np
from gevent import get_hub, getcurrent
from gevent.monkey import get_original

from .capture import RequestCapture, classify
from .http1 import HTTPError, IncompleteResponse, ProtocolError, complete_simple, read_response

# The unpatched classes: we do our own waiting on gevent's loop, so neither the
# socket nor the TLS object may block or yield by themselves.
_RawSocket = get_original("socket", "socket")
_SSLContext = get_original("ssl", "SSLContext")

#: Bytes asked of one recv() (below glibc's mmap threshold, several TLS records).
RECV_SIZE = 65536
#: A keep-alive connection idle this long is checked for a close by the server before reuse.
IDLE_CHECK = 1.0

_INF = math.inf
_time = time.time

# Scratch buffers of Connection.exchange, shared by every connection of the process:
# a connection uses them only between a wake-up and its next yield to the hub, and
# copies out whatever it has to keep across a yield. Receiving into them costs no
# 64 KiB allocation per recv() and per TLS read.
_SCRATCH_IN = bytearray(RECV_SIZE)
_SCRATCH_IN_VIEW = memoryview(_SCRATCH_IN)
_SCRATCH_PLAIN = bytearray(RECV_SIZE)
_SCRATCH_PLAIN_VIEW = memoryview(_SCRATCH_PLAIN)
_CLOSED_BEFORE_ANY_BYTE = "connection closed before any response byte"



class LeanTimeout(TimeoutError):
    """A connect or response timeout of the lean engine (error kind ``timeout``)."""


def error_kind(exc: BaseException | None, status: int = 0) -> str:
    """The capture error kind of a lean request's outcome ("" on success).

    Same kinds as :func:`bench.load.capture.classify`: refused, reset, timeout,
    tls, http_4xx, http_5xx, closed, other.
    """
    if exc is None:
        return classify(None, status)
    if isinstance(exc, IncompleteResponse):
        return "closed"
    if isinstance(exc, ProtocolError):
        return "other"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    return classify(exc, status)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LeanSettings:
    """What one lean user needs, parsed once per process."""

    scheme: str
    host: str
    port: int
    path: str
    name: str
    ca: str | None
    think_time: float = 0.0
    timeout: float = 5.0
    connect_timeout: float = 5.0
    requests_per_connection: int = 0
    resumption: bool = True
    server_name: str | None = None  # a user's own certificate: SNI, Host and the name checked (else the VIP's address)

    @classmethod
    def from_settings(cls, url: str, s: dict[str, Any]) -> LeanSettings:
        """Build from Locust's ``--host`` URL and the ``LBBENCH_LOAD`` settings."""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http"):
            raise ValueError(f"lean engine: host must be https:// or http://, got {url!r}")
        path = str(s.get("path", "/"))
        rpc = int(s.get("requests_per_connection", 0) or 0)
        if rpc < 0:
            raise ValueError(f"lean engine: requests_per_connection must be >= 0, got {rpc}")
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "",
            port=parts.port or (443 if parts.scheme == "https" else 80),
            path=path,
            name=str(s.get("name") or f"GET {path.split('?')[0]}"),
            ca=s.get("ca"),
            think_time=float(s.get("think_time", 0.0) or 0.0),
            timeout=float(s.get("timeout", 5.0)),
            connect_timeout=float(s.get("connect_timeout", s.get("timeout", 5.0))),
            requests_per_connection=rpc,
            resumption=bool(s.get("resumption", True)),
            server_name=s.get("server_name") or None,
        )

    def request_bytes(self, close: bool) -> bytes:
        """The request, ready to send (``Connection: close`` on a connection's last request)."""
        default = 443 if self.scheme == "https" else 80
        host = self.host if self.port == default else f"{self.host}:{self.port}"
        if self.server_name:
            host = self.server_name
        elif ":" in self.host and not self.host.startswith("["):
            host = f"[{self.host}]" if self.port == default else f"[{self.host}]:{self.port}"
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {host}", "User-Agent: lbbench-lean"]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def lab_tls_context(ca: str | None) -> ssl.SSLContext:
    """A client TLS context that verifies the server against ``ca`` only (never insecure)."""
    if not ca:
        raise ValueError("lean engine: no CA given (settings 'ca'); lbbench always verifies TLS")
    ctx = _SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname + CERT_REQUIRED
    # The C-level setter: ssl.SSLContext's Python property recurses once gevent has patched ssl.
    _ssl._SSLContext.minimum_version.__set__(ctx, ssl.TLSVersion.TLSv1_2)
    ctx.load_verify_locations(cafile=ca)
    return ctx


# --------------------------------------------------------------------------- connections


class Connection:
    """One client connection (TLS through memory BIOs, or plain TCP), driven by gevent's loop.

    Blocking points (connect, handshake, waiting for bytes) wait on gevent I/O
    watchers; they are interrupted by the process :class:`Watchdog` when their
    deadline passes.
    """

    __slots__ = (
        "_hub",
        "_sock_recv",
        "_sock_recv_into",
        "_sock_send",
        "_switch",
        "_tls",
        "_usual",
        "buf",
        "inc",
        "last_used",
        "obj",
        "out",
        "requests",
        "rw",
        "sock",
        "ww",
    )

    def __init__(self, addr: tuple[str, int], ctx: ssl.SSLContext | None, server_hostname: str | bytes, session: ssl.SSLSession | None):
        self._hub = get_hub()
        # A connection is only ever used by the greenlet that opened it.
        self._switch = getcurrent().switch
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = _RawSocket(family, socket.SOCK_STREAM)
        self.sock = sock
        self.obj = None
        self.inc = self.out = None
        self.rw = self.ww = None
        self.buf = b""
        self.requests = 0
        self.last_used = 0.0
        # (head, status, response length, body length) of the last usual response
        # (see exchange): a response with the same head and length is the same kind.
        self._usual: tuple[bytes, int, int, int] | None = None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop = self._hub.loop
            self.rw = loop.io(sock.fileno(), 1)
            self.ww = loop.io(sock.fileno(), 2)
            self._sock_recv = sock.recv
            self._sock_recv_into = sock.recv_into
            self._sock_send = sock.send
            err = sock.connect_ex(addr)
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                self._hub.wait(self.ww)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))  # ConnectionRefusedError etc. by errno
            if ctx is not None:
                self.inc = ssl.MemoryBIO()
                self.out = ssl.MemoryBIO()
                self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname, session=session)
                # The C object under ssl.SSLObject: same methods, one Python frame less per call.
                self._tls = getattr(self.obj, "_sslobj", self.obj)
                self._handshake()
            else:
                self._tls = None
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ raw I/O

    def _wait_readable(self) -> None:
        """Park this greenlet until the socket is readable.

        gevent's ``hub.wait`` wraps the same in a Waiter object per call; starting
        the watcher with the greenlet's own switch is cheaper and does the same.
        A wake-up by anything else is harmless: callers retry on EAGAIN.
        """
        rw = self.rw
        rw.start(self._switch)
        try:
            self._hub.switch()
        finally:
            rw.stop()

    def _fill(self) -> None:
        """Wait until the socket is readable and move what arrived into the TLS input BIO."""
        for _ in range(1 << 16):  # bounded: spurious wake-ups are rare
            self._wait_readable()
            try:
                data = self._sock_recv(RECV_SIZE)
            except BlockingIOError:
                continue
            if data:
                self.inc.write(data)
            else:
                self.inc.write_eof()
            return
        raise LeanTimeout("socket never became readable")

    def _flush(self) -> None:
        """Send everything the TLS object has produced."""
        data = self.out.read()
        if data:
            self._send_all(data)

    def _send_all(self, data: bytes) -> None:
        try:
            sent = self._sock_send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        for _ in range(1 << 20):  # bounded: each round waits for room in the socket buffer
            if sent >= len(data):
                return
            self._hub.wait(self.ww)
            try:
                sent += self._sock_send(view[sent:])
            except BlockingIOError:
                pass
        raise LeanTimeout("could not send the request")

    def _handshake(self) -> None:
        obj = self._tls  # the C object: no Python wrapper frame per step
        for _ in range(64):  # a TLS handshake takes a handful of round trips
            try:
                obj.do_handshake()
                # The client's last handshake flight goes out with the first request.
                return
            except ssl.SSLWantReadError:
                self._flush()
                if self.inc.eof:
                    raise ssl.SSLEOFError("connection closed during the TLS handshake") from None
                self._fill()
        raise ssl.SSLError("TLS handshake did not finish in 64 rounds")

    # ------------------------------------------------------------------ HTTP I/O

    def try_send(self, data: bytes) -> bytes:
        """Encrypt (when TLS) and send what the socket takes now, without waiting; returns what it did not take."""
        tls = self._tls
        if tls is not None:
            tls.write(data)
            data = self.out.read()
        try:
            sent = self._sock_send(data)
        except BlockingIOError:
            sent = 0
        return b"" if sent == len(data) else data[sent:]

    def send(self, data: bytes) -> None:
        """Send request bytes (encrypted when TLS)."""
        rest = self.try_send(data)
        if rest:
            # Rare: the socket buffer is full; send the rest as room appears.
            self._send_all(rest)

    def recv(self) -> bytes:
        """The next bytes of the response stream; ``b""`` when the server has closed.

        This is the hot path: the waiting of :meth:`_fill` is inlined.
        """
        tls = self._tls
        if tls is None:
            for _ in range(1 << 16):
                self._wait_readable()
                try:
                    return self._sock_recv(RECV_SIZE)
                except BlockingIOError:
                    continue
            raise LeanTimeout("socket never became readable")
        inc = self.inc
        # TLS never holds decrypted bytes back here: every read asks for more than a
        # record (16 KiB) can carry. So an empty input BIO means nothing is buffered.
        if not inc.pending:
            # The usual case right after a request: wait first, so the read below
            # finds a whole record and raises no SSLWantReadError.
            if inc.eof:
                return b""
            rw = self.rw
            for _ in range(1 << 16):  # bounded: spurious wake-ups are rare
                rw.start(self._switch)
                try:
                    self._hub.switch()
                finally:
                    rw.stop()
                try:
                    data = self._sock_recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                if data:
                    inc.write(data)
                else:
                    inc.write_eof()
                break
        for _ in range(1 << 20):  # bounded: each round consumes bytes or waits
            try:
                return tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                if inc.eof:
                    return b""
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
        return b""

    def exchange(self, request: bytes) -> tuple[int, int, bool]:
        """Send ``request`` and read its response: ``(status, body bytes, keep-alive)``.

        The usual response takes :meth:`_receive`'s fast path; everything else
        (a response in several pieces, chunked, ``Connection: close``, interim
        responses, anything malformed, a close) goes to
        :func:`~bench.load.http1.read_response` with the bytes received so
        far, and gets the same answer it would have got without that path.
        """
        self.send(request)
        if self.buf or (self._tls is not None and self.inc.pending):
            # Bytes from before this request come first. (After an EOF the socket is
            # readable: the read below sees it at once and the general path reports it.)
            return self._read_rest(self.buf)
        rw = self.rw
        rw.start(self._switch)
        try:
            self._hub.switch()
        finally:
            rw.stop()
        got = self._receive()
        if type(got) is tuple:
            return got[0], got[1], True
        return self._read_rest(got or b"")

    def _receive(self) -> tuple[int, int] | bytes | None:
        """Read what the socket has after a wake-up; never waits.

        Returns ``(status, body bytes)`` when that is exactly one usual response
        (which keeps the connection); else the bytes of the response received so
        far, to read on with :meth:`_read_rest` (``b""`` when a TLS record is not
        complete yet, or after the end of the stream); None when the socket had
        nothing (a spurious wake-up). Raises :class:`IncompleteResponse` when the
        server closed before any byte of the response.

        Bytes are received and decrypted into the process's scratch buffers and
        recognised in place by :func:`~bench.load.http1.complete_simple`; a
        response with the same head and length as the connection's last usual
        one is recognised by one ``startswith``. Nothing is allocated for a
        usual response.
        """
        try:
            n = self._sock_recv_into(_SCRATCH_IN)
        except BlockingIOError:
            return None
        tls = self._tls
        if tls is None:
            if not n:
                raise IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False)
            plain, view, k = _SCRATCH_IN, _SCRATCH_IN_VIEW, n
        else:
            inc = self.inc
            if not n:
                inc.write_eof()
                return b""
            inc.write(_SCRATCH_IN_VIEW[:n])
            try:
                k = tls.read(RECV_SIZE, _SCRATCH_PLAIN)
            except ssl.SSLWantReadError:
                return b""  # the record is not complete yet
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False) from None
            plain, view = _SCRATCH_PLAIN, _SCRATCH_PLAIN_VIEW
            if inc.pending:
                # More records came with this one: not one lone response, read on in order.
                return bytes(view[:k])
        usual = self._usual
        if usual is not None and k == usual[2] and plain.startswith(usual[0]):
            # The head is byte for byte one that complete_simple accepted, and ends at its
            # first CRLF CRLF, so this response has the same status and framing.
            return usual[1], usual[3]
        simple = complete_simple(plain, k)
        if simple is not None:
            status, head, length = simple
            self._usual = (bytes(view[:head]), status, k, length)
            return status, length
        return bytes(view[:k])

    def _read_rest(self, buf: bytes) -> tuple[int, int, bool]:
        """The general way: :func:`read_response` from ``buf`` on, through :meth:`recv`."""
        response, self.buf = read_response(self.recv, buf)
        return response.status, response.body_bytes, response.keep_alive

    def closed_by_peer(self) -> bool:
        """True when the server has closed (or sent something unasked, such as a TLS alert) while the connection idled."""
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False  # nothing to read: still open
        except OSError:
            pass
        return True

    @property
    def session(self) -> ssl.SSLSession | None:
        return self.obj.session if self.obj is not None else None

    @property
    def session_reused(self) -> bool:
        return bool(self.obj is not None and self.obj.session_reused)

    def close(self) -> None:
        """Close without a TLS close_notify (as a load generator would: cheap, and the server does not care)."""
        for w in (self.rw, self.ww):
            if w is not None:
                w.stop()
                w.close()
        self.rw = self.ww = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None



LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")


def check_target(host: str) -> None:
    """Refuse any target that is not a lab address (198.18.0.0/15) or loopback (ValueError)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"lbbench only sends load to lab addresses, got host {host!r}") from None
    if not (addr in LAB_NETWORK or addr.is_loopback):
        raise ValueError(f"lbbench only sends load to 198.18.0.0/15 or loopback, got {addr}")


# --------------------------------------------------------------------------- per-process helpers


class Watchdog:
    """Interrupts lean users whose connect or response deadline has passed.

    One greenlet per process checks every ``tick`` seconds; a timed-out user gets
    :class:`LeanTimeout` thrown into its greenlet from the hub, only if the same
    operation (sequence number) is still pending. That costs two attribute
    writes per request instead of a timer per wait.
    """

    def __init__(self) -> None:
        self.users: set[LeanClient] = set()
        self.tick = 0.5
        self._glet: gevent.Greenlet | None = None

    def add(self, user: LeanClient, timeout: float) -> None:
        self.users.add(user)
        self.tick = min(self.tick, max(0.02, timeout / 10))
        if self._glet is None or self._glet.dead:
            self._glet = gevent.spawn(self._run)

    def discard(self, user: LeanClient) -> None:
        self.users.discard(user)

    def _run(self) -> None:
        loop = get_hub().loop
        while self.users:
            gevent.sleep(self.tick)
            now = _time()
            for user in list(self.users):
                if user._deadline < now:
                    loop.run_callback(self._fire, user, user._op)

    @staticmethod
    def _fire(user: LeanClient, op: int) -> None:
        glet = user._glet
        if user._op == op and user._deadline < _time() and glet is not None and not glet.dead:
            user._deadline = _INF
            what = "connect" if user._deadline_what == "connect" else "response"
            limit = user._s.connect_timeout if what == "connect" else user._s.timeout
            glet.throw(LeanTimeout(f"{what} timeout ({limit:g}s)"))


class StatsBatch:
    """Requests aggregated per name in one process, merged into Locust's stats in batches.

    Per request: three list appends (plus one per failure). Per flush: numpy
    turns the lists into Locust's rounded response-time histogram, per-second
    counts and totals, and :meth:`locust.stats.StatsEntry.extend` merges them,
    as Locust's master merges its workers' reports.
    """

    METHOD = "GET"

    def __init__(self) -> None:
        self.names: dict[str, tuple[list[float], list[float], list[int], list[tuple[float, str]]]] = {}

    def lists(self, name: str) -> tuple[list[float], list[float], list[int], list[tuple[float, str]]]:
        """(start times, latencies ms, body bytes, failures) of ``name``: append to them."""
        lists = self.names.get(name)
        if lists is None:
            lists = self.names[name] = ([], [], [], [])
        return lists

    def flush(self, stats: Any) -> int:
        """Merge everything gathered since the last flush into ``stats``; returns the request count.

        The lists are emptied in place (users hold references to them); nothing
        here yields to other greenlets, so no request lands half-way.
        """
        from locust.stats import StatsError  # only ever called inside a Locust process

        total = 0
        for name, lists in self.names.items():
            n = len(lists[0])
            if n == 0:
                continue
            # Converted before the lists are emptied in place (users hold references to them).
            t = np.array(lists[0], dtype=float)
            lat = np.array(lists[1], dtype=float)
            nbytes = sum(lists[2])
            failures = list(lists[3])
            for x in lists:
                x.clear()
            entry = self._entry(stats, name, t, lat, nbytes, failures)
            stats.entries[(name, self.METHOD)].extend(entry)
            stats.total.extend(entry)
            for when, error in failures:
                key = StatsError.create_key(self.METHOD, name, error)
                err = stats.errors.get(key)
                if err is None:
                    err = stats.errors[key] = StatsError(self.METHOD, name, error)
                err.occurrences += 1
                err.first_seen = when if err.first_seen is None else min(err.first_seen, when)
                err.last_seen = when if err.last_seen is None else max(err.last_seen, when)
            total += n
        return total

    def _entry(self, stats: Any, name: str, t: np.ndarray, lat: np.ndarray, nbytes: int, failures: list) -> Any:
        from locust.stats import StatsEntry

        entry = StatsEntry(stats, name, self.METHOD, use_response_times_cache=False)
        entry.num_requests = len(t)
        entry.num_failures = len(failures)
        entry.total_response_time = float(lat.sum())
        entry.min_response_time = float(lat.min())
        entry.max_response_time = float(lat.max())
        entry.total_content_length = int(nbytes)
        entry.start_time = float(t.min())
        entry.last_request_timestamp = float((t + lat / 1000.0).max())
        entry.response_times = _bucket_counts(lat)
        secs = np.floor(t).astype(np.int64)
        first = int(secs.min())
        if int(secs.max()) - first < 4096:
            counts = np.bincount(secs - first)  # a flush spans a second or so: linear, no sort
            seen = np.flatnonzero(counts)
            entry.num_reqs_per_sec = dict(zip((seen + first).tolist(), counts[seen].tolist(), strict=True))
        else:
            keys, n = np.unique(secs, return_counts=True)
            entry.num_reqs_per_sec = dict(zip(keys.tolist(), n.tolist(), strict=True))
        if failures:
            fsecs, fcounts = np.unique(np.floor([w for w, _ in failures]).astype(np.int64), return_counts=True)
            entry.num_fail_per_sec = dict(zip(fsecs.tolist(), fcounts.tolist(), strict=True))
        return entry


def _bucket_counts(lat: np.ndarray) -> dict[int, int]:
    """Locust's rounded response-time histogram ({bucket ms: count}) of ``lat``, vectorised."""
    from locust import stats as locust_stats

    if locust_stats.bucket_response_time.__module__ != "locust.stats" or locust_stats.bucket_response_time.__name__ != "bucket_response_time":
        # Someone replaced Locust's bucketing (a documented hook): honour it.
        out: dict[int, int] = {}
        for value in lat.tolist():
            key = locust_stats.bucket_response_time(value)
            out[key] = out.get(key, 0) + 1
        return out
    if lat.max() < 100:
        # the usual case: whole milliseconds (round half to even, as Python's round)
        counts = np.bincount(np.round(lat).astype(np.int64))
        keys = np.flatnonzero(counts)
        return dict(zip(keys.tolist(), counts[keys].tolist(), strict=True))
    digits = np.select([lat < 100, lat < 1000, lat < 10000], [0, -1, -2], -3)
    scale = 10.0 ** (-digits)
    buckets = (np.round(lat / scale) * scale).astype(np.int64)
    keys, counts = np.unique(buckets, return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))



class LeanClient:
    """One connection's worth of client: connects, sends, reads, records. No Locust in here.

    :class:`LeanHttpsUser` runs one per user; tests drive it directly. The
    :class:`Watchdog` interrupts it when ``_deadline`` passes while it waits.
    """

    def __init__(
        self,
        s: LeanSettings,
        ctx: ssl.SSLContext | None,
        lists: tuple[list, list, list, list] | None = None,
        capture: RequestCapture | None = None,
    ):
        check_target(s.host)
        self._s = s
        self._ctx = ctx
        self._conn: Connection | None = None
        self._session: ssl.SSLSession | None = None
        self._req_keep = s.request_bytes(close=False)
        self._req_close = s.request_bytes(close=True)
        self._addr = (s.host, s.port)
        self._rpc = s.requests_per_connection
        self._timeout = s.timeout
        self._name = s.name
        # encoded once: ssl would run the (Python) IDNA codec on every connection
        self._hostname = (s.server_name or s.host).encode("idna")
        self._lists = lists if lists is not None else ([], [], [], [])
        self._tracing = 0
        self.capture = capture
        self._deadline = _INF
        self._deadline_what = ""
        self._op = 0
        self._glet: Any = None
        # burst(): the greenlet to wake, the request in flight, how many may still be sent, until when
        self._wake: Any = None
        self._t0 = 0.0
        self._left = 0
        self._until = 0.0
        #: connections opened, and how many of them resumed a TLS session
        self.connections = 0
        self.resumed = 0

    @property
    def capture(self) -> Any:
        """Where requests are recorded: a :class:`RequestCapture`, anything with its ``record()``, or None."""
        return self._capture

    @capture.setter
    def capture(self, capture: Any) -> None:
        # One tuple appended to the capture's list per request when it offers that
        # (RequestCapture.record_row); otherwise its record().
        self._capture = capture
        if capture is None:
            self._record_row = None
        else:
            self._record_row = getattr(capture, "record_row", None) or (lambda row, record=capture.record: record(*row))
        # 1 in N requests carries X-Lbbench-Id (bench/load/capture.py Tracer): a countdown, and the id in flight
        self._tracer = getattr(capture, "tracer", None)
        every = self._tracer.countdown() if self._tracer is not None else -1
        self._trace_left = random.randint(1, every) if every > 0 else -1  # spread the users' traced requests

    def close(self) -> None:
        """Close the connection, if one is open."""
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self) -> float:
        """Send one request and record it; returns the time it finished (epoch seconds)."""
        conn = self._conn
        t0 = _time()
        if conn is None or self._rpc or t0 - conn.last_used > IDLE_CHECK:
            return self._request(t0)
        # The hot path: the next request on a kept-alive connection used within IDLE_CHECK.
        self._op += 1
        self._deadline = t0 + self._timeout
        conn.requests += 1
        self._trace_left -= 1
        try:
            status, nbytes, keep = conn.exchange(self._req_keep if self._trace_left else self._traced(self._req_keep))
        except Exception as e:  # noqa: BLE001 - every failure is a recorded request (GreenletExit passes)
            self._deadline = _INF
            self._drop()
            return self._record(t0, _time(), False, 0, 0, e)
        t1 = _time()
        self._deadline = _INF
        if keep:
            conn.last_used = t0
        else:
            self._drop()
        if status >= 400:
            return self._record(t0, t1, False, status, nbytes, None)
        latency = (t1 - t0) * 1000.0
        record_row = self._record_row
        if record_row is not None:
            if self._tracing:
                self._mark_traced()
            record_row((t0, latency, nbytes, status, "", self._name, False))
        ts, ms, nb, _ = self._lists
        ts.append(t0)
        ms.append(latency)
        nb.append(nbytes)
        return t1

    def _traced(self, request: bytes) -> bytes:
        """``request`` with the next trace id in it (1 in N requests; see Tracer)."""
        tracer = self._tracer
        self._tracing = tracer.take()
        self._trace_left = tracer.countdown()
        return request[:-2] + tracer.header_line(self._tracing) + b"\r\n"

    def _mark_traced(self) -> None:
        """The row about to be recorded is the traced request in flight."""
        capture = self._capture
        if capture is not None and hasattr(capture, "mark_traced"):
            capture.mark_traced(self._tracing)
        self._tracing = 0

    def burst(self, count: int, until: float) -> float:
        """Up to ``count`` requests back to back, ending after the first that finishes past ``until``.

        Records what ``count`` calls of :meth:`request` would (``until`` in
        epoch seconds, like the time :meth:`request` returns); returns when the
        last request finished (0.0 when ``count`` < 1).

        On a kept-alive connection the requests are driven from gevent's hub:
        the socket's read watcher calls :meth:`_on_readable`, which reads the
        response, records it and sends the next request, so the calling greenlet
        is not switched to and back per request (the switches cost more than
        all the rest of our Python per request). The greenlet takes over for
        everything else: connecting, a response that needs the general reader,
        an error, a socket buffer that is full, the end of the burst. The
        watchdog's timeouts and ``GreenletExit`` reach it as with :meth:`request`.
        """
        glet = self._glet = getcurrent()  # the greenlet the watchdog interrupts
        self._wake = glet.switch
        t1 = 0.0
        left = count
        while left > 0:
            conn = self._conn
            if (
                conn is None
                or self._rpc
                or conn.buf
                or (conn._tls is not None and conn.inc.pending)
                or _time() - conn.last_used > IDLE_CHECK
            ):
                t1 = self.request()
                left -= 1
            else:
                t1 = self._drive(conn, left, until)
                left = self._left
            if t1 > until:
                break
        return t1

    def _drive(self, conn: Connection, count: int, until: float) -> float:
        """Up to ``count`` requests on ``conn``, driven by its read watcher (see :meth:`burst`).

        Returns when the last one finished; ``self._left`` says how many of
        ``count`` were not sent.
        """
        self._left = count - 1
        self._until = until
        self._deadline_what = "response"
        t0 = self._t0 = _time()
        self._op += 1
        self._deadline = t0 + self._timeout
        conn.requests += 1
        rw = conn.rw
        hub = conn._hub
        try:
            self._trace_left -= 1
            conn.send(self._req_keep if self._trace_left else self._traced(self._req_keep))
            while True:
                rw.start(self._on_readable)
                try:
                    got = hub.switch()  # until _on_readable hands over (or the watchdog throws)
                finally:
                    rw.stop()
                if type(got) is float:
                    return got  # the burst is over; _on_readable recorded the last response
                if type(got) is not _Unsent:
                    break
                conn._send_all(got.data)  # the socket buffer was full: send the rest from here
            if isinstance(got, Exception):
                raise got
            # The response in flight needs the general reader.
            status, nbytes, keep = conn._read_rest(got)
        except Exception as e:  # noqa: BLE001 - every failure is a recorded request (GreenletExit passes)
            self._deadline = _INF
            self._drop()
            return self._record(self._t0, _time(), False, 0, 0, e)
        t1 = _time()
        self._deadline = _INF
        if keep:
            conn.last_used = self._t0
        else:
            self._drop()
        return self._record(self._t0, t1, False, status, nbytes, None)

    def _on_readable(self) -> None:
        """The read watcher's callback during :meth:`_drive`; runs in the hub and never waits.

        A usual response is recorded here and the next request sent; anything
        else is handed to the driving greenlet (switched to with what it needs:
        the time the burst ended, the bytes received so far, an exception, or
        the unsent rest of a request).
        """
        conn = self._conn
        try:
            got = conn._receive()
            if type(got) is not tuple:
                if got is None:
                    return  # a spurious wake-up: keep waiting
                handoff: Any = got
            else:
                t1 = _time()
                t0 = self._t0
                status, nbytes = got
                conn.last_used = t0
                if status >= 400:
                    self._record(t0, t1, False, status, nbytes, None)
                else:
                    latency = (t1 - t0) * 1000.0
                    record_row = self._record_row
                    if record_row is not None:
                        if self._tracing:
                            self._mark_traced()
                        record_row((t0, latency, nbytes, status, "", self._name, False))
                    ts, ms, nb, _ = self._lists
                    ts.append(t0)
                    ms.append(latency)
                    nb.append(nbytes)
                if self._left <= 0 or t1 > self._until:
                    self._deadline = _INF
                    handoff = t1
                else:
                    # The next request, sent from here (Connection.send without its waiting).
                    self._left -= 1
                    t0 = self._t0 = _time()
                    self._op += 1
                    self._deadline = t0 + self._timeout
                    conn.requests += 1
                    self._trace_left -= 1
                    rest = conn.try_send(self._req_keep if self._trace_left else self._traced(self._req_keep))
                    if not rest:
                        return
                    handoff = _Unsent(rest)
        except Exception as e:  # noqa: BLE001 - the greenlet records it as the request's error
            handoff = e
        self._wake(handoff)

    def _request(self, t0: float) -> float:
        """A request that opens a connection, follows an idle time, or is a connection's last."""
        s = self._s
        conn = self._conn
        conn_new = False
        status = 0
        nbytes = 0
        exc: BaseException | None = None
        self._op += 1
        try:
            if conn is not None and (t0 - conn.last_used) > IDLE_CHECK and conn.closed_by_peer():
                self._drop()
                conn = None
            if conn is None:
                self._glet = getcurrent()  # the greenlet the watchdog interrupts
                self._deadline_what = "connect"
                self._deadline = t0 + s.connect_timeout
                conn = self._conn = Connection(self._addr, self._ctx, self._hostname, self._session if s.resumption else None)
                conn_new = True
                self.connections += 1
                if conn.session_reused:
                    self.resumed += 1
                self._deadline = _time() + s.timeout
            else:
                self._deadline = t0 + s.timeout
            self._deadline_what = "response"
            conn.requests += 1
            last = self._rpc and conn.requests >= self._rpc
            req = self._req_close if last else self._req_keep
            self._trace_left -= 1
            status, nbytes, keep = conn.exchange(req if self._trace_left else self._traced(req))
            self._deadline = _INF
            if conn_new and s.resumption and conn.obj is not None:
                # TLS 1.3 tickets arrive after the handshake: take the session now.
                self._session = conn.obj.session
            if last or not keep:
                self._drop()
            else:
                conn.last_used = t0
        except Exception as e:  # noqa: BLE001 - every failure is a recorded request (GreenletExit passes)
            self._deadline = _INF
            exc = e
            self._drop()
        return self._record(t0, _time(), conn_new, status, nbytes, exc)

    def _record(self, t0: float, t1: float, conn_new: bool, status: int, nbytes: int, exc: BaseException | None) -> float:
        """Record a request into the capture and the statistics lists; returns ``t1``."""
        latency = (t1 - t0) * 1000.0
        error = "" if exc is None and status < 400 else error_kind(exc, status)
        record_row = self._record_row
        if record_row is not None:
            if self._tracing:
                self._mark_traced()
            record_row((t0, latency, nbytes, status, error, self._name, conn_new))
        ts, ms, nb, failures = self._lists
        ts.append(t0)
        ms.append(latency)
        nb.append(nbytes)
        if error:
            failures.append((t1, _failure_text(error, exc, status)))
        return t1


class _Unsent(NamedTuple):
    """The bytes of a request the socket did not take (its buffer was full)."""

    data: bytes


def _failure_text(kind: str, exc: BaseException | None, status: int) -> str:
    """A bounded error text for Locust's failure table (no addresses or counters in it)."""
    if exc is None:
        return f"{kind}: HTTP {status}"
    if isinstance(exc, HTTPError | LeanTimeout):
        return f"{kind}: {type(exc).__name__}"
    return f"{kind}: {type(exc).__name__}" + (f" [errno {exc.errno}]" if isinstance(exc, OSError) and exc.errno else "")
