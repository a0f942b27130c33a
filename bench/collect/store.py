"""Streaming columnar storage for samples.

A table is a folder ``samples/<table>/`` of small Parquet files, one per writer
per flush (``part-<writer>-<seq>.parquet``). Each file is written to a temporary
name and renamed, so a run killed with SIGKILL keeps every complete chunk and
loses at most the last flush interval. ``read_table`` concatenates the chunks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLES = "samples"


class ChunkWriter:
    """Appends record batches of one table as numbered Parquet chunk files."""

    def __init__(self, run_dir: Path, table: str, writer: str, schema: pa.Schema, dictionary: list[str] | None = None):
        """``dictionary``: the columns to dictionary-encode (default: Parquet's, all of them).

        Naming the few low-cardinality columns of a big table saves the hashing of
        every float (and makes its files smaller); readers see no difference.
        """
        self.folder = Path(run_dir) / SAMPLES / table
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.schema = schema
        self.dictionary: bool | list[str] = True if dictionary is None else dictionary
        self.seq = 0

    def write(self, columns: dict[str, list]) -> Path | None:
        """Write one chunk from column lists (all the same length); empty input writes nothing.

        Columns of the schema missing from ``columns`` are written as nulls.
        """
        if not columns or not next(iter(columns.values())):
            return None
        missing = [name for name in self.schema.names if name not in columns]
        if missing:
            # columns added to a table later are null in chunks from writers that do not fill them
            n = len(next(iter(columns.values())))
            columns = {**columns, **{name: [None] * n for name in missing}}
        table = pa.Table.from_pydict(columns, schema=self.schema)
        final = self.folder / f"part-{self.writer}-{self.seq:06d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd", use_dictionary=self.dictionary)
        os.replace(tmp, final)
        self.seq += 1
        return final


def read_table(run_dir: Path, table: str, schema: pa.Schema | None = None) -> pd.DataFrame:
    """All chunks of ``table`` as one DataFrame (empty, with ``schema``'s columns, when there are none)."""
    folder = Path(run_dir) / SAMPLES / table
    files = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    if not files:
        if schema is not None:
            return schema.empty_table().to_pandas()
        return pd.DataFrame()
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="default").to_pandas()
