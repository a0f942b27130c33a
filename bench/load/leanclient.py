"""The lean load engine's client, without Locust: sockets, TLS, timeouts, recording.

:mod:`bench.load.lean` puts :class:`LeanClient` under a Locust ``User``; this
module imports no Locust (importing Locust monkey-patches the process), so
tests and tools can drive the client directly inside gevent greenlets.

Per request the client sends one pre-built ``GET``, reads the response, and
records it twice: exactly, into the run's
:class:`~bench.load.capture.RequestCapture` (one tuple; ``conn_new`` says the
request opened its connection, its latency then includes the connect and the
TLS handshake), and cheaply, as three list appends that :class:`StatsBatch`
later merges into Locust's statistics (a keep-alive success of the usual kind:
two float appends to the capture's typed arrays, which a tapped
:class:`StatsBatch` takes as the statistics too).

The usual response (HTTP/1.1, one Content-Length, nothing else that frames it)
arriving whole is recognised in scratch buffers without allocating
(:meth:`Connection._receive`); on the keep-alive hot path, a response byte for
byte the client's usual one is recognised by one compare of two bytes objects
(:meth:`LeanClient._on_readable`); anything else goes to
:func:`bench.load.http1.read_response`.

Every request is driven from gevent's hub: the socket's I/O callbacks
connect, step the TLS handshake, send the request, record the response and
start the next request or connection, while the greenlet that asked for them
(its :class:`Owner`) stays parked; it wakes only for what needs waiting (the
general reader, a full socket buffer) and at the end. That saves two greenlet
switches per request and per handshake step, and it is the same path for
keep-alive bursts (:meth:`LeanClient.burst`), single requests
(:meth:`LeanClient.request`), the rate models' slots and held connections
(:meth:`LeanClient.start`).

I/O: one non-blocking socket per client, waited on with gevent's loop; TLS
on that socket (the C object under ``ssl.SSLSocket``), so a small request costs
one C call to send it (encrypt + ``send``) and one to read its response
(``recv`` + decrypt), and raises no exception on the hot path.
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
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import gevent
import numpy as np
from gevent import get_hub, getcurrent
from gevent.monkey import get_original

from . import ssltune
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
#: A connection the server is closing (it said so) is closed when its end arrives, or after this long.
LINGER = 1.0

_INF = math.inf
_time = time.time
_write = os.write

# Scratch buffers of Connection._receive (and Closer), shared by every connection of the process:
# a connection uses them only between a wake-up and its next yield to the hub, and
# copies out whatever it has to keep across a yield. Receiving into them costs no
# 64 KiB allocation per recv() and per TLS read.
_SCRATCH_IN = bytearray(RECV_SIZE)
_SCRATCH_IN_VIEW = memoryview(_SCRATCH_IN)
_SCRATCH_PLAIN = bytearray(RECV_SIZE)
_SCRATCH_PLAIN_VIEW = memoryview(_SCRATCH_PLAIN)
_CLOSED_BEFORE_ANY_BYTE = "connection closed before any response byte"

# Connection.handshake(): the handshake is done, or what it waits for
HANDSHAKE_DONE = 0
WANT_READ = 1
WANT_WRITE = 2


class LeanTimeout(TimeoutError):
    """A connect or response timeout of the lean engine (error kind ``timeout``)."""

    #: the client whose request timed out (set by the :class:`Watchdog`)
    client: Any = None


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

#: Largest POST body a request may carry (``load.request_body``; the scenario field has the same bound).
MAX_REQUEST_BODY = 16 * 1024 * 1024


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
    request_body: int = 0  # bytes of a POST body per request; 0 = GET

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
            request_body=_body_size(s.get("request_body", 0)),
        )

    def request_bytes(self, close: bool) -> bytes:
        """The request, ready to send (``Connection: close`` on a connection's last request)."""
        default = 443 if self.scheme == "https" else 80
        host = self.host if self.port == default else f"{self.host}:{self.port}"
        if self.server_name:
            host = self.server_name
        elif ":" in self.host and not self.host.startswith("["):
            host = f"[{self.host}]" if self.port == default else f"[{self.host}]:{self.port}"
        method = "POST" if self.request_body else "GET"
        lines = [f"{method} {self.path} HTTP/1.1", f"Host: {host}", "User-Agent: lbbench-lean"]
        if self.request_body:
            lines += [f"Content-Length: {self.request_body}", "Content-Type: application/octet-stream"]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + b"x" * self.request_body


def _body_size(value: Any) -> int:
    size = int(value or 0)
    if not 0 <= size <= MAX_REQUEST_BODY:
        raise ValueError(f"lean engine: request_body must be between 0 and {MAX_REQUEST_BODY} bytes, got {size}")
    return size


def _client_context(tls12: bool) -> ssl.SSLContext:
    ctx = _SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname + CERT_REQUIRED
    # The C-level setters: ssl.SSLContext's Python properties recurse once gevent has patched ssl.
    _ssl._SSLContext.minimum_version.__set__(ctx, ssl.TLSVersion.TLSv1_2)  # type: ignore[attr-defined]  # a C-level property
    if tls12:
        _ssl._SSLContext.maximum_version.__set__(ctx, ssl.TLSVersion.TLSv1_2)  # type: ignore[attr-defined]
    ssltune.tune_context(ctx)  # read-ahead: one read() per response
    return ctx


def lab_tls_context(ca: str | None, tls12: bool = False) -> ssl.SSLContext:
    """A client TLS context that verifies the server against ``ca`` only (never insecure); ``tls12``: at most TLS 1.2."""
    if not ca:
        raise ValueError("lean engine: no CA given (settings 'ca'); lbbench always verifies TLS")
    ctx = _client_context(tls12)
    ctx.load_verify_locations(cafile=ca)
    return ctx


class LabTrust:
    """How one load-generator process verifies its servers: against the run's CA, then against what that verified.

    Every TLS handshake is verified by OpenSSL. Until a server certificate has
    passed verification against the run's CA in this process, connections use
    :attr:`ca` (the CA is the only trust anchor). From then on they use
    :attr:`pinned`, whose trust store holds exactly the server certificates
    that passed, each a trust anchor by itself (``VERIFY_X509_PARTIAL_CHAIN``).
    On every handshake OpenSSL still checks that the certificate the server
    presents is one of those, byte for byte, that it is within its validity
    period and names the target address, and the server's signature over the
    handshake (which proves it holds the certificate's key). What it no longer
    repeats is the CA's signature over a certificate it has already checked:
    one ECDSA verification and the chain lookup, about a tenth of a full
    handshake's client CPU. A certificate :attr:`pinned` does not know (the
    server's certificate changed) is verified against the CA on a new
    connection (:class:`LeanClient` does that by itself) and pinned if it passes.
    """

    def __init__(self, ca: str | None, tls12: bool = False):
        self.ca = lab_tls_context(ca, tls12)
        self.pinned: ssl.SSLContext | None = None
        self._tls12 = tls12
        self._known: set[bytes] = set()

    def context(self) -> ssl.SSLContext:
        """The context for a new connection."""
        return self.pinned if self.pinned is not None else self.ca

    def learn(self, der: bytes) -> None:
        """Trust ``der`` by itself from now on: a server certificate that has just passed verification against the CA."""
        if der in self._known:
            return
        pinned = self.pinned
        if pinned is None:
            pinned = _client_context(self._tls12)
            flags = _ssl._SSLContext.verify_flags.__get__(pinned)  # type: ignore[attr-defined]  # a C-level property
            _ssl._SSLContext.verify_flags.__set__(pinned, flags | ssl.VERIFY_X509_PARTIAL_CHAIN)  # type: ignore[attr-defined]
        pinned.load_verify_locations(cadata=der)
        self._known.add(der)
        self.pinned = pinned


# --------------------------------------------------------------------------- connections


class Connection:
    """One client connection (TLS on the socket itself, or plain TCP) on gevent's loop.

    Made in steps that never wait, so that gevent's hub can drive them from
    I/O callbacks (:class:`LeanClient`): the constructor starts a non-blocking
    connect (``connecting``: wait until the socket is writable, then
    :meth:`connected`); :meth:`start_tls` and :meth:`handshake` (again each
    time the socket is ready for what it asked) do the TLS handshake.
    :meth:`open` does all of it from a greenlet, waiting as needed. The
    blocking helpers (:meth:`send`, :meth:`recv`, :meth:`_read_rest`) wait on
    gevent I/O watchers; the process :class:`Watchdog` interrupts them when
    their deadline passes.

    TLS runs on the non-blocking socket itself (``SSLContext._wrap_socket``,
    the C object under :class:`ssl.SSLSocket`): one C call both does the
    socket I/O and the TLS record work (``read`` = receive + decrypt, ``write``
    = encrypt + send), where memory BIOs took three or four calls each way.
    """

    __slots__ = (
        "_fd",
        "_hub",
        "_read",
        "_sock_recv",
        "_sock_recv_into",
        "_sock_send",
        "_tls",
        "_usual",
        "buf",
        "connecting",
        "last_used",
        "obj",
        "requests",
        "rw",
        "sock",
        "ww",
    )

    # gevent's watchers and the TLS object are untyped (Any); the socket and TLS object are None once closed / for plain TCP
    sock: Any
    obj: Any
    rw: Any
    ww: Any
    _tls: Any

    def __init__(self, addr: tuple[str, int]):
        self._hub = get_hub()
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = _RawSocket(family, socket.SOCK_STREAM)
        self.sock = sock
        self.obj = self._tls = None
        self.rw = self.ww = None
        self.buf = b""
        self.requests = 0
        self.last_used = 0.0
        # (head, response length, (status, body length, keep-alive), head length, the whole response) of
        # the last usual response (see _receive): a response with the same head and length is the same
        # kind, and _receive returns the same tuple for it (LeanClient tells kinds apart by identity).
        self._usual: tuple[bytes, int, tuple[int, int, bool], int, bytes] | None = None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop = self._hub.loop
            self.rw = loop.io(sock.fileno(), 1)
            self.ww = loop.io(sock.fileno(), 2)
            self._sock_recv = sock.recv
            #: read(n) -> up to n bytes of the response stream, decrypted (TLS) or as received: the
            #: keep-alive hot path's read (LeanClient._on_readable); raises what recv or the TLS read raises
            self._read = sock.recv
            self._sock_recv_into = sock.recv_into
            self._sock_send = sock.send
            # os.write(fd) parses its arguments several times faster than socket.send; -1 once closed
            self._fd = sock.fileno()
            err = sock.connect_ex(addr)
            self.connecting = err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY)
            if err and not self.connecting:
                raise OSError(err, os.strerror(err))  # ConnectionRefusedError etc. by errno
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, addr: tuple[str, int], ctx: ssl.SSLContext | None, server_hostname: str | bytes, session: ssl.SSLSession | None = None) -> Connection:
        """Connect (and handshake, with ``ctx``) from a greenlet, waiting as needed."""
        conn = cls(addr)
        try:
            if conn.connecting:
                conn._hub.wait(conn.ww)
            conn.connected()
            if ctx is not None:
                conn.start_tls(ctx, server_hostname, session)
                for _ in range(64):  # a TLS handshake takes a handful of round trips
                    state = conn.handshake()
                    if state == HANDSHAKE_DONE:
                        break
                    if state == WANT_READ:
                        conn._wait_readable()
                    else:
                        conn._hub.wait(conn.ww)
                else:
                    raise ssl.SSLError("TLS handshake did not finish in 64 rounds")
        except BaseException:
            conn.close()
            raise
        return conn

    # ------------------------------------------------------------------ steps that never wait

    def connected(self) -> None:
        """After the socket became writable: raise the connect's error, if any."""
        self.connecting = False
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | bytes, session: ssl.SSLSession | None, keep_buffers: bool = False) -> None:
        """Put a TLS client on the connection's socket (the handshake is :meth:`handshake`).

        ``server_hostname`` (SNI, and the name the certificate is checked
        against) as :meth:`ssl.SSLContext.wrap_socket` takes it: a ``str``,
        or IDNA-encoded ``bytes``. ``keep_buffers``: OpenSSL keeps its record
        buffers for the connection's life (:func:`~bench.load.ssltune.keep_buffers`;
        for connections that carry many requests, not for idle held ones).
        """
        if isinstance(server_hostname, bytes):
            server_hostname = server_hostname.decode("ascii")
        elif not server_hostname.isascii():  # (IDNA leaves an ASCII name as it is)
            server_hostname = server_hostname.encode("idna").decode("ascii")
        # What SSLContext.wrap_socket does under the Python-level SSLSocket (which would take over
        # the socket object): the C TLS object reads and writes this socket's file descriptor itself.
        self.obj = self._tls = ctx._wrap_socket(self.sock, False, server_hostname, owner=None, session=session)  # type: ignore[attr-defined]
        self._read = self._tls.read
        if keep_buffers:
            ssltune.keep_buffers(self._tls, ctx)

    def handshake(self) -> int:
        """One step of the TLS handshake: :data:`HANDSHAKE_DONE`, or what it waits for (:data:`WANT_READ`, :data:`WANT_WRITE`).

        Raises the handshake's errors (certificate, alert, the server closing:
        ``ssl.SSLEOFError``, a reset: ``ConnectionResetError``). The client's
        last flight is sent by the step that finishes it.
        """
        try:
            self._tls.do_handshake()
            return HANDSHAKE_DONE
        except ssl.SSLWantReadError:
            return WANT_READ
        except ssl.SSLWantWriteError:
            return WANT_WRITE

    def try_send(self, data: bytes) -> bytes:
        """Encrypt (when TLS) and send what the socket takes now, without waiting; returns what is left to send.

        Over TLS that is ``data`` itself or nothing: a TLS write the socket did
        not take whole is finished by writing the same bytes again
        (:meth:`_send_all`), which carries on where it stopped.
        """
        tls = self._tls
        if tls is not None:
            try:
                tls.write(data)
            except ssl.SSLWantWriteError:
                return data
            return b""
        try:
            sent = _write(self._fd, data)
        except BlockingIOError:
            sent = 0
        return b"" if sent == len(data) else data[sent:]

    def _receive(self) -> tuple[int, int, bool] | bytes | None:
        """Read what the socket has after a wake-up; never waits.

        Returns ``(status, body bytes, keep-alive)`` when that is exactly one
        usual response; else the bytes of the response received so far, to
        read on with :meth:`_read_rest`; None when there is nothing to read yet
        (a spurious wake-up, a part of a TLS record, TLS messages that carry no
        data). Raises :class:`IncompleteResponse` when the server closed
        before any byte of the response.

        Bytes are received (and decrypted: one TLS record per read) into the
        process's scratch buffer and recognised in place by
        :func:`~bench.load.http1.complete_simple`; a response with the same
        head and length as the connection's last usual one is recognised by
        comparing its head. Nothing is kept for a usual response.
        """
        tls = self._tls
        if tls is None:
            try:
                k = self._sock_recv_into(_SCRATCH_IN)
            except BlockingIOError:
                return None
            if not k:
                raise IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False)
            return self._recognise(_SCRATCH_IN, _SCRATCH_IN_VIEW, k)
        try:
            k = tls.read(RECV_SIZE, _SCRATCH_PLAIN)
        except ssl.SSLWantReadError:
            # No whole application record yet: a part of one, or only TLS messages
            # (TLS 1.3 session tickets come after the handshake). Wait for more.
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            raise IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False) from None
        return self._recognise(_SCRATCH_PLAIN, _SCRATCH_PLAIN_VIEW, k)

    def _recognise(self, plain: bytes | bytearray, view: memoryview, k: int) -> tuple[int, int, bool] | bytes:
        """The first ``k`` bytes of ``plain`` (``view`` over it): see :meth:`_receive`."""
        usual = self._usual
        if usual is not None and k == usual[1] and plain.startswith(usual[0]):
            # The head is byte for byte one that complete_simple accepted, and ends at its
            # first CRLF CRLF, so this response has the same status, framing and persistence.
            return usual[2]
        simple = complete_simple(plain, k)
        if simple is not None:
            status, head, length, keep = simple
            got = (status, length, keep)
            self._usual = (bytes(view[:head]), k, got, head, bytes(view[:k]))
            return got
        return bytes(view[:k])

    def _recognise_read(self, data: bytes, asked: int) -> tuple[int, int, bool] | bytes:
        """What the hot path's ``_read(asked)`` returned when it was not the expected response: as :meth:`_receive` returns it.

        The hot path asks for one byte more than the response it expects: a
        longer response (or record) has the rest still in the TLS object, which
        is read here at once, as :meth:`_receive` would have read the whole record.
        """
        if not data:  # (plain TCP: the server closed; TLS raises SSLZeroReturnError / SSLEOFError instead)
            raise IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False)
        tls = self._tls
        if tls is not None and len(data) == asked:
            more = tls.pending()  # the rest of the record just decrypted (no I/O)
            if more:
                data += tls.read(more)
        return self._recognise(data, memoryview(data), len(data))

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
    def pending(self) -> bool:
        """Bytes of a response already here (a general read kept them, or TLS holds them decrypted)."""
        return bool(self.buf) or (self._tls is not None and self._tls.pending() > 0)

    # ------------------------------------------------------------------ waiting (greenlets only)

    def _wait_readable(self) -> None:
        """Park this greenlet until the socket is readable.

        gevent's ``hub.wait`` wraps the same in a Waiter object per call; starting
        the watcher with the greenlet's own switch is cheaper and does the same.
        A wake-up by anything else is harmless: callers retry on EAGAIN.
        """
        rw = self.rw
        rw.start(getcurrent().switch)
        try:
            self._hub.switch()
        finally:
            rw.stop()

    def _send_all(self, data: bytes) -> None:
        """Send ``data`` (what :meth:`try_send` returned), waiting for room in the socket buffer."""
        tls = self._tls
        if tls is not None:
            for _ in range(1 << 20):  # bounded: each round waits for room in the socket buffer
                self._hub.wait(self.ww)
                try:
                    tls.write(data)  # the same bytes again: TLS carries on where it stopped
                    return
                except ssl.SSLWantWriteError:
                    continue
            raise LeanTimeout("could not send the request")
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

    def send(self, data: bytes) -> None:
        """Send request bytes (encrypted when TLS), waiting for room in the socket buffer if need be."""
        rest = self.try_send(data)
        if rest:
            self._send_all(rest)

    def recv(self) -> bytes:
        """The next bytes of the response stream; ``b""`` when the server has closed (waits)."""
        tls = self._tls
        if tls is None:
            for _ in range(1 << 16):
                self._wait_readable()
                try:
                    return self._sock_recv(RECV_SIZE)
                except BlockingIOError:
                    continue
            raise LeanTimeout("socket never became readable")
        # TLS never holds decrypted bytes back here: every read asks for more than a
        # record (16 KiB) can carry, and a read decrypts one record.
        for _ in range(1 << 20):  # bounded: each round consumes bytes or waits
            try:
                return tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                self._wait_readable()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
        raise LeanTimeout("socket never became readable")

    def _read_rest(self, buf: bytes) -> tuple[int, int, bool]:
        """The general way: :func:`read_response` from ``buf`` on, through :meth:`recv`."""
        response, self.buf = read_response(self.recv, buf)
        return response.status, response.body_bytes, response.keep_alive

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
        self._fd = -1  # never a number the kernel may give to another connection
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Closer:
    """Connections the server is closing, each closed here once its end (FIN) has arrived.

    The side that closes a TCP connection first keeps it in TIME_WAIT for a
    minute; on a load generator thousands of those make every new connect
    dearer (the kernel searches for a free port among them). When the server
    announced it closes (``Connection: close`` on either side, or HTTP/1.0),
    the client waits for that close instead of racing it, as HTTP asks the
    closing side to be the server, so the TIME_WAIT state stays with the
    server. Bounded: a connection whose end has not come after :data:`LINGER`
    seconds is closed anyway. One per process (:func:`closer`).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._loop = get_hub().loop
        self.waiting: dict[Connection, float] = {}
        self._timer: Any = None

    def add(self, conn: Connection) -> None:
        """Close ``conn`` when the server has closed it (its socket gets readable with nothing in it)."""
        if conn.rw is None:
            return
        self.waiting[conn] = _time()
        conn.rw.start(self._on_readable, conn)
        if self._timer is None:
            self._timer = self._loop.timer(LINGER, LINGER)
            self._timer.start(self._sweep)

    def _on_readable(self, conn: Connection) -> None:
        try:
            n = conn._sock_recv_into(_SCRATCH_IN)  # a TLS alert, or nothing at the end
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if not n:
            self.waiting.pop(conn, None)
            conn.close()

    def _sweep(self) -> None:
        limit = _time() - LINGER
        for conn, since in list(self.waiting.items()):
            if since < limit:
                del self.waiting[conn]
                conn.close()
        if not self.waiting:
            self._timer.stop()
            self._timer = None

    def close_all(self) -> None:
        for conn in self.waiting:
            conn.close()
        self.waiting.clear()


_CLOSERS: dict[int, Closer] = {}


def closer() -> Closer:
    """This process's :class:`Closer` (Locust forks its processes: one each)."""
    pid = os.getpid()
    found = _CLOSERS.get(pid)
    if found is None:
        _CLOSERS.clear()  # another process's, inherited through fork
        found = _CLOSERS[pid] = Closer()
    return found


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
    request (its start time) is still pending. A request's deadline is its start
    time ``_t0`` plus ``_limit`` (infinite while nothing is in flight), so a
    keep-alive request costs one attribute write (its start time) instead of a
    timer per wait.
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
                if user._t0 + user._limit < now:
                    loop.run_callback(self._fire, user, user._t0)

    @staticmethod
    def _fire(user: LeanClient, t0: float) -> None:
        glet = user._glet
        # the same request (its start time) still waiting, past its deadline
        if user._t0 == t0 and t0 + user._limit < _time() and glet is not None and not glet.dead:
            user._limit = _INF
            what = "connect" if user._deadline_what == "connect" else "response"
            limit = user._s.connect_timeout if what == "connect" else user._s.timeout
            exc = LeanTimeout(f"{what} timeout ({limit:g}s)")
            exc.client = user
            glet.throw(exc)


