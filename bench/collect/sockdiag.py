"""TCP sockets of one network namespace, counted through the kernel's sock_diag netlink interface.

``/proc/<pid>/net/tcp`` formats every socket of the namespace as a line of text
that Python then parses; under load (tens of thousands of TIME_WAIT sockets) that
was most of the collectors' cost. INET_DIAG (``man 7 sock_diag``) answers the same
question in binary: one dump request per address family, one fixed-layout
``inet_diag_msg`` per socket. The messages are decoded with numpy, so the Python
work per sample does not grow with the number of sockets.

A netlink socket belongs to the namespace it was created in: :func:`open_in_netns`
creates it inside the namespace of a process (:mod:`bench.collect.nsnetlink`; needs
root like ``nsenter``) and every later dump through it sees that namespace's sockets only. The kernel skips other namespaces' sockets itself, so
sockets elsewhere on the host cost no Python work (see docs/performance.md).

:class:`DiagCounter` folds sockets exactly like :class:`bench.collect.netns.SocketCounter`
does with the text of ``/proc/<pid>/net/tcp`` (the fallback where sock_diag is
missing): ``{(state, direction, src, lport, dst, dport): count}``, LISTEN excluded.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable

import numpy as np

from . import nsnetlink

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

#: TCP states by their kernel number (include/net/tcp_states.h); NEW_SYN_RECV is reported as SYN_RECV.
STATE_NAMES = (
    "", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)  # fmt: skip
TCP_LISTEN = 10
TCP_TIME_WAIT = 6
ALL_STATES = 0xFFF  # bits 0..11: every state but NEW_SYN_RECV, which the kernel adds with SYN_RECV

_NLMSGHDR = struct.Struct("=IHHII")
_REQ_V2 = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid (zero: no filter)
#: Offsets inside one netlink message (16-byte header, then struct inet_diag_msg).
_STATE, _SPORT, _DPORT, _SRC, _DST = 16 + 1, 16 + 4, 16 + 6, 16 + 8, 16 + 24
_RECV_SIZE = 1 << 16  # the kernel fills at most ~32 KiB per read of a dump


class SockDiagError(OSError):
    """The kernel refused a sock_diag request (no INET_DIAG support, no permission ...)."""


def open_in_netns(pid: int | None = None) -> socket.socket:
    """A NETLINK_SOCK_DIAG socket in the network namespace of ``pid`` (None: our own)."""
    return nsnetlink.open_in_netns(pid, NETLINK_SOCK_DIAG)


def _offsets(data: bytes) -> np.ndarray:
    """Start of every message in one read: a numpy stride when they all have the first one's length."""
    n = len(data)
    length = _NLMSGHDR.unpack_from(data, 0)[0]
    if length >= 88 and length % 4 == 0 and n % length == 0:
        starts = np.arange(0, n, length, dtype=np.int64)
        if (np.frombuffer(data, dtype="<u4")[starts // 4] == length).all():
            return starts
    offs = []
    off = 0
    unpack = _NLMSGHDR.unpack_from
    while off + _NLMSGHDR.size <= n:
        offs.append(off)
        off += (unpack(data, off)[0] + 3) & ~3
    return np.array(offs, dtype=np.int64)


def dump(sock: socket.socket, family: int, states: int = ALL_STATES, seq: int = 1) -> tuple[bytes, np.ndarray]:
    """One INET_DIAG dump of the TCP sockets of ``family`` in ``states``: the answer and where each socket's message starts."""
    payload = _REQ_V2.pack(family, socket.IPPROTO_TCP, 0, states)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    sock.send(header + payload)
    blobs: list[bytes] = []
    starts: list[np.ndarray] = []
    base = 0
    while True:
        data = sock.recv(_RECV_SIZE)
        if len(data) < _NLMSGHDR.size:
            raise SockDiagError(errno.EIO, "sock_diag: the dump ended without NLMSG_DONE")
        offs = _offsets(data)
        last = int(offs[-1])
        mtype = _NLMSGHDR.unpack_from(data, last)[1]
        done = mtype in (NLMSG_DONE, NLMSG_ERROR)  # the kernel's last message (appended to the last read)
        if done:
            code = -struct.unpack_from("=i", data, last + 16)[0] if len(data) >= last + 20 else 0
            if code > 0:
                raise SockDiagError(code, f"sock_diag: {os.strerror(code)}")
            offs = offs[:-1]
        blobs.append(data)
        starts.append(offs + base)
        base += len(data)
        if done:
            return b"".join(blobs), np.concatenate(starts)


class Fields:
    """The per-socket fields of a dump as numpy arrays (addresses as 16 raw bytes, ports host order)."""

    __slots__ = ("dport", "dst", "sport", "src", "state")

    def __init__(self, answer: tuple[bytes, np.ndarray]):
        data, at = answer
        buf = np.frombuffer(data, dtype=np.uint8)
        self.state = buf[at + _STATE]
        self.sport = (buf[at + _SPORT].astype(np.int32) << 8) | buf[at + _SPORT + 1]
        self.dport = (buf[at + _DPORT].astype(np.int32) << 8) | buf[at + _DPORT + 1]
        span = np.arange(16)
        self.src = buf[(at + _SRC)[:, None] + span]
        self.dst = buf[(at + _DST)[:, None] + span]

    def __len__(self) -> int:
        return len(self.state)


def _text(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped: plain IPv4, like the /proc reader
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


class DiagCounter:
    """Counts a namespace's TCP sockets per (state, direction, src, lport, dst, dport); remembers listeners.

    Same rules as :class:`bench.collect.netns.SocketCounter`: a socket whose local
    address:port (or the wildcard address with that port) is a listener was
    accepted ("in", the peer's port folded to 0); any other was opened from here
    ("out", the local ephemeral port folded to 0). Listeners are remembered for
    the whole run, so sockets accepted by a process that died since still count as "in".
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.listeners: set[tuple[int, bytes, int]] = set()  # (family, local address, port)
        self._seq = 0
        self._names: dict[tuple[int, bytes], str] = {}

    def close(self) -> None:
        self.sock.close()

    def _name(self, family: int, raw: bytes) -> str:
        name = self._names.get((family, raw))
        if name is None:
            name = self._names[(family, raw)] = _text(family, raw)
        return name

    def count(self, families: Iterable[int] = (socket.AF_INET,)) -> dict[tuple[str, str, str, int, str, int], int]:
        """``{(state, direction, src, lport, dst, dport): count}`` over ``families``, LISTEN excluded."""
        out: dict[tuple[str, str, str, int, str, int], int] = {}
        for family in families:
            self._seq += 1
            f = Fields(dump(self.sock, family, ALL_STATES, self._seq))
            if not len(f):
                continue
            listen = f.state == TCP_LISTEN
            for i in np.flatnonzero(listen):
                self.listeners.add((family, f.src[i].tobytes(), int(f.sport[i])))
            keep = ~listen
            state, sport, dport, src, dst = f.state[keep], f.sport[keep], f.dport[keep], f.src[keep], f.dst[keep]
            inbound = np.zeros(len(state), dtype=bool)
            for fam, addr, port in self.listeners:
                if fam != family:
                    continue
                same_port = sport == port
                if addr == b"\0" * 16:
                    inbound |= same_port
                else:
                    inbound |= same_port & (src == np.frombuffer(addr, dtype=np.uint8)).all(axis=1)
            lport = np.where(inbound, sport, 0)
            rport = np.where(inbound, 0, dport)
            # one row of 16+16 address bytes + state, direction and the two ports per socket; count equal rows
            rows = np.empty((len(state), 40), dtype=np.uint8)
            rows[:, :16] = src
            rows[:, 16:32] = dst
            rows[:, 32] = state
            rows[:, 33] = inbound
            rows[:, 34:36] = lport.astype(">u2").view(np.uint8).reshape(-1, 2)
            rows[:, 36:38] = rport.astype(">u2").view(np.uint8).reshape(-1, 2)
            rows[:, 38:] = 0
            keys, counts = np.unique(rows.view("V40").ravel(), return_counts=True)
            for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
                st, d = key[32], key[33]
                out[
                    (
                        STATE_NAMES[st] if st < len(STATE_NAMES) else str(st),
                        "in" if d else "out",
                        self._name(family, key[:16]),
                        int.from_bytes(key[34:36], "big"),
                        self._name(family, key[16:32]),
                        int.from_bytes(key[36:38], "big"),
                    )
                ] = int(n)
        return out
