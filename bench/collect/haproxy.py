"""HAProxy's own counters over its stats socket: `show info` and `show stat`.

One connection per process per sample sends ``show info;show stat``; HAProxy
answers both in order. `show info` is kept in long format (every numeric field);
`show stat` is parsed by its CSV header, so new HAProxy versions that add or
move columns do not shift values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..results.tables import STAT_EXTRA_FIELDS, STAT_FIELDS
from .statsock import query
from .tables import TableBuffer

#: One round trip per process: both answers arrive on the same connection.
COMMAND = b"show info;show stat\n"
_FLOAT_FIELDS = STAT_FIELDS + STAT_EXTRA_FIELDS


def parse_show_info(text: str) -> dict[str, float]:
    """Every numeric field of a `show info` answer, as ``{name: value}``.

    Text fields (Version, Uptime, node, ...) are skipped.

    >>> parse_show_info("Name: HAProxy\\nCurrConns: 3\\nIdle_pct: 97\\n")
    {'CurrConns': 3.0, 'Idle_pct': 97.0}
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            out[name.strip()] = number
    return out


def _float(value: str | None) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


def parse_show_stat(text: str) -> list[dict[str, object]]:
    """Rows of a `show stat` CSV, parsed by its header.

    Each row has ``pxname``, ``svname``, ``type`` (int; -1 when missing),
    ``status`` (str) and every field of ``STAT_FIELDS + STAT_EXTRA_FIELDS`` as
    a float (NaN when the column is absent or empty).
    """
    names: list[str] | None = None
    rows: list[dict[str, object]] = []
    for line in text.splitlines():
        if line.startswith("# "):
            names = line[2:].split(",")
            continue
        if not line or names is None:
            continue
        raw = dict(zip(names, line.split(","), strict=False))
        type_text = raw.get("type", "")
        row: dict[str, object] = {
            "pxname": raw.get("pxname", ""),
            "svname": raw.get("svname", ""),
            "type": int(type_text) if type_text.isdigit() else -1,
            "status": raw.get("status", ""),
        }
        for name in _FLOAT_FIELDS:
            row[name] = _float(raw.get(name))
        rows.append(row)
    return rows


def split_info_stat(text: str) -> tuple[str, str]:
    """Split the answer to ``show info;show stat`` into its two parts."""
    at = text.find("# pxname")
    if at < 0:
        return text, ""
    return text[:at], text[at:]


@dataclass(frozen=True)
class HAProxyTarget:
    """One HAProxy process to sample."""

    service: str  # compose service, e.g. lb-a-frontend or srv1
    node: str  # lb-a | lb-b | "" for servers
    kind: str  # frontend | backend | monolith | server
    socket: Path


def sample(target: HAProxyTarget, info: TableBuffer, stat: TableBuffer) -> None:
    """Read one process's `show info` and `show stat` into the two tables."""
    t = time.time()
    info_text, stat_text = split_info_stat(query(target.socket, COMMAND))
    values = parse_show_info(info_text)
    if not values:
        raise OSError(f"no `show info` fields from {target.socket}")
    n = len(values)
    info.add_many(
        {
            "t": [t] * n,
            "node": [target.node] * n,
            "service": [target.service] * n,
            "kind": [target.kind] * n,
            "metric": list(values),
            "value": list(values.values()),
        }
    )
    for row in parse_show_stat(stat_text):
        stat.add(t=t, node=target.node, service=target.service, kind=target.kind, **row)