class StatsBatch:
    """Requests aggregated per name in one process, merged into Locust's stats in batches.

    Per request: three list appends (plus one per failure), or none for the
    keep-alive hot path's successes once :meth:`tap` gave it the run's capture:
    those it takes from the capture's two typed arrays
    (:meth:`RequestCapture.take_ok`). Per flush: numpy turns the lists into
    Locust's rounded response-time histogram, per-second counts and totals,
    and :meth:`locust.stats.StatsEntry.extend` merges them, as Locust's master
    merges its workers' reports.
    """

    METHOD = "GET"

    def __init__(self) -> None:
        self.names: dict[str, tuple[list[float], list[float], list[int], list[tuple[float, str]]]] = {}
        #: the capture whose column-wise successes (``stats=True``) are counted here (tap), or None
        self.capture: RequestCapture | None = None

    def tap(self, capture: RequestCapture) -> None:
        """Count the successes a client with this batch's lists records column-wise into ``capture`` from there (see the class doc)."""
        capture.tap_ok(self)
        self.capture = capture

    def counts_from(self, capture: Any, name: str, lists: tuple) -> bool:
        """True when ``capture``'s column-wise successes of ``name`` are this batch's statistics in place of ``lists``' appends."""
        return capture is not None and capture is self.capture and self.names.get(name) is lists

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
        # (body bytes, start times, latencies) per name: what the capture holds for this batch
        taken: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        if self.capture is not None:
            for name, nb, t_ok, lat_ok in self.capture.take_ok():
                taken.setdefault(name, []).append((nb, t_ok, lat_ok))
        empty: tuple[list, list, list, list] = ([], [], [], [])
        for name in [*self.names, *(n for n in taken if n not in self.names)]:
            lists = self.names.get(name, empty)
            parts = taken.get(name, ())
            n = len(lists[0]) + sum(len(part[1]) for part in parts)
            if n == 0:
                continue
            # Converted before the lists are emptied in place (users hold references to them).
            t = np.array(lists[0], dtype=float)
            lat = np.array(lists[1], dtype=float)
            nbytes = sum(lists[2])
            if parts:
                t = np.concatenate([t, *(part[1] for part in parts)])
                lat = np.concatenate([lat, *(part[2] for part in parts)])
                nbytes += sum(nb * len(t_ok) for nb, t_ok, _ in parts)
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
        # Locust annotates these as int but stores float milliseconds itself (StatsEntry.log)
        entry.total_response_time = float(lat.sum())  # type: ignore[assignment]
        entry.min_response_time = float(lat.min())  # type: ignore[assignment]
        entry.max_response_time = float(lat.max())  # type: ignore[assignment]
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


