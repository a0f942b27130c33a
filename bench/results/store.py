"""The one way sample tables are written, compacted and read.

While a run goes, a table is a folder ``samples/<table>/`` of small chunk files,
one per writer per flush: ``part-<writer>-<seq>.arrow``, Arrow IPC files
(uncompressed: about ten times cheaper to write and to read back than a small
Parquet file, which matters to the collectors' and the load generator's own CPU
and to reading thousands of them). Each is written under a temporary name and
renamed, so a run killed with SIGKILL keeps every complete chunk and loses at
most the last flush interval. Runs recorded before this wrote Parquet chunks
(``part-<writer>-<seq>.parquet``); they are read the same way.

When the run ends (and in ``bench report`` for a run that was killed before, or
recorded before compaction existed), :func:`compact_run` merges each table's
chunks into one Parquet file, ``samples/<table>/compacted.parquet`` (zstd), which
lists the chunks it holds in its metadata. It is written under a temporary name
and renamed before any chunk is removed, so a crash at any point leaves either
the chunks, or the compacted file plus chunks it already holds (which readers
skip and the next compaction removes). Chunks a late writer adds after a
compaction are read beside it and merged by the next one.

:func:`read_table` (pandas) and :func:`read_arrow` read a table in any of these
forms, only the columns asked for, with the columns and types of its
declaration in :mod:`bench.results.tables`: a table without rows still has its
columns, and a column a run's files lack (written before it was added) reads
as nulls. :func:`chunk_files` and :func:`read_chunk` serve readers that follow
a run while it goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .document import ResultsError
from .layout import RunDir
from .tables import TABLES, Table, get

#: Suffix of the chunks written now (Arrow IPC) and by runs recorded before (Parquet).
CHUNK_SUFFIX = ".arrow"
OLD_CHUNK_SUFFIX = ".parquet"
#: File name of a compacted table inside its folder.
COMPACTED = "compacted.parquet"
#: Parquet metadata key of a compacted file: the chunk file names it holds, one per line.
CHUNKS_KEY = b"lbbench.chunks"
#: Rows per row group of a compacted file.
ROW_GROUP = 1 << 20


class StoreError(ResultsError):
    """A sample file cannot be read (damaged, or not a sample file at all); the message names it."""

    def __init__(self, problem: str):
        super().__init__(problem, "move the damaged file out of the run directory and run `bench report` again")


@contextlib.contextmanager
def _readable(what: Path) -> Iterator[None]:
    """Turn Arrow's and the OS's errors while reading ``what`` into one :class:`StoreError` naming it."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"{what}: cannot read this sample file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc


def table_dir(run_dir: Path, name: str) -> Path:
    """``samples/<name>/`` of a run directory."""
    return RunDir(Path(run_dir)).table(name)


class ChunkWriter:
    """Appends rows of one table as numbered chunk files."""

    def __init__(self, run_dir: Path, table: Table | str, writer: str):
        """``table``: a declaration of :mod:`bench.results.tables` (or its name); ``writer``: who writes (unique per process)."""
        self.table = get(table) if isinstance(table, str) else table
        self.folder = table_dir(run_dir, self.table.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.schema = self.table.schema
        self.seq = 0

    def write(self, columns: dict[str, list[Any]] | dict[str, pa.Array]) -> Path | None:
        """Write one chunk from equal-length columns (lists or Arrow arrays); empty input writes nothing.

        Columns of the schema missing from ``columns`` are written as nulls.
        """
        if not columns:
            return None
        n = len(next(iter(columns.values())))
        if not n:
            return None
        missing = [name for name in self.schema.names if name not in columns]
        if missing:
            # columns added to a table later are null in chunks from writers that do not fill them
            columns = {**columns, **{name: pa.nulls(n, self.schema.field(name).type) for name in missing}}
        table = pa.Table.from_pydict(columns, schema=self.schema)
        final = self.folder / f"part-{self.writer}-{self.seq:06d}{CHUNK_SUFFIX}"
        tmp = final.with_name(final.name + ".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, self.schema) as out:
            out.write_table(table)
        os.replace(tmp, final)
        self.seq += 1
        return final


# --------------------------------------------------------------------------- reading


def _compacted_chunks(path: Path) -> set[str]:
    with _readable(path):
        meta = pq.read_schema(path).metadata or {}
    return set(meta.get(CHUNKS_KEY, b"").decode().split("\n")) - {""}


def chunk_files(run_dir: Path, name: str) -> list[Path]:
    """Every chunk file of table ``name`` present now, by name (writer, then sequence)."""
    folder = table_dir(run_dir, name)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in sorted(names) if n.startswith("part-") and n.endswith((CHUNK_SUFFIX, OLD_CHUNK_SUFFIX))]


def table_files(run_dir: Path, name: str) -> tuple[Path | None, list[Path]]:
    """The compacted file of table ``name`` (None when there is none) and the chunks it does not hold."""
    compacted = table_dir(run_dir, name) / COMPACTED
    chunks = chunk_files(run_dir, name)
    if not compacted.exists():
        return None, chunks
    held = _compacted_chunks(compacted)
    return compacted, [c for c in chunks if c.name not in held]


def _schema_of(name: str, files: Sequence[Path], read: bool = False) -> pa.Schema:
    """The declared schema of ``name`` (``read``: as readers give it), or for an undeclared table the union of its files' schemas."""
    if name in TABLES:
        return TABLES[name].read_schema if read else TABLES[name].schema
    schemas = [_file_schema(f) for f in files]
    return pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])


