"""Netlink sockets inside another process's network namespace, and a watch on its addresses.

A netlink socket belongs to the network namespace it was created in, for its whole
life. :func:`open_in_netns` enters the namespace of a process (``setns``, which needs
root like ``nsenter``) in a short-lived thread of its own, creates the socket there
and lets the thread end, so no other thread ever runs in the lab's namespace.
The socket then answers for that namespace from any thread: sock_diag dumps
(:mod:`bench.collect.sockdiag`) or, here, rtnetlink address events.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

NETLINK_ROUTE = 0
CLONE_NEWNET = 0x40000000
#: rtnetlink multicast group of IPv4 address changes (RTMGRP_IPV4_IFADDR).
RTMGRP_IPV4_IFADDR = 0x10

T = TypeVar("T")


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(pid: int, fn: Callable[[], T]) -> T:
    """``fn()`` called in a short-lived thread inside the network namespace of ``pid``; its result or exception.

    What the thread opens there (a netlink socket, a ``/proc/sys/net`` file) stays in that
    namespace; the thread goes back to ours before it ends.
    """
    result: dict[str, Any] = {}

    def enter() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
                try:
                    _setns(target)
                    try:
                        result["value"] = fn()
                    finally:
                        _setns(own)  # should this fail, the thread (and its namespace) ends here anyway
                finally:
                    os.close(target)
            finally:
                os.close(own)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=enter, name=f"lbbench-setns-{pid}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        value = result.get("value")
        if isinstance(value, socket.socket):
            value.close()
        raise result["error"]
    return result["value"]


def open_in_netns(pid: int | None, protocol: int) -> socket.socket:
    """A netlink socket of ``protocol`` in the network namespace of ``pid`` (None: our own)."""
    if pid is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    return run_in_netns(pid, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol))


class AddressWatch:
    """Wakes a waiter as soon as an IPv4 address is added or removed in any watched namespace.

    ``add(pid)`` subscribes to the namespace of ``pid`` (quietly skipped where the
    namespace cannot be entered: then :meth:`wait` just sleeps its timeout, i.e. polls).
    """

    def __init__(self) -> None:
        self._socks: dict[int, socket.socket] = {}

    def add(self, pid: int) -> bool:
        """Watch the namespace of ``pid``; True when it is watched (now or already)."""
        if pid in self._socks:
            return True
        try:
            sock = open_in_netns(pid, NETLINK_ROUTE)
        except OSError:
            return False
        try:
            sock.bind((0, RTMGRP_IPV4_IFADDR))
            sock.setblocking(False)
        except OSError:
            sock.close()
            return False
        self._socks[pid] = sock
        return True

    def wait(self, timeout: float) -> bool:
        """Block until an address changed in a watched namespace (True) or ``timeout`` seconds passed (False)."""
        socks = list(self._socks.values())
        if not socks:
            select.select([], [], [], timeout)
            return False
        ready, _, _ = select.select(socks, [], [], timeout)
        for sock in ready:  # drain: one wake-up per change is enough
            try:
                while sock.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass
        return bool(ready)

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