class _Handoff(NamedTuple):
    """Work a hub callback hands to the owner greenlet: ``client._work(what, arg)``."""

    client: LeanClient
    what: int
    arg: Any


# what a _Handoff asks for
_REST = 1  # read the rest of a response with the general reader (arg: the bytes so far)
_UNSENT = 2  # send the rest of a request the socket did not take (arg: the bytes), then wait for the response
_GENERAL = 3  # a whole request on a connection that already holds bytes (the general reader reads them)

_NOTHING: Any = object()
# LeanClient._hot before a kind of response is recorded column-wise (false; LeanClient._plain is never set then)
_NO_HOT: tuple[Any, ...] = ()


class Owner:
    """The greenlet behind one or more :class:`LeanClient` (a Locust user, a held connection).

    gevent's hub drives the clients' requests from I/O callbacks (connect,
    handshake, request, response) while this greenlet is parked in
    :meth:`park`; it wakes only for what a callback cannot do without waiting
    (a response for the general reader, a request the socket buffer did not
    take at once: a :class:`_Handoff`), for a timeout the :class:`Watchdog`
    throws, and for the value that ends its wait (:meth:`deliver`).
    """

    __slots__ = ("_wake", "busy", "glet", "hub", "result", "todo")

    def __init__(self) -> None:
        self.glet = getcurrent()
        self.hub = get_hub()
        self._wake = self.glet.switch
        #: False while parked in the hub (callbacks may switch to it), True while it runs
        self.busy = True
        self.todo: deque[_Handoff] = deque()
        self.result: Any = _NOTHING

    def handoff(self, work: _Handoff) -> None:
        """Have the greenlet do ``work`` (now when called from the hub, else when it parks next)."""
        if self.busy:
            self.todo.append(work)
        else:
            self._wake(work)

    def deliver(self, value: Any) -> None:
        """End :meth:`park` with ``value`` (not None)."""
        if self.busy:
            self.result = value
        else:
            self._wake(value)

    def park(self) -> Any:
        """Wait in the hub, doing the work handed over, until something is delivered; return it.

        A :class:`LeanTimeout` thrown in by the watchdog fails its client's
        request in flight; anything else thrown in (``GreenletExit``) passes
        through: the caller stops its clients (:meth:`LeanClient.abort`).
        """
        todo = self.todo
        hub = self.hub
        for _ in range(1 << 62):  # bounded only by the clients' own bounds in time and count
            while todo:
                work = todo.popleft()
                work.client._work(work.what, work.arg)
            result = self.result
            if result is not _NOTHING:
                self.result = _NOTHING
                return result
            self.busy = False
            try:
                got = hub.switch()
            except LeanTimeout as e:
                self.busy = True
                client = e.client
                if client is None:
                    raise
                client._failed(e)
                continue
            except BaseException:
                self.busy = True
                raise
            self.busy = True
            if type(got) is _Handoff:
                got.client._work(got.what, got.arg)
                continue
            return got
        raise RuntimeError("unreachable")