def _file_schema(path: Path) -> pa.Schema:
    with _readable(path):
        if path.suffix == CHUNK_SUFFIX:
            with pa.OSFile(str(path)) as f:
                return ipc.open_file(f).schema
        return pq.read_schema(path).remove_metadata()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order and types (missing ones null)."""
    if table.schema.equals(schema):
        return table
    n = table.num_rows
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.chunked_array([pa.nulls(n, f.type)]))
    return pa.Table.from_arrays(arrays, schema=schema)


def read_chunk(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One chunk file (Arrow IPC, or Parquet from an older run) with ``columns`` of those it has."""
    with _readable(path):
        if path.suffix == CHUNK_SUFFIX:
            with pa.OSFile(str(path)) as f:
                table = ipc.open_file(f).read_all()
            return table if columns is None else table.select([c for c in columns if c in table.column_names])
        present = pq.read_schema(path).names
        return pq.read_table(path, columns=None if columns is None else [c for c in columns if c in present])


def _batches(files: Sequence[Path], schema: pa.Schema, where: Where | None = None) -> Iterator[pa.Table]:
    """Every file's rows in ``schema`` (those ``where`` keeps), file by file (Parquet files in one multi-threaded scan)."""
    keep = None if where is None else pc.field(where[0]).isin(pa.array(sorted(where[1]), pa.string()))
    # dictionary columns come straight from Parquet's dictionary pages, never as one string per row
    parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=[f.name for f in schema if pa.types.is_dictionary(f.type)]))
    run: list[Path] = []
    for f in [*files, None]:
        if f is not None and f.suffix != CHUNK_SUFFIX:
            run.append(f)
            continue
        if run:
            # the declared schema lets one scan read files that lack columns (nulls) or have extra ones
            with _readable(run[0].parent if len(run) > 1 else run[0]):
                part = ds.dataset([str(p) for p in run], schema=schema, format=parquet).to_table(columns=schema.names, filter=keep)
            yield part
            run = []
        if f is not None:
            chunk = read_chunk(f, schema.names)
            with _readable(f):
                chunk = _conform(chunk, schema)
                if keep is not None:
                    chunk = chunk.filter(keep)
            yield chunk


#: Rows to keep: (column, the values it may have).
Where = tuple[str, Collection[str]]


def read_arrow(run_dir: Path, name: str, columns: Iterable[str] | None = None, where: Where | None = None) -> pa.Table:
    """Table ``name`` of a run directory as Arrow, with ``columns`` (default: all) of its declaration.

    Reads the compacted file and every chunk it does not hold; a table without
    files is an empty table with the declared columns. ``where`` keeps only the rows
    whose column has one of the values given (filtered while reading).
    """
    columns = None if columns is None else list(columns)
    try:
        return _read_arrow(run_dir, name, columns, where)
    except FileNotFoundError:
        # another process compacted the table while we listed it: its files are in place now
        return _read_arrow(run_dir, name, columns, where)


def _read_arrow(run_dir: Path, name: str, columns: list[str] | None, where: Where | None = None) -> pa.Table:
    compacted, chunks = table_files(run_dir, name)
    files = ([compacted] if compacted else []) + chunks
    schema = _schema_of(name, files, read=True)
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown and name in TABLES:
            raise KeyError(f"table {name} has no column(s) {', '.join(unknown)}")
        schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
    wanted = schema
    if where is not None and where[0] not in schema.names:
        schema = schema.append(_schema_of(name, files, read=True).field(where[0]))
    parts = list(_batches(files, schema, where))
    if not parts:
        return wanted.empty_table()
    table = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
    return table.select(wanted.names) if len(wanted) != len(schema) else table


