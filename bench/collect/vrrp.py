"""keepalived's VRRP state changes, from its log.

keepalived logs every transition of a VRRP instance, e.g. (2.x)
``(lbbench) Entering MASTER STATE`` or ``(lbbench) Entering BACKUP STATE (init)``,
older releases ``VRRP_Instance(lbbench) Entering FAULT STATE``, and a tracked
process losing quorum as ``(lbbench) entering FAULT state (...)``. A daemon that
shuts down logs ``Stopping``; that is recorded as state ``STOP``.

Docker adds an RFC 3339 timestamp with nanoseconds to every line
(``docker logs --timestamps``); that is the time used, on the host's clock.
"""

from __future__ import annotations

import datetime as dt
import re

_ENTERING = re.compile(r"\(([^()]*)\)\s+entering\s+([A-Za-z]+)\s+state", re.IGNORECASE)
_STOPPING = re.compile(r"(?:^|:\s)Stopping(?:\s+Keepalived\b.*)?$")
_DOCKER_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)\s(.*)$")


def parse_docker_timestamp(stamp: str, fraction: str | None, zone: str) -> float:
    """Epoch seconds of a Docker log timestamp (nanoseconds are cut to microseconds)."""
    base = dt.datetime.fromisoformat(stamp + ("+00:00" if zone == "Z" else zone))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return base.timestamp() + micro / 1e6


def parse_keepalived_log(text: str) -> list[tuple[float, str, str]]:
    """State changes in a keepalived log with Docker timestamps, as ``(t, state, instance)``.

    Lines without a Docker timestamp are skipped.
    """
    events = []
    for line in text.splitlines():
        m = _DOCKER_TS.match(line)
        if not m:
            continue
        message = m.group(4).rstrip()
        entering = _ENTERING.search(message)
        if entering:
            events.append((parse_docker_timestamp(*m.group(1, 2, 3)), entering.group(2).upper(), entering.group(1)))
        elif _STOPPING.search(message):
            events.append((parse_docker_timestamp(*m.group(1, 2, 3)), "STOP", ""))
    return events