class CaptureWrapper:
    """Base of what stands between a :class:`LeanClient` and the run's capture (``inner``; None: nothing recorded).

    It passes tracing through: the client asks its capture for the
    :class:`~bench.load.capture.Tracer` (1 in N requests carry X-Lbbench-Id) and
    marks the traced request's row, whoever records it (rate models, held connections).
    """

    __slots__ = ()
    inner: Any

    @property
    def tracer(self) -> Any:
        """The capture's :class:`~bench.load.capture.Tracer` (None: no tracing)."""
        return getattr(self.inner, "tracer", None)

    def mark_traced(self, trace_id: int) -> None:
        """The next row recorded is the traced request ``trace_id`` (see RequestCapture.mark_traced)."""
        if self.inner is not None:
            self.inner.mark_traced(trace_id)

    def unfinished(self, t: float, name: str, phase: str = "", conn_new: bool | None = None, intended_t: float | None = None, trace_id: int | None = None) -> None:
        """A request dropped unanswered (see RequestCapture.unfinished): passed on."""
        unfinished = getattr(self.inner, "unfinished", None)
        if unfinished is not None:
            unfinished(t, name, phase, conn_new, intended_t, trace_id)


def _end_burst(client: LeanClient, t1: float, _failed: bool) -> None:
    owner = client._owner
    assert owner is not None
    owner.deliver(t1)