#: Arrow -> pandas types where pandas' own choice is costly: a nullable bool column is otherwise one Python object per row.
_PANDAS_TYPES = {pa.bool_(): pd.BooleanDtype()}


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as the DataFrame the analysis works on.

    Dictionaries become categoricals whose categories are in lexical order (so sorting
    and grouping order rows as the strings would), nullable bools pandas' booleans.
    ``table`` is consumed: its buffers are released column by column as they are
    converted (and columns without nulls are not copied), so a long table is not
    held twice.
    """
    df = table.to_pandas(types_mapper=_PANDAS_TYPES.get, split_blocks=True, self_destruct=True)
    del table
    for name, dtype in df.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            df[name] = df[name].cat.reorder_categories(sorted(dtype.categories))
    return df


def read_table(run_dir: Path, name: str, columns: Iterable[str] | None = None, where: Where | None = None) -> pd.DataFrame:
    """Table ``name`` as a DataFrame (see :func:`read_arrow` and :func:`to_pandas`)."""
    return to_pandas(read_arrow(run_dir, name, columns, where))


def as_read(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Rows of declared table ``name`` (a DataFrame of some of its columns) as :func:`read_table` gives them.

    Declared columns ``df`` lacks are null, columns it has take the declared types;
    for tests and tools that write rows by hand.
    """
    schema = get(name).read_schema
    n = len(df)
    arrays = [
        pa.array(df[f.name], from_pandas=True).cast(f.type) if f.name in df.columns else pa.nulls(n, f.type)
        for f in schema
    ]
    return to_pandas(pa.Table.from_arrays(arrays, schema=schema))


def empty_frame(name: str, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Declared table ``name`` without rows, as :func:`read_table` gives it (for tests and defaults)."""
    schema = get(name).read_schema
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    return to_pandas(schema.empty_table())


# --------------------------------------------------------------------------- compaction


def compact_table(run_dir: Path, name: str) -> Path | None:
    """Merge table ``name``'s chunks (and an earlier compacted file) into ``compacted.parquet``; returns it.

    Nothing is rewritten when the table has no chunk outside a compacted file.
    Crash-safe: the chunks are removed only after the compacted file listing them
    is in place.
    """
    if not table_dir(run_dir, name).is_dir():
        return None
    with _compaction_lock(run_dir):
        return _compact_table(run_dir, name)


@contextlib.contextmanager
def _compaction_lock(run_dir: Path) -> Iterator[None]:
    """One compaction at a time per run directory (two `bench report`s of one run)."""
    fd = os.open(RunDir(Path(run_dir)).samples, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _compact_table(run_dir: Path, name: str) -> Path | None:
    folder = table_dir(run_dir, name)
    compacted, chunks = table_files(run_dir, name)
    stale = [c for c in chunk_files(run_dir, name) if c not in chunks] if compacted else []
    if not chunks:
        for c in stale:  # a compaction that was killed after its rename
            c.unlink(missing_ok=True)
        return compacted
    files = ([compacted] if compacted else []) + chunks
    held = (_compacted_chunks(compacted) if compacted else set()) | {c.name for c in chunks}
    schema = _schema_of(name, files)
    declared = TABLES.get(name)
    dictionary: bool | list[str] = True if declared is None or declared.dictionary is None else list(declared.dictionary)
    for leftover in folder.glob(f"{COMPACTED}.*.tmp"):  # from a compaction that was killed
        leftover.unlink(missing_ok=True)
    final = folder / COMPACTED
    tmp = folder / f"{COMPACTED}.{os.getpid()}.tmp"
    try:
        with pq.ParquetWriter(tmp, schema.with_metadata({CHUNKS_KEY: "\n".join(sorted(held)).encode()}), compression="zstd", use_dictionary=dictionary) as out:
            pending: list[pa.Table] = []
            rows = 0
            for part in _batches(files, schema):
                pending.append(part)
                rows += part.num_rows
                if rows >= ROW_GROUP:
                    out.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=ROW_GROUP)
                    pending, rows = [], 0
            if pending:
                out.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=ROW_GROUP)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a damaged chunk (StoreError) or Ctrl-C: leave the run directory as it was
        raise
    os.replace(tmp, final)
    for c in chunks + stale:
        c.unlink(missing_ok=True)
    return final


def compact_run(run_dir: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Compact every table of a run directory (``names``: only those); returns the compacted files."""
    root = RunDir(Path(run_dir)).samples
    if names is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    out = []
    for name in names:
        path = compact_table(run_dir, name)
        if path is not None:
            out.append(path)
    return out
