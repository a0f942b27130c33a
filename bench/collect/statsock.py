"""The one client of HAProxy's stats socket (a UNIX socket, one command per connection).

Kept apart from :mod:`bench.collect.haproxy` (the collectors' parsers and tables) so that
starting a lab, which waits for every socket to answer, imports no table machinery.
"""

from __future__ import annotations

import socket
from pathlib import Path

SOCKET_TIMEOUT = 0.5


def stats_command(path: Path | str, command: str, timeout: float = SOCKET_TIMEOUT) -> str:
    """Send one command (``show info``, ``show stat`` ...) to a stats socket and return the answer."""
    return query(path, command.encode() + b"\n", timeout)


def query(path: Path | str, command: bytes, timeout: float = SOCKET_TIMEOUT) -> str:
    """Send one command line to a stats socket and read the answer to EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command)
        chunks = []
        while True:
            data = sock.recv(262144)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")
