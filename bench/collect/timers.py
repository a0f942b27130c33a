"""Per-request timers of traced requests, received from every HAProxy process of the lab.

The load generator sends ``X-Lbbench-Id: <worker>/<seq>`` on 1 in N requests
(:mod:`bench.load.capture`). Every HAProxy process (frontend, backend, monolith
and the dummy servers) logs each such request once, in the format of
``topology/templates/_timers.cfg.j2``, to a unix datagram socket in the lab's
shared run folder (``/run/lbbench/timers.sock`` inside the containers): no
disk I/O on the nodes, no syslog daemon. :class:`TimerReceiver` binds that
socket on the host, parses each line and streams the rows to
``samples/request_timers/`` once per second::

    lbb1 <service> <kind> <id> <t_req_us> <t_resp_us> <t_log_us> <Th> <Ti> <TR> <Tw> <Tc> <Tr> <Ta> <status> <bytes> <ts> <server>

``t_req_us`` is when the process had the request's headers (its ``http-request``
rules ran), ``t_resp_us`` when it had the response's headers (``http-response``),
``t_log_us`` when it logged the request (after the last byte was sent), all from
HAProxy's ``date(0,us)``: the host's wall clock, like every other sample. The
``T*`` timers are HAProxy's own, in ms (section 8.4 of its configuration manual).
A process that cannot send (the receiver not bound yet, its queue full) counts the
line in ``show info`` ``DroppedLogs``.

The queue: a unix datagram socket holds at most ``net.unix.max_dgram_qlen``
datagrams unread (10 by default, whatever its receive buffer), a value it takes
from the network namespace it is created in. Ten lines are a few milliseconds of
a traced run, less than the receiver may wait for the CPU on a busy host: HAProxy
then dropped lines (measured on a busy 2-core host: 12,439 dropped and 52,376
received at 1,000 req/s, all traced).
So :func:`datagram_socket` creates the socket in a network namespace of its own
whose queue is :data:`QLEN` (a short-lived thread, like
:func:`bench.collect.nsnetlink.open_in_netns`; needs root). A path socket works
across namespaces, so HAProxy in the lab's containers sends to it as before; each
sender is then limited by its own send buffer (about 160 lines).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..results.store import ChunkWriter
from ..results.tables import REQUEST_TIMERS
from .nsnetlink import CLONE_NEWNET, _setns

TABLE = REQUEST_TIMERS.name
#: The first word of every line: the format's version.
TAG = "lbb1"
#: Receive buffer asked for (the kernel caps it at net.core.rmem_max unless we may force it).
RCVBUF = 4 << 20
FLUSH_S = 1.0
#: Datagrams the receiving socket may hold unread (see the module's docstring).
QLEN = 4096
#: The per-namespace sysctl that sets it.
QLEN_SYSCTL = Path("/proc/sys/net/unix/max_dgram_qlen")
#: The table's columns, in the order :func:`parse_row` gives them.
COLUMNS = REQUEST_TIMERS.schema.names


def _num(word: str) -> int | None:
    """A number HAProxy printed (``-1`` for a timer not reached), None for ``-`` or anything else."""
    try:
        return int(word)
    except ValueError:
        return None


def parse_row(line: str) -> tuple | None:
    """One row of ``request_timers`` from a log line, as a tuple in :data:`COLUMNS` order (None for anything else)."""
    words = line.split()
    if len(words) != 18 or words[0] != TAG or words[3] == "-":
        return None
    t_req, t_resp, t_log = _num(words[4]), _num(words[5]), _num(words[6])
    if t_log is None or t_req is None:
        return None
    th, ti, tr_, tw, tc, tr, ta, status, nbytes = map(_num, words[7:16])
    return (
        t_log / 1e6, words[1], words[2], words[3], t_req / 1e6, None if t_resp is None else t_resp / 1e6,
        th, ti, tr_, tw, tc, tr, ta, status, nbytes, words[16], "" if words[17] == "-" else words[17],
    )  # fmt: skip


def parse_line(line: str) -> dict[str, Any] | None:
    """:func:`parse_row` as a dict of column -> value (for tests and tools)."""
    row = parse_row(line)
    return None if row is None else dict(zip(COLUMNS, row, strict=True))


def _read_qlen() -> int | None:
    try:
        return int(QLEN_SYSCTL.read_text().strip())
    except (OSError, ValueError):
        return None


def _unshare_net() -> None:
    unshare = getattr(os, "unshare", None)  # Python >= 3.12
    if unshare is not None:
        unshare(CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def datagram_socket(qlen: int = QLEN) -> tuple[socket.socket, int | None]:
    """A unix datagram socket whose queue holds ``qlen`` datagrams where we may, and the queue it has.

    Created in a new network namespace of a short-lived thread, with that
    namespace's ``max_dgram_qlen`` set to ``qlen``; where that is refused (not
    root), an ordinary socket with the host's queue length.
    """
    result: dict[str, Any] = {}

    def create() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        except OSError:
            return
        try:
            _unshare_net()
            try:
                QLEN_SYSCTL.write_text(str(qlen))
                result["qlen"] = _read_qlen()
                result["sock"] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            finally:
                _setns(own)  # should this fail, the thread (and its namespace) ends here anyway
        except OSError:
            pass
        finally:
            os.close(own)

    thread = threading.Thread(target=create, name="lbbench-timers-netns", daemon=True)
    thread.start()
    thread.join()
    sock = result.get("sock")
    if isinstance(sock, socket.socket):
        return sock, result.get("qlen")
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), _read_qlen()


class TimerReceiver:
    """Bind ``path`` (a unix datagram socket) and stream what arrives into ``request_timers`` of ``run_dir``."""

    def __init__(self, run_dir: Path, path: Path):
        self.path = Path(path)
        self.writer = ChunkWriter(Path(run_dir), REQUEST_TIMERS, "timers")
        self._rows: list[tuple] = []
        self.lines = 0
        self.rejected = 0
        self.cpu_s = 0.0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: datagrams the socket holds unread (see :func:`datagram_socket`)
        self.qlen: int | None = None

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and receive in a thread."""
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        sock, self.qlen = datagram_socket()
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                break
            except OSError:
                continue
        sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # HAProxy may run as another user inside its container
        sock.setblocking(False)
        self._sock = sock
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="lbbench-timers", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop receiving, flush, remove the socket; returns what it did (for collectors.json)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._flush()
        self.writer.close()  # sealed: a report compacts it whole
        self.stopped_at = time.time()
        return self.meta()

    def meta(self) -> dict[str, Any]:
        span = (self.stopped_at or time.time()) - (self.started_at or time.time())
        return {
            "socket": str(self.path),
            "lines": self.lines,
            "rejected": self.rejected,
            "queue": self.qlen,
            "cpu_s": round(self.cpu_s, 3),
            "cpu_pct": round(100.0 * self.cpu_s / span, 2) if span > 0 else None,
        }

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        began = time.thread_time()
        next_flush = time.monotonic() + FLUSH_S
        recv = sock.recv
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                got: list[tuple] = []
                rejected = 0
                # drain what is queued: one select per batch, not per line
                for _ in range(10_000):
                    try:
                        data = recv(1024)
                    except BlockingIOError:
                        break
                    except OSError:
                        return
                    row = parse_row(data.decode("ascii", "replace"))
                    if row is None:
                        rejected += 1
                    else:
                        got.append(row)
                with self._lock:
                    self._rows.extend(got)
                    self.lines += len(got)
                    self.rejected += rejected
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + FLUSH_S
            self.cpu_s = time.thread_time() - began

    def _flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            self.writer.write({name: list(col) for name, col in zip(COLUMNS, zip(*rows, strict=True), strict=True)})