class LeanClient:
    """One connection's worth of client: connects, sends, reads, records. No Locust in here.

    Requests are driven by gevent's hub, from the socket's I/O callbacks: the
    non-blocking connect, the TLS handshake (one step per readable event), the
    request, the response, and the next request or connection. The greenlet
    that asked for them (the client's :class:`Owner`) stays parked meanwhile;
    it wakes only for a response that needs the general reader, a request the
    socket buffer did not take, or the end. Everything runs this way:

    - :meth:`burst` and :meth:`request`: N requests back to back (keep-alive,
      ``requests_per_connection``, a new TLS connection per request), the
      calling greenlet waits;
    - :meth:`start`: N requests started from anywhere (a timer, the rate
      models' dispatcher), ``done`` called when they are over; the owner
      greenlet waits in :meth:`Owner.park` (the rate models, held connections).

    :class:`LeanHttpsUser` runs one client per user; tests drive it directly.
    The :class:`Watchdog` interrupts a request in flight when ``_t0 + _limit``
    passes (connect = TCP + TLS handshake; response = from sending the request
    to the end of its response).

    The keep-alive hot path (:meth:`_on_readable`): a request on a connection
    that stays, neither its first nor its last nor traced (``_plain``), whose
    response is byte for byte the client's usual one (``_hot``), is recorded
    as two float appends, and the next request is sent from the same callback.
    ``_easy`` of those next requests are sent without counting them in the
    burst's, the connection's and the trace countdowns (:meth:`_next_request`
    plans how many cannot reach any of them); :meth:`_settle` counts them
    before anything else reads those counts.
    """

    # Slots: the hot path reads and writes a handful of these per request, and a slot costs less
    # than the instance dictionary of a class with this many attributes. __dict__ stays (tests
    # replace a method on an instance).
    __slots__ = (
        "__dict__",
        "_addr",
        "_capture",
        "_cb_connect",
        "_cb_handshake",
        "_cb_readable",
        "_conn",
        "_conn_ctx",
        "_conn_new",
        "_ctx",
        "_deadline_what",
        "_done",
        "_easy",
        "_easy_from",
        "_glet",
        "_hostname",
        "_hot",
        "_hub",
        "_in_flight",
        "_last",
        "_later",
        "_limit",
        "_lists",
        "_ms_append",
        "_n",
        "_name",
        "_nb_append",
        "_ok_capture",
        "_owner",
        "_plain",
        "_record_row",
        "_req_close",
        "_req_keep",
        "_resumption",
        "_rpc",
        "_s",
        "_session",
        "_starting",
        "_stop_on_error",
        "_t0",
        "_timeout",
        "_trace_left",
        "_tracer",
        "_tracing",
        "_trust",
        "_ts_append",
        "_until",
        "_verify_with_ca",
        "connections",
        "keep_tls_buffers",
        "resumed",
    )

    def __init__(
        self,
        s: LeanSettings,
        ctx: ssl.SSLContext | LabTrust | None,
        lists: tuple[list, list, list, list] | None = None,
        capture: RequestCapture | None = None,
    ):
        check_target(s.host)
        self._s = s
        # TLS: the process's LabTrust (verification against the CA, then against what it verified),
        # or one fixed context; None for plain HTTP
        self._trust = ctx if isinstance(ctx, LabTrust) else None
        self._ctx = ctx.ca if isinstance(ctx, LabTrust) else ctx
        self._conn_ctx: ssl.SSLContext | None = None  # the context of the connection's handshake
        self._verify_with_ca = False
        self._hub = get_hub()
        self._conn: Connection | None = None
        # (context, session) of the last TLS session, to resume (a session only works with its own context)
        self._session: tuple[ssl.SSLContext | None, ssl.SSLSession] | None = None
        self._req_keep = s.request_bytes(close=False)
        self._req_close = s.request_bytes(close=True)
        self._addr = (s.host, s.port)
        self._rpc = s.requests_per_connection
        self._timeout = s.timeout
        self._resumption = s.resumption
        self._name = s.name
        # encoded once: ssl would run the (Python) IDNA codec on every connection
        self._hostname = (s.server_name or s.host).encode("idna").decode("ascii")
        self._lists = lists if lists is not None else ([], [], [], [])
        self._ts_append, self._ms_append, self._nb_append = (x.append for x in self._lists[:3])
        # the requests under way (see start): how many are left, until when, what to call at the end
        self._n = 0
        # the keep-alive hot path (see the class doc): the request in flight may be recorded there; how many
        # requests it may send without counting them, and how many it could when that was planned
        self._plain = False
        self._easy = self._easy_from = 0
        # 1 in N requests carries X-Lbbench-Id (bench/load/capture.py Tracer): the id of the traced
        # request in flight (0: none); the countdown is set with the capture
        self._tracing = 0
        self.capture = capture
        # the watchdog's view: the request in flight's deadline (start time _t0 + _limit), what it is, whom to interrupt
        self._limit = _INF
        self._deadline_what = ""
        self._glet: Any = None
        self._owner: Owner | None = None
        self._until = _INF
        self._stop_on_error = False
        self._done: Any = _end_burst
        # the request in flight: when it started, whether it opened its connection, whether it is the connection's last
        self._t0 = 0.0
        self._conn_new = False
        self._last = False
        self._in_flight = False
        self._starting = False
        self._later: Any = None
        # bound once: the callbacks armed on every connection and request
        self._cb_connect = self._on_connect
        self._cb_handshake = self._on_handshake
        self._cb_readable = self._on_readable
        #: OpenSSL keeps each connection's record buffers (Connection.start_tls): for connections
        #: that carry more than one request; held connections (which idle: HeldPool) do not
        self.keep_tls_buffers = s.requests_per_connection != 1
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
        self._settle()  # (the trace countdown starts again below)
        # a plain RequestCapture takes the hot path's successes column-wise (ok_appenders); a
        # wrapper (rate models, held connections) sees every row
        self._ok_capture = capture if type(capture) is RequestCapture else None
        # once a kind of response is recorded column-wise into arrays that are the statistics too:
        # (bytes to read for it, the whole response, its two appenders); see _on_readable
        self._hot: tuple[Any, ...] = _NO_HOT
        self._plain = False
        if capture is None:
            self._record_row = None
        else:
            self._record_row = getattr(capture, "record_row", None) or (lambda row, record=capture.record: record(*row))
        self._tracer: Any = getattr(capture, "tracer", None)  # a Tracer, or None (no tracing)
        every = self._tracer.countdown() if self._tracer is not None else -1
        # requests until the next traced one (never 0 without a tracer); a random start spreads the clients' traced requests
        self._trace_left = random.randint(1, every) if every > 0 else -1

    def use_owner(self, owner: Owner) -> None:
        """Drive this client for ``owner``'s greenlet (it handles what callbacks hand over; timeouts go to it)."""
        self._owner = owner
        self._glet = owner.glet

    # ------------------------------------------------------------------ the API

    def request(self) -> float:
        """Send one request and record it; returns the time it finished (epoch seconds)."""
        return self.burst(1, _INF)

    def burst(self, count: int, until: float) -> float:
        """Up to ``count`` requests back to back, ending after the first that finishes past ``until``.

        ``until`` is in epoch seconds, like the time returned: when the last
        request finished (0.0 when ``count`` < 1). Failures are recorded and
        the burst goes on (a new connection after a failed one). The calling
        greenlet waits while the hub drives the requests; ``GreenletExit``
        (Locust stopping a user) and the watchdog's timeouts reach it.
        """
        if count < 1:
            return 0.0
        owner = self._owner
        if owner is None or owner.glet is not getcurrent():
            owner = Owner()
            self.use_owner(owner)
        self.start(count, until, _end_burst)
        try:
            return owner.park()
        except BaseException:
            self.abort()
            raise

    def start(self, count: int, until: float, done: Any, stop_on_error: bool = False) -> None:
        """Start ``count`` requests without waiting; ``done(client, t1, failed)`` is called when they are over.

        Callable from the hub (a timer, a dispatcher) or the owner greenlet;
        the owner must be parked in :meth:`Owner.park` (or be the caller) for
        as long as requests are under way. Requests go back to back until
        ``count`` are done, or one finishes past ``until``, or (with
        ``stop_on_error``) one fails; ``t1`` is when the last one finished,
        ``failed`` whether it failed. ``done`` runs in the hub or the owner
        greenlet and must not wait.
        """
        self._settle()
        self._n = count
        self._until = until
        self._done = done
        self._stop_on_error = stop_on_error
        self._start()

    def abort(self) -> None:
        """Stop at once: a request in flight is dropped with its connection, as unfinished (``capture.unfinished``); no callback runs after this."""
        if self._later is not None:
            self._later.stop()
            self._later = None
        self._settle()
        self._limit = _INF
        trace_id, self._tracing = self._tracing, 0
        if self._in_flight:
            self._in_flight = False
            unfinished = getattr(self._capture, "unfinished", None)
            if unfinished is not None:
                # sent and never answered: accounted for, not lost (samples/unfinished/)
                phase = "connect" if self._deadline_what == "connect" else "response"
                unfinished(self._t0, self._name, phase, self._conn_new, None, trace_id or None)
            self._drop()
        elif self._conn is not None:
            conn = self._conn
            conn.rw.stop()
            conn.ww.stop()

    def close(self) -> None:
        """Close the connection, if one is open."""
        self.abort()
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ the requests, from the hub

    def _start(self) -> None:
        """Start the next request (hub or owner greenlet; never waits)."""
        if self._starting:
            # It failed at once inside _start (say a refused connect): go on from the hub, not deeper in this stack.
            self._later = self._hub.loop.run_callback(self._start_later)
            return
        self._starting = True
        try:
            self._start_one()
        finally:
            self._starting = False

    def _start_later(self) -> None:
        self._later = None
        self._start()

    def _start_one(self) -> None:
        conn = self._conn
        t0 = self._t0 = _time()
        self._in_flight = True
        try:
            if conn is not None and t0 - conn.last_used > IDLE_CHECK and conn.closed_by_peer():
                self._drop()
                conn = None
            if conn is None:
                self._conn_new = True
                self._deadline_what = "connect"
                self._limit = self._s.connect_timeout
                self._open()
                return
            self._conn_new = False
            self._deadline_what = "response"
            self._limit = self._timeout
            if conn.pending:
                conn.rw.stop()
                self._handoff(_GENERAL, None)
            else:
                self._send()
        except Exception as e:  # noqa: BLE001 - every failure is a recorded request
            self._failed(e)

    def _open(self) -> None:
        conn = self._conn = Connection(self._addr)
        if conn.connecting:
            conn.ww.start(self._cb_connect)
        else:
            self._connected()

    def _on_connect(self) -> None:
        """The socket became writable: the connect is done (or failed)."""
        conn = self._conn
        assert conn is not None
        try:
            conn.ww.stop()
            self._connected()
        except Exception as e:  # noqa: BLE001
            self._failed(e)

    def _connected(self) -> None:
        conn = self._conn
        assert conn is not None  # (a request is under way on it)
        conn.connected()
        ctx = self._ctx
        if ctx is None:
            self._opened()
            return
        trust = self._trust
        if trust is not None and not self._verify_with_ca:
            ctx = trust.context()
        self._conn_ctx = ctx
        session = self._session
        conn.start_tls(ctx, self._hostname, session[1] if self._resumption and session is not None and session[0] is ctx else None, self.keep_tls_buffers)
        self._handshake()

    def _on_handshake(self) -> None:
        """The socket is ready for what the handshake waited for: take the next step."""
        conn = self._conn
        assert conn is not None
        try:
            self._handshake()
        except Exception as e:  # noqa: BLE001
            self._failed(e)

    def _handshake(self) -> None:
        """The next step of the handshake (any step may finish it: the server's flight can be here already)."""
        conn = self._conn
        assert conn is not None  # (a request is under way on it)
        try:
            state = conn.handshake()
        except ssl.SSLCertVerificationError:
            trust = self._trust
            if trust is None or self._conn_ctx is trust.ca:
                raise
            # A certificate the pinned store does not know: verify it against the CA, on a new connection.
            self._verify_with_ca = True
            self._drop()
            self._open()
            return
        if state == HANDSHAKE_DONE:
            if conn.session_reused:
                self.resumed += 1
            elif self._trust is not None and self._conn_ctx is self._trust.ca:
                self._trust.learn(conn.obj.getpeercert(True))  # just verified against the CA
            self._verify_with_ca = False
            self._opened()
        elif state == WANT_READ:
            conn.ww.stop()
            conn.rw.start(self._cb_handshake)
        else:  # (rare: the socket buffer is full)
            conn.rw.stop()
            conn.ww.start(self._cb_handshake)

    def _opened(self) -> None:
        """The connection is up (TCP, and TLS when the target is https): send the first request."""
        self.connections += 1
        self._deadline_what = "response"
        self._limit = _time() - self._t0 + self._timeout  # (from now: the connect and handshake took their time)
        self._send()

    def _send(self) -> None:
        conn = self._conn
        assert conn is not None  # (a request is under way on it)
        rest = conn.try_send(self._next_request(conn))
        if rest:
            conn.rw.stop()
            self._handoff(_UNSENT, rest)
        else:
            conn.rw.start(self._cb_readable)

    def _on_readable(self) -> None:
        """The socket is readable while a request is in flight: the response, then the next request.

        This runs once per keep-alive request. The hot path: the request in
        flight is ``_plain`` (on a connection that stays, neither its first nor
        its last, not traced) and its response is byte for byte the client's
        usual one (``_hot``, which :meth:`_record_usual` learnt from a response
        that :func:`~bench.load.http1.complete_simple` accepted: the same bytes
        are the same status, framing and persistence). One read asks for one
        byte more than that response (a longer one is read on by
        :meth:`Connection._recognise_read`), one compare of two bytes objects
        recognises it, two float appends record it, and the next request is
        sent from here, uncounted while ``_easy`` says no count can be reached
        (:meth:`_next_request`, :meth:`_settle`). Everything else is
        recognised as :meth:`Connection._receive` does and booked by
        :meth:`_other_response`; anything that needs waiting goes to the
        owner greenlet.
        """
        conn = self._conn
        assert conn is not None  # (a request is under way on it)
        got: tuple[int, int, bool] | bytes | None
        if self._plain:
            hot = self._hot
            read = conn._read  # (a slot: LOAD_ATTR specialises for it, a method call on it would not)
            try:
                data = read(hot[0])
            except (ssl.SSLWantReadError, BlockingIOError):
                return  # a part of a TLS record, TLS messages only, or a spurious wake-up: wait for more
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._failed(IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False))
                return
            except Exception as e:  # noqa: BLE001
                self._failed(e)
                return
            t1 = _time()
            if data == hot[1]:
                # The hot path: two float appends (RequestCapture.ok_appenders), which are Locust's
                # statistics too (the capture is tapped: StatsBatch.tap) ...
                t0 = self._t0
                hot[2](t0)
                hot[3]((t1 - t0) * 1000.0)
                easy = self._easy
                if easy and t1 <= self._until:
                    # ... and the next request, sent from here (the read watcher stays armed), uncounted:
                    # it reaches none of the counts. It starts now: t1 is less than a microsecond old,
                    # one clock read less per request; its deadline is t1 + _limit (_limit is the
                    # response timeout already: this request was a plain one).
                    self._easy = easy - 1
                    self._t0 = t1
                    req = self._req_keep
                    tls = conn._tls
                    try:
                        if tls is not None:
                            try:
                                tls.write(req)  # (Connection.try_send inlined)
                                return
                            except ssl.SSLWantWriteError:
                                rest = req  # to write again, whole, once the socket takes more (Connection._send_all)
                        else:
                            rest = conn.try_send(req)
                            if not rest:
                                return
                    except Exception as e:  # noqa: BLE001
                        self._failed(e)
                        return
                    conn.rw.stop()
                    self._handoff(_UNSENT, rest)
                    return
                conn.last_used = t0  # (the hot path leaves it alone: only a new request reads it)
                self._settle()  # (the only way to the counted next request with uncounted ones before it)
            else:
                try:
                    got = conn._recognise_read(data, hot[0])
                except Exception as e:  # noqa: BLE001
                    self._failed(e)
                    return
                self._settle()
                if not self._other_response(conn, got, t1):
                    return
        else:
            # Any other request (a connection's first or last, a traced one, a client whose capture
            # takes every row: the rate models, held connections): Connection._receive, inlined for TLS.
            tls = conn._tls
            try:
                if tls is not None:
                    k = tls.read(RECV_SIZE, _SCRATCH_PLAIN)
                    usual = conn._usual
                    if usual is not None and k == usual[1] and _SCRATCH_PLAIN.startswith(usual[0]):
                        got = usual[2]
                    else:
                        got = conn._recognise(_SCRATCH_PLAIN, _SCRATCH_PLAIN_VIEW, k)
                else:
                    got = conn._receive()
            except ssl.SSLWantReadError:
                return  # a part of a TLS record, or TLS messages only: wait for more
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._failed(IncompleteResponse(_CLOSED_BEFORE_ANY_BYTE, started=False))
                return
            except Exception as e:  # noqa: BLE001
                self._failed(e)
                return
            t1 = _time()
            if not self._other_response(conn, got, t1):
                return
        # A success on a connection that stays: the next request, counted (all before it are).
        n = self._n = self._n - 1
        if n <= 0 or t1 > self._until:
            self._limit = _INF
            self._in_flight = False
            conn.rw.stop()
            self._done(self, t1, False)
            return
        self._t0 = t1
        self._limit = self._timeout
        tls = conn._tls
        try:
            # (_next_request inlined, for the clients whose every request comes here: the rate models',
            # held connections')
            requests = conn.requests = conn.requests + 1
            rpc = self._rpc
            last = self._last = rpc > 0 and requests >= rpc
            left = self._trace_left = self._trace_left - 1
            req = self._req_close if last else self._req_keep
            if not left:
                req = self._traced(req)
                self._plain = False
            elif self._hot:  # (else no request is plain)
                if last:
                    self._plain = False
                else:
                    self._plan_easy(rpc, requests)
            if tls is not None:
                try:
                    tls.write(req)  # (Connection.try_send inlined)
                    return
                except ssl.SSLWantWriteError:
                    rest = req  # to write again, whole, once the socket takes more (Connection._send_all)
            else:
                rest = conn.try_send(req)
                if not rest:
                    return
        except Exception as e:  # noqa: BLE001
            self._failed(e)
            return
        conn.rw.stop()
        self._handoff(_UNSENT, rest)

    def _next_request(self, conn: Connection) -> bytes:
        """Count the request about to be sent on ``conn`` and return its bytes; plan the hot path after it.

        ``_plain``: this request may take the hot path (its response recorded
        in :meth:`_on_readable`'s fewest steps). ``_easy``: how many requests
        after it the hot path may send without counting them, because none of
        them can be the burst's last (``_n``), the connection's last
        (``requests_per_connection``) or a traced one (the trace countdown):
        those are counted by :meth:`_settle` before anything reads the counts.
        """
        requests = conn.requests = conn.requests + 1
        rpc = self._rpc
        last = self._last = rpc > 0 and requests >= rpc
        left = self._trace_left = self._trace_left - 1
        req = self._req_close if last else self._req_keep
        if not left:
            req = self._traced(req)
            self._plain = False
        elif self._hot:  # (else no request is plain)
            if last or self._conn_new:
                self._plain = False
            else:
                self._plan_easy(rpc, requests)
        return req

    def _plan_easy(self, rpc: int, requests: int) -> None:
        """The request being sent (the connection's ``requests``-th) is plain: how many after it the hot path may send uncounted.

        Called with nothing uncounted (``_easy`` and ``_easy_from`` are 0 after
        :meth:`_settle`, and stay 0 while no request is plain).
        """
        self._plain = True
        easy = self._n - 1  # (_n counts this request)
        if rpc > 0:
            easy = min(easy, rpc - requests - 1)
        left = self._trace_left
        if left > 0:  # (negative: never traced; 0 cannot be: this request was not traced)
            easy = min(easy, left - 1)
        if easy > 0:
            self._easy = self._easy_from = easy

    def _settle(self) -> None:
        """Count the requests the hot path sent uncounted since :meth:`_next_request` planned them; none after this."""
        used = self._easy_from - self._easy
        self._easy = self._easy_from = 0
        if used:
            self._n -= used
            self._trace_left -= used
            conn = self._conn
            if conn is not None:
                conn.requests += used

    def _other_response(self, conn: Connection, got: tuple[int, int, bool] | bytes | None, t1: float) -> bool:
        """What :meth:`_on_readable` read, other than the hot path's; True when it was a success on a connection that stays (send the next request)."""
        if type(got) is not tuple:
            if got is not None:  # (None: a spurious wake-up, keep waiting)
                conn.rw.stop()
                self._handoff(_REST, got)
            return False
        status, nbytes, keep = got
        if status >= 400 or not keep or self._last or self._conn_new:
            self._response(t1, status, nbytes, keep)
            return False
        # a success on a connection that stays, not (yet) the column-wise kind
        t0 = self._t0
        conn.last_used = t0
        latency = (t1 - t0) * 1000.0
        if self._record_row is not None and self._record_usual(got, t0, latency):
            return True  # (the capture's arrays are the statistics too)
        self._ts_append(t0)
        self._ms_append(latency)
        self._nb_append(nbytes)
        return True

    def _record_usual(self, got: tuple[int, int, bool], t0: float, latency: float) -> bool:
        """Record a success on a connection that stays that the hot path did not (not the client's usual response yet, or traced).

        True when it went column-wise into arrays that are also the statistics (so no list appends).
        """
        status, nbytes, _keep = got
        capture = self._ok_capture
        if self._tracing:
            self._mark_traced()
        elif capture is not None:
            # from now on this kind of response is recorded column-wise; Locust's statistics
            # take the same arrays when this client's lists are those of the capture's StatsBatch
            batch = capture.ok_stats
            counted = batch is not None and batch.counts_from(capture, self._name, self._lists)
            t_append, latency_append = capture.ok_appenders(nbytes, status, self._name, stats=counted)
            usual = self._conn._usual  # type: ignore[union-attr]  # (a request is under way on it)
            if counted and usual is not None and usual[2] is got:  # (got is the tuple of this response's kind: see Connection._recognise)
                # the hot path records this kind from now on (where the arrays are the statistics: it
                # appends nowhere else)
                whole = usual[4]
                self._hot = (len(whole) + 1, whole, t_append, latency_append)
            t_append(t0)
            latency_append(latency)
            return counted
        self._record_row((t0, latency, nbytes, status, "", self._name, False))  # type: ignore[misc]  # (the caller checked it is there)
        return False

    def _response(self, t1: float, status: int, nbytes: int, keep: bool) -> None:
        """A whole response: keep or drop the connection, record it, go on (hub or owner greenlet)."""
        conn = self._conn
        assert conn is not None  # (a request is under way on it)
        self._limit = _INF
        self._in_flight = False
        if self._conn_new and self._resumption and conn.obj is not None:
            # TLS 1.3 tickets arrive after the handshake: take the session now.
            self._session = (self._conn_ctx, conn.obj.session)
        if keep and not self._last:
            conn.last_used = self._t0
        else:
            # The server closes this connection now (it said so, or we asked it to): let it close first.
            self._conn = None
            closer().add(conn)
        self._record(self._t0, t1, self._conn_new, status, nbytes, None)
        self._after(t1, status >= 400)

    def _handoff(self, what: int, arg: Any) -> None:
        """Give ``what`` to the owner greenlet (see :class:`Owner`)."""
        owner = self._owner
        assert owner is not None, "LeanClient.start() without an owner: use burst(), or use_owner() first"
        owner.handoff(_Handoff(self, what, arg))

    def _failed(self, exc: BaseException) -> None:
        """The request in flight failed: drop its connection, record it, go on (hub or owner greenlet)."""
        t1 = _time()
        self._limit = _INF
        self._in_flight = False
        self._verify_with_ca = False
        self._drop()
        self._record(self._t0, t1, self._conn_new, 0, 0, exc)
        self._after(t1, True)

    def _after(self, t1: float, failed: bool) -> None:
        """A request is over: the next one, or the end (``done``)."""
        self._settle()
        n = self._n = self._n - 1
        if n > 0 and t1 <= self._until and not (failed and self._stop_on_error):
            self._start()
            return
        conn = self._conn
        if conn is not None:
            conn.rw.stop()  # nothing in flight: no callback until the next request
        self._done(self, t1, failed)

    # ------------------------------------------------------------------ what only the owner greenlet can do

    def _work(self, what: int, arg: Any) -> None:
        """Do what a callback handed over (in the owner greenlet; may wait), then go on as the hub would."""
        conn = self._conn
        assert conn is not None  # (a request is under way on it)
        try:
            if what == _REST:
                status, nbytes, keep = conn._read_rest(arg)
            elif what == _UNSENT:
                conn._send_all(arg)
                conn.rw.start(self._cb_readable)
                return
            else:  # _GENERAL
                conn.send(self._next_request(conn))
                status, nbytes, keep = conn._read_rest(conn.buf)
        except Exception as e:  # noqa: BLE001 - every failure is a recorded request (GreenletExit passes)
            self._failed(e)
            return
        self._response(_time(), status, nbytes, keep)

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

    def _traced(self, request: bytes) -> bytes:
        """``request`` with the next trace id in it (1 in N requests; see Tracer)."""
        tracer = self._tracer
        self._tracing = tracer.take()
        self._trace_left = tracer.countdown()
        head = len(request) - self._s.request_body - 2  # after the last header line, before the blank line and a POST body
        return request[:head] + tracer.header_line(self._tracing) + request[head:]

    def _mark_traced(self) -> None:
        """The row about to be recorded is the traced request in flight."""
        mark = getattr(self._capture, "mark_traced", None)
        if mark is not None:
            mark(self._tracing)
        self._tracing = 0


def _failure_text(kind: str, exc: BaseException | None, status: int) -> str:
    """A bounded error text for Locust's failure table (no addresses or counters in it)."""
    if exc is None:
        return f"{kind}: HTTP {status}"
    if isinstance(exc, HTTPError | LeanTimeout):
        return f"{kind}: {type(exc).__name__}"
    return f"{kind}: {type(exc).__name__}" + (f" [errno {exc.errno}]" if isinstance(exc, OSError) and exc.errno else "")
