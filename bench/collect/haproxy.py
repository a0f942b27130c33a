"""HAProxy's own counters over its stats socket: `show info` and `show stat`.

One connection per process per sample sends ``show info;show stat``; HAProxy
answers both in order. `show info` is kept in long format (every numeric field);
`show stat` is parsed by its CSV header, so new HAProxy versions that add or
move columns do not shift values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

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


class _Numbers(dict[str, float]):
    """``float(text)`` of a `show stat` field, NaN for an empty or non-numeric one; remembered.

    Most fields repeat from one second to the next (0, empty, limits), and a hit is a dict lookup
    in C where ``float()`` is a call: the stats of a split lab parse in about half the CPU.
    Cleared when full, so counters that keep growing do not grow it without end.
    """

    LIMIT = 8192

    def __missing__(self, text: str) -> float:
        try:
            value = float(text) if text else math.nan
        except ValueError:
            value = math.nan
        if len(self) >= self.LIMIT:
            self.clear()
        self[text] = value
        return value


_NUMBERS = _Numbers()

#: The columns of :func:`parse_show_stat_columns`, in the order of the table's schema.
STAT_COLUMNS = ("pxname", "svname", "type", "status", *_FLOAT_FIELDS)


def parse_show_stat_columns(text: str) -> dict[str, list[object]]:
    """The rows of a `show stat` CSV as columns (``STAT_COLUMNS``), parsed by its header.

    ``pxname``, ``svname``, ``status`` (str; empty when missing), ``type`` (int; -1 when
    missing) and every field of ``STAT_FIELDS + STAT_EXTRA_FIELDS`` as a float (NaN when the
    column is absent, empty or not a number). The columns are found by name once per answer
    (``itemgetter``), and the numbers go through :class:`_Numbers` (this runs for every HAProxy
    process every second).
    """
    columns: dict[str, list[object]] = {name: [] for name in STAT_COLUMNS}
    pxname, svname, kind, status = (columns[name] for name in STAT_COLUMNS[:4])
    rows: list[tuple[str, ...]] = []  # per row, the float fields' text in _FLOAT_FIELDS order
    get_text: Callable[[list[str]], Any] | None = None  # itemgetters of the header's columns
    get_floats: Callable[[list[str]], Any] | None = None
    width = 0
    for line in text.splitlines():
        if line.startswith("# "):
            names = line[2:].split(",")
            at = {name: i for i, name in enumerate(names)}
            get_text = itemgetter(*(at.get(name, -1) for name in STAT_COLUMNS[:4]))
            get_floats = itemgetter(*(at.get(name, -1) for name in _FLOAT_FIELDS))
            width = len(names)
            continue
        if not line or get_text is None or get_floats is None:
            continue
        fields = line.split(",")
        if len(fields) < width:
            fields += [""] * (width - len(fields))
        fields.append("")  # what index -1 (a column the header lacks) reads
        p, s, k, st = get_text(fields)
        pxname.append(p)
        svname.append(s)
        kind.append(int(k) if k.isdigit() else -1)
        status.append(st)
        rows.append(get_floats(fields))
    number = _NUMBERS.__getitem__
    for name, column in zip(_FLOAT_FIELDS, zip(*rows, strict=True), strict=False):
        columns[name].extend(map(number, column))
    return columns


def parse_show_stat(text: str) -> list[dict[str, object]]:
    """Rows of a `show stat` CSV, parsed by its header (:func:`parse_show_stat_columns`, one dict per row).

    Each row has ``pxname``, ``svname``, ``type`` (int; -1 when missing), ``status`` (str)
    and every field of ``STAT_FIELDS + STAT_EXTRA_FIELDS`` as a float (NaN when the column
    is absent or empty).
    """
    columns = parse_show_stat_columns(text)
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


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
    rows = parse_show_stat_columns(stat_text)
    n = len(rows["pxname"])
    if n:
        stat.add_many({"t": [t] * n, "node": [target.node] * n, "service": [target.service] * n, "kind": [target.kind] * n, **rows})
