"""The sample tables the collectors write, declared once.

Each schema below is the contract with the analysis (and is documented column
by column in ``reports/README.md``, section "Samples"). Samplers append rows to
a :class:`TableBuffer`; the collector thread flushes every buffer once per
interval as one Parquet chunk per table (:class:`~bench.collect.store.ChunkWriter`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from .store import ChunkWriter

#: `show stat` columns every `haproxy_stat` row carries (float64, NaN when HAProxy left them empty).
STAT_FIELDS = (
    "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp", "ereq", "econ", "eresp",
    "wretr", "wredis", "rate", "rate_max", "req_rate", "req_tot",
    "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
    "qcur", "qmax", "qtime", "ctime", "rtime", "ttime", "conn_rate", "conn_tot", "cli_abrt", "srv_abrt",
)  # fmt: skip
#: Further `show stat` columns we keep (added to the contract; same rules).
STAT_EXTRA_FIELDS = (
    "req_rate_max", "conn_rate_max", "eint", "connect", "reuse", "idle_conn_cur", "used_conn_cur",
    "ssl_sess", "ssl_reused_sess", "ssl_failed_handshake",
)  # fmt: skip

_ID = [("t", pa.float64()), ("node", pa.string()), ("service", pa.string()), ("kind", pa.string())]

HAPROXY_INFO = pa.schema([*_ID, ("metric", pa.string()), ("value", pa.float64())])

HAPROXY_STAT = pa.schema(
    [
        *_ID,
        ("pxname", pa.string()),
        ("svname", pa.string()),
        ("type", pa.int32()),
        ("status", pa.string()),
        *((name, pa.float64()) for name in STAT_FIELDS + STAT_EXTRA_FIELDS),
    ]
)

CPU = pa.schema(
    [
        ("t", pa.float64()),
        ("container", pa.string()),
        ("role", pa.string()),
        ("node", pa.string()),
        ("cpu", pa.int32()),
        ("usage_s", pa.float64()),
    ]
)

SOCKETS = pa.schema(
    [
        ("t", pa.float64()),
        ("node", pa.string()),
        ("state", pa.string()),
        ("direction", pa.string()),
        ("src", pa.string()),
        ("lport", pa.int32()),
        ("dst", pa.string()),
        ("dport", pa.int32()),
        ("count", pa.int32()),
    ]
)

PORT_RANGE = pa.schema([("t", pa.float64()), ("node", pa.string()), ("low", pa.int32()), ("high", pa.int32())])

NETDEV = pa.schema(
    [
        ("t", pa.float64()),
        ("node", pa.string()),
        ("iface", pa.string()),
        ("network", pa.string()),
        ("rx_bytes", pa.int64()),
        ("tx_bytes", pa.int64()),
        ("rx_packets", pa.int64()),
        ("tx_packets", pa.int64()),
        ("rx_dropped", pa.int64()),
        ("tx_dropped", pa.int64()),
    ]
)

VRRP = pa.schema([("t", pa.float64()), ("node", pa.string()), ("holds_vip", pa.bool_())])

VRRP_EVENTS = pa.schema(
    [("t", pa.float64()), ("node", pa.string()), ("state", pa.string()), ("instance", pa.string())]
)

COLLECTOR_SELF = pa.schema([("t", pa.float64()), ("usage_s", pa.float64()), ("tick_s", pa.float64())])

#: Table name -> schema, for every table the collectors write.
TABLES: dict[str, pa.Schema] = {
    "haproxy_info": HAPROXY_INFO,
    "haproxy_stat": HAPROXY_STAT,
    "cpu": CPU,
    "sockets": SOCKETS,
    "port_range": PORT_RANGE,
    "netdev": NETDEV,
    "vrrp": VRRP,
    "vrrp_events": VRRP_EVENTS,
    "collector_self": COLLECTOR_SELF,
}


class TableBuffer:
    """Rows of one table held in memory until the next flush."""

    def __init__(self, run_dir: Path, table: str, writer: str = "collector"):
        self.table = table
        self.schema = TABLES[table]
        self.names = tuple(self.schema.names)
        self.writer = ChunkWriter(run_dir, table, writer, self.schema)
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in self.names}

    def __len__(self) -> int:
        return len(self.cols[self.names[0]])

    def add(self, **row: Any) -> None:
        """Append one row; every column of the schema must be given."""
        cols = self.cols
        for name in self.names:
            cols[name].append(row[name])

    def add_many(self, columns: dict[str, list[Any]]) -> None:
        """Append several rows given as equal-length column lists."""
        for name in self.names:
            self.cols[name].extend(columns[name])

    def flush(self) -> Path | None:
        """Write the buffered rows as one chunk (nothing when empty)."""
        if not len(self):
            return None
        cols = self.cols
        self._reset()
        return self.writer.write(cols)
