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
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .tables import TableBuffer

TABLE = "request_timers"
#: The first word of every line: the format's version.
TAG = "lbb1"
#: Receive buffer asked for (the kernel caps it at net.core.rmem_max unless we may force it).
RCVBUF = 4 << 20
FLUSH_S = 1.0
_INT_FIELDS = ("Th", "Ti", "TR", "Tw", "Tc", "Tr", "Ta")


def _us(word: str) -> float | None:
    return int(word) / 1e6 if word and word != "-" and word.lstrip("-").isdigit() else None


def _int(word: str) -> int | None:
    return int(word) if word.lstrip("-").isdigit() else None


def parse_line(line: str) -> dict[str, Any] | None:
    """One row of ``request_timers`` from a log line (None for anything else)."""
    words = line.split()
    if len(words) < 18 or words[0] != TAG:
        return None
    service, kind, rid = words[1], words[2], words[3]
    if rid in ("-", ""):
        return None
    t_log = _us(words[6])
    if t_log is None:
        return None
    row: dict[str, Any] = {
        "t": t_log,
        "service": service,
        "kind": kind,
        "id": rid,
        "t_req": _us(words[4]),
        "t_resp": _us(words[5]),
    }
    for name, word in zip(_INT_FIELDS, words[7:14], strict=True):
        row[name] = _int(word)
    row["status"] = _int(words[14])
    row["bytes"] = _int(words[15])
    row["term"] = words[16]
    row["server"] = words[17] if words[17] != "-" else ""
    return row


class TimerReceiver:
    """Bind ``path`` (a unix datagram socket) and stream what arrives into ``request_timers`` of ``run_dir``."""

    def __init__(self, run_dir: Path, path: Path):
        self.path = Path(path)
        self.buffer = TableBuffer(Path(run_dir), TABLE, writer="timers")
        self.lines = 0
        self.rejected = 0
        self.cpu_s = 0.0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and receive in a thread."""
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
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
        sock.settimeout(0.2)
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
        try:
            self.path.unlink()
        except OSError:
            pass
        self._flush()
        self.stopped_at = time.time()
        return self.meta()

    def meta(self) -> dict[str, Any]:
        span = (self.stopped_at or time.time()) - (self.started_at or time.time())
        return {
            "socket": str(self.path),
            "lines": self.lines,
            "rejected": self.rejected,
            "cpu_s": round(self.cpu_s, 3),
            "cpu_pct": round(100.0 * self.cpu_s / span, 2) if span > 0 else None,
        }

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        began = time.thread_time()
        next_flush = time.monotonic() + FLUSH_S
        while not self._stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                data = b""
            except OSError:
                break
            if data:
                row = parse_line(data.decode("ascii", "replace"))
                with self._lock:
                    if row is None:
                        self.rejected += 1
                    else:
                        self.lines += 1
                        self.buffer.add(**row)
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + FLUSH_S
            self.cpu_s = time.thread_time() - began

    def _flush(self) -> None:
        with self._lock:
            self.buffer.flush()
