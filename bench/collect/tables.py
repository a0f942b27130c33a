"""Row buffers of the collectors' tables.

The tables and their schemas are declared in :mod:`bench.results.tables` (the
registry of every sample table, documented column by column in
``reports/README.md``, section "Samples"). Samplers append rows to a
:class:`TableBuffer`; the collector thread flushes every buffer once per
interval as one batch appended to each table's stream (:class:`~bench.results.store.ChunkWriter`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..results.store import ChunkWriter
from ..results.tables import get


class TableBuffer:
    """Rows of one table held in memory until the next flush."""

    def __init__(self, run_dir: Path, table: str, writer: str = "collector"):
        self.table = get(table)
        self.schema = self.table.schema
        self.names = self.table.names
        self.writer = ChunkWriter(run_dir, self.table, writer)
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

    def close(self) -> None:
        """Seal the table's stream (see :class:`~bench.results.store.ChunkWriter`)."""
        self.writer.close()

    def flush(self) -> Path | None:
        """Write the buffered rows as one batch (nothing when empty)."""
        if not len(self):
            return None
        cols = self.cols
        self._reset()
        return self.writer.write(cols)
