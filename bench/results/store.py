"""The one way sample tables are written, compacted and read.

While a run goes, each writer (the collector thread, every load-generator
process) appends its rows of a table to one file of its own,
``samples/<table>/part-<writer>-<id>.arrows``: an Arrow IPC stream, one record
batch per flush (once a second). Appending costs a write, not a file; a process
killed with SIGKILL leaves at most a torn last batch, which readers skip, so a
killed run keeps every complete second. A writer that closes (at exit) seals its
stream with Arrow's end-of-stream marker. Runs recorded before wrote one chunk
file per writer per flush (``part-<writer>-<seq>.parquet``, later ``.arrow``);
they are read the same way.

When the run ends (and in ``bench report`` for a run that was killed before, or
recorded before compaction existed), :func:`compact_run` merges each table into
one Parquet file, ``samples/<table>/compacted.parquet``, which lists in its
metadata what it holds: whole files, or the first batches of a stream that may
still grow. It is written under a temporary name and renamed before any file it
holds is removed, so a crash at any point leaves the rows either in their files
or in the compacted file, never lost, and readers never count them twice. Rows a
writer appends after a compaction are read beside it and merged by the next one.

:func:`read_table` (pandas) and :func:`read_arrow` read a table in any of these
forms, only the columns (and rows) asked for, with the columns and types of its
declaration in :mod:`bench.results.tables`: a table without rows still has its
columns, and a column a run's files lack (written before it was added) reads
as nulls. :class:`TableTail` follows a table while the run goes.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import socket
import time
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .document import ResultsError
from .layout import RunDir
from .tables import TABLES, Table, get

#: Suffix of a writer's stream (written now) and of the chunk files of runs recorded before.
STREAM_SUFFIX = ".arrows"
OLD_SUFFIXES = (".arrow", ".parquet")
#: Arrow's end-of-stream marker: a sealed stream ends with it.
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
#: How every message of an Arrow IPC stream begins (the schema first): a torn schema is a prefix of it and more.
CONTINUATION = b"\xff\xff\xff\xff"
#: File name of a compacted table inside its folder.
COMPACTED = "compacted.parquet"
#: Parquet metadata key of a compacted file: what it holds, one file per line: ``name``
#: (all of it) or ``name:N`` (the first N batches of a stream that was still open).
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


def process_writer() -> str:
    """A writer name unique to this process, also across load-generator containers (host and pid)."""
    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())
    return f"{host}-{os.getpid()}"


#: Writers not closed yet: sealed at interpreter exit.
_OPEN: weakref.WeakSet[ChunkWriter] = weakref.WeakSet()


class ChunkWriter:
    """Appends rows of one table to this writer's stream file, one record batch per :meth:`write`."""

    def __init__(self, run_dir: Path, table: Table | str, writer: str):
        """``table``: a declaration of :mod:`bench.results.tables` (or its name); ``writer``: who writes (unique per process)."""
        self.table = get(table) if isinstance(table, str) else table
        self.folder = table_dir(run_dir, self.table.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.schema = self.table.schema
        self.path: Path | None = None
        self._sink: pa.NativeFile | None = None
        self._out: ipc.RecordBatchStreamWriter | None = None
        self._pid = 0  # the process that opened the stream

    def write(self, columns: dict[str, list[Any]] | dict[str, pa.Array]) -> Path | None:
        """Append one batch from equal-length columns (lists or Arrow arrays); empty input writes nothing.

        Columns of the schema missing from ``columns`` are written as nulls. Returns
        the stream's path.
        """
        if not columns:
            return None
        n = len(next(iter(columns.values())))
        if not n:
            return None
        missing = [name for name in self.schema.names if name not in columns]
        if missing:
            # columns added to a table later are null in rows from writers that do not fill them
            columns = {**columns, **{name: pa.nulls(n, self.schema.field(name).type) for name in missing}}
        table = pa.Table.from_pydict(columns, schema=self.schema)
        if self._out is None:
            self._open()
        assert self._out is not None and self._sink is not None
        self._out.write_table(table)
        self._sink.flush()  # the whole batch in one write(): a killed writer leaves at most this one torn
        return self.path

    def _open(self) -> None:
        # a name of its own, never reused: a compacted file may name it
        self.path = self.folder / f"part-{self.writer}-{time.time_ns():x}{STREAM_SUFFIX}"
        # Buffered: the IPC writer writes each buffer of a batch on its own (~40 write() calls for a
        # table of 50 columns); the flush after each batch makes that one.
        self._sink = pa.BufferedOutputStream(pa.OSFile(str(self.path), "wb"), 1 << 16)
        self._out = ipc.new_stream(self._sink, self.schema)
        self._pid = os.getpid()
        _OPEN.add(self)

    def close(self) -> None:
        """Seal the stream (end-of-stream marker); a later :meth:`write` starts a new one."""
        if self._out is not None and self._pid != os.getpid():
            self._out = self._sink = None  # a forked child: the stream is its parent's to seal
        if self._out is not None:
            self._out.close()
            assert self._sink is not None
            self._sink.close()
        self._out = self._sink = None
        _OPEN.discard(self)


@atexit.register
def _seal_all() -> None:
    for writer in list(_OPEN):
        with contextlib.suppress(Exception):
            writer.close()


# --------------------------------------------------------------------------- memory


@functools.cache
def use_small_pages() -> None:
    """Let numpy and Arrow allocate long tables in ordinary 4 kB pages (once per process; an environment that says otherwise wins).

    numpy asks Linux for transparent huge pages (``madvise``) for every array of 4 MB
    or more, and the allocator of pyarrow's wheels (mimalloc) does alike: a first touch
    of such memory then takes a free 2 MB block, which a virtual machine's host backs
    only then (and the kernel may compact memory to find one). On the 2-core VM this
    project is measured on, a fresh GB cost 5-9 s of system time that way and 0.5 s in
    4 kB pages (docs/performance.md, "Analysis at scale"): most of a 10M-request report's
    time. Hence numpy without the advice (unless ``NUMPY_MADVISE_HUGEPAGE`` is set) and
    Arrow on jemalloc, else the system allocator (unless ``ARROW_DEFAULT_MEMORY_POOL``
    is set). The figures are the same whatever the allocator.
    """
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        core = getattr(np, "_core", None)  # numpy >= 2; numpy 1.x: np.core
        setter = getattr(getattr(core if core is not None else np.core, "multiarray", None), "_set_madvise_hugepage", None)
        if setter is not None:
            setter(False)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:  # a pyarrow built without jemalloc
            pool = pa.system_memory_pool()
        pa.set_memory_pool(pool)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Part:
    """One file of a table's rows: a writer's stream (``skip``: its first batches a compacted file holds) or an old chunk."""

    path: Path
    skip: int = 0

    @property
    def stream(self) -> bool:
        return self.path.suffix == STREAM_SUFFIX


def _held(path: Path) -> dict[str, int | None]:
    """What a compacted file holds: file name -> None (all of it) or the number of a stream's batches."""
    with _readable(path):
        meta = pq.read_schema(path).metadata or {}
    out: dict[str, int | None] = {}
    for line in meta.get(CHUNKS_KEY, b"").decode().split("\n"):
        if line:
            name, _, batches = line.partition(":")
            out[name] = int(batches) if batches else None
    return out


def _held_line(name: str, batches: int | None) -> str:
    return name if batches is None else f"{name}:{batches}"


def part_files(run_dir: Path, name: str) -> list[Path]:
    """Every stream and chunk file of table ``name`` present now, by name."""
    folder = table_dir(run_dir, name)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in sorted(names) if n.startswith("part-") and n.endswith((STREAM_SUFFIX, *OLD_SUFFIXES))]


def table_files(run_dir: Path, name: str) -> tuple[Path | None, list[Part]]:
    """The compacted file of table ``name`` (None when there is none) and the rows it does not hold."""
    compacted = table_dir(run_dir, name) / COMPACTED
    files = part_files(run_dir, name)
    if not compacted.exists():
        return None, [Part(f) for f in files]
    held = _held(compacted)
    parts = []
    for f in files:
        if f.name not in held:
            parts.append(Part(f))
        elif f.suffix == STREAM_SUFFIX and held[f.name] is not None:
            parts.append(Part(f, int(held[f.name] or 0)))
    return compacted, parts


def _schema_of(name: str, files: Sequence[Path], read: bool = False) -> pa.Schema:
    """The declared schema of ``name`` (``read``: as readers give it), or for an undeclared table the union of its files' schemas."""
    if name in TABLES:
        return TABLES[name].read_schema if read else TABLES[name].schema
    schemas = [_file_schema(f) for f in files]
    return pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])


def _file_schema(path: Path) -> pa.Schema:
    if path.suffix == STREAM_SUFFIX:
        return read_stream(path)[0].schema
    with _readable(path):
        if path.suffix == ".arrow":
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


def read_stream(path: Path, skip: int = 0) -> tuple[pa.Table, int, bool]:
    """A writer's stream: its rows after the first ``skip`` batches, how many batches it has, whether it is sealed.

    A torn last batch (the writer was killed mid-write, or is writing it now) is left
    out; a stream too short to hold its schema yet has no rows.
    """
    with _readable(path):
        data = pa.memory_map(str(path))
        size = data.size()
        try:
            reader = ipc.open_stream(data)
        except (pa.ArrowInvalid, OSError, EOFError):
            # the writer is still writing (or was killed writing) the schema: a short
            # beginning of a stream (which starts with the continuation marker), not any bytes
            if size < 4096 and CONTINUATION.startswith(data.read_at(min(size, len(CONTINUATION)), 0)):
                return pa.table({}), 0, False
            raise
        batches = []
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError, EOFError):
                break  # a torn last batch
        sealed = size >= len(EOS) and data.read_at(len(EOS), size - len(EOS)) == EOS
        return pa.Table.from_batches(batches[skip:], schema=reader.schema), len(batches), sealed


def read_part(part: Part | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of one file (a stream after its ``skip`` batches, or an old chunk) with ``columns`` of those it has."""
    part = part if isinstance(part, Part) else Part(part)
    path = part.path
    if part.stream:
        table = read_stream(path, part.skip)[0]
    else:
        with _readable(path):
            if path.suffix == ".arrow":
                with pa.OSFile(str(path)) as f:
                    table = ipc.open_file(f).read_all()
            else:
                present = pq.read_schema(path).names
                return pq.read_table(path, columns=None if columns is None else [c for c in columns if c in present])
    return table if columns is None else table.select([c for c in columns if c in table.column_names])


def _batches(files: Sequence[Part], schema: pa.Schema, where: Where | None = None) -> Iterator[pa.Table]:
    """Every file's rows in ``schema`` (those ``where`` keeps), file by file (Parquet files in one multi-threaded scan)."""
    keep = None if where is None else pc.field(where[0]).isin(pa.array(sorted(where[1]), pa.string()))
    # dictionary columns come straight from Parquet's dictionary pages, never as one string per row
    parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=[f.name for f in schema if pa.types.is_dictionary(f.type)]))
    run: list[Path] = []
    for f in [*files, None]:
        if f is not None and f.path.suffix == ".parquet":
            run.append(f.path)
            continue
        if run:
            # the declared schema lets one scan read files that lack columns (nulls) or have extra ones
            with _readable(run[0].parent if len(run) > 1 else run[0]):
                part = ds.dataset([str(p) for p in run], schema=schema, format=parquet).to_table(columns=schema.names, filter=keep)
            yield part
            run = []
        if f is not None:
            chunk = read_part(f, schema.names)
            with _readable(f.path):
                chunk = _conform(chunk, schema)
                if keep is not None:
                    chunk = chunk.filter(keep)
            yield chunk


class TableTail:
    """The rows of one table written since the last call: for following a run while it goes.

    The first call returns what the table holds (its compacted file too); later calls
    only the batches appended to the writers' streams since (a batch still being
    written is left for the next call) and old-style chunk files not read before.
    """

    def __init__(self, run_dir: Path, name: str, columns: Sequence[str] | None = None):
        self.run_dir, self.name = Path(run_dir), name
        self.columns = list(columns) if columns is not None else None
        self._cursors: dict[str, _Cursor] = {}
        self._seen: set[str] = set()
        self._started = False

    def read_new(self) -> pa.Table:
        """New rows (the declared columns asked for); none when nothing came."""
        schema = _schema_of(self.name, [], read=False)
        if self.columns is not None:
            schema = pa.schema([schema.field(c) for c in self.columns])
        pieces = []
        if not self._started:
            self._started = True
            with _samples_lock(self.run_dir, fcntl.LOCK_SH):
                compacted, parts = table_files(self.run_dir, self.name)
                if compacted is not None:
                    with contextlib.suppress(StoreError, FileNotFoundError):
                        pieces.append(read_part(compacted, schema.names))
                    held = _held(compacted)
                    self._seen.update(n for n, batches in held.items() if batches is None)
                    self._cursors.update({p.path.name: _Cursor(p.path, p.skip) for p in parts if p.stream})
        for f in part_files(self.run_dir, self.name):
            if f.name in self._seen:
                continue
            if f.suffix == STREAM_SUFFIX:
                batches = self._cursors.setdefault(f.name, _Cursor(f)).read_new()
                if batches:
                    pieces.append(pa.Table.from_batches(batches))
            else:
                with contextlib.suppress(StoreError, FileNotFoundError):
                    pieces.append(read_part(f))
                    self._seen.add(f.name)
        if not pieces:
            return schema.empty_table()
        return pa.concat_tables([_conform(p.select([c for c in schema.names if c in p.column_names]), schema) for p in pieces])


class _Cursor:
    """Where the next batch of one stream starts (the first ``skip`` batches are someone else's)."""

    def __init__(self, path: Path, skip: int = 0):
        self.path = path
        self.offset = 0
        self.skip = skip
        self.schema: pa.Schema | None = None

    def read_new(self) -> list[pa.RecordBatch]:
        out: list[pa.RecordBatch] = []
        try:
            with pa.OSFile(str(self.path)) as f:
                f.seek(self.offset)
                while True:
                    try:
                        msg = ipc.read_message(f)
                    except (pa.ArrowInvalid, OSError, EOFError):
                        break  # the end, or a batch still being written
                    if msg is None:
                        break
                    if self.schema is None:
                        self.schema = ipc.read_schema(msg)
                    elif self.skip:
                        self.skip -= 1
                    else:
                        out.append(ipc.read_record_batch(msg, self.schema))
                    self.offset = f.tell()
        except FileNotFoundError:
            pass  # compacted away
        return out


def newest_write(run_dir: Path) -> float | None:
    """When a stream of the run was last written to (epoch seconds; None without streams)."""
    root = RunDir(Path(run_dir)).samples
    times = [f.stat().st_mtime for f in root.glob(f"*/part-*{STREAM_SUFFIX}")] if root.is_dir() else []
    return max(times) if times else None


#: Rows to keep: (column, the values it may have).
Where = tuple[str, Collection[str]]


def read_arrow(run_dir: Path, name: str, columns: Iterable[str] | None = None, where: Where | None = None) -> pa.Table:
    """Table ``name`` of a run directory as Arrow, with ``columns`` (default: all) of its declaration.

    Reads the compacted file and every chunk it does not hold; a table without
    files is an empty table with the declared columns. ``where`` keeps only the rows
    whose column has one of the values given (filtered while reading).
    """
    columns = None if columns is None else list(columns)
    with _samples_lock(run_dir, fcntl.LOCK_SH):  # a compaction never runs between listing the files and reading them
        return _read_arrow(run_dir, name, columns, where)


def _read_arrow(run_dir: Path, name: str, columns: list[str] | None, where: Where | None = None) -> pa.Table:
    compacted, parts = table_files(run_dir, name)
    files = ([Part(compacted)] if compacted else []) + parts
    schema = _schema_of(name, [f.path for f in files], read=True)
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown and name in TABLES:
            raise KeyError(f"table {name} has no column(s) {', '.join(unknown)}")
        schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
    wanted = schema
    if where is not None and where[0] not in schema.names:
        schema = schema.append(_schema_of(name, [f.path for f in files], read=True).field(where[0]))
    pieces = list(_batches(files, schema, where))
    if not pieces:
        return wanted.empty_table()
    table = pa.concat_tables(pieces).combine_chunks() if len(pieces) > 1 else pieces[0]
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
    df: pd.DataFrame = table.to_pandas(types_mapper=_PANDAS_TYPES.get, split_blocks=True, self_destruct=True)
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


def compact_table(run_dir: Path, name: str, final: bool = False) -> Path | None:
    """Merge table ``name``'s rows outside its compacted file into ``compacted.parquet``; returns it.

    Nothing is rewritten when every row is already in the compacted file. Crash-safe:
    a file is removed only after the compacted file holding it is in place. A stream
    that may still grow (not sealed: its writer has not closed it) stays, with the
    compacted file holding its first batches; ``final`` says every writer is gone (the
    run ended, or was killed), so such streams go too.
    """
    if not table_dir(run_dir, name).is_dir():
        return None
    with _samples_lock(run_dir, fcntl.LOCK_EX):
        return _compact_table(run_dir, name, final)


@contextlib.contextmanager
def _samples_lock(run_dir: Path, how: int) -> Iterator[None]:
    """Compactions exclude each other and readers (``LOCK_EX``); readers share (``LOCK_SH``)."""
    try:
        fd = os.open(RunDir(Path(run_dir)).samples, os.O_RDONLY)
    except FileNotFoundError:  # no samples at all: nothing to compact, nothing to read
        yield
        return
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)  # releases the lock


def _compact_table(run_dir: Path, name: str, final: bool) -> Path | None:
    folder = table_dir(run_dir, name)
    for leftover in folder.glob(f"{COMPACTED}.*.tmp"):  # from a compaction that was killed
        leftover.unlink(missing_ok=True)
    compacted, parts = table_files(run_dir, name)
    held = _held(compacted) if compacted else {}
    # files the compacted file holds whole are left over from a compaction killed after its rename
    remove = [f for f in part_files(run_dir, name) if f.name in held and held[f.name] is None]
    holds = dict(held)
    schema = _schema_of(name, [p.path for p in parts] + ([compacted] if compacted else []))
    pieces: list[pa.Table] = []
    for part in parts:
        if part.stream:
            rows, batches, sealed = read_stream(part.path, part.skip)
            whole = sealed or final
            holds[part.path.name] = None if whole else batches
            with _readable(part.path):
                rows = _conform(rows, schema)
        else:
            rows = pa.concat_tables(list(_batches([part], schema)))
            holds[part.path.name], whole = None, True
        if whole:
            remove.append(part.path)
        pieces.append(rows)
    if holds == held:  # nothing new
        for f in remove:
            f.unlink(missing_ok=True)
        return compacted
    encoding = _encoding(TABLES.get(name), schema)
    final_path = folder / COMPACTED
    tmp = folder / f"{COMPACTED}.{os.getpid()}.tmp"
    meta = {CHUNKS_KEY: "\n".join(_held_line(k, v) for k, v in sorted(holds.items())).encode()}
    try:
        with _readable(folder), pq.ParquetWriter(tmp, schema.with_metadata(meta), compression="zstd", **encoding) as out:
            if compacted is not None:
                for batch in pq.ParquetFile(compacted).iter_batches(batch_size=ROW_GROUP):
                    out.write_table(_conform(pa.Table.from_batches([batch]), schema), row_group_size=ROW_GROUP)
            pending: list[pa.Table] = []
            rows_pending = 0
            for piece in pieces:
                pending.append(piece)
                rows_pending += piece.num_rows
                if rows_pending >= ROW_GROUP:
                    out.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=ROW_GROUP)
                    pending, rows_pending = [], 0
            if pending:
                out.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=ROW_GROUP)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a damaged file (StoreError) or Ctrl-C: leave the run directory as it was
        raise
    os.replace(tmp, final_path)
    for f in remove:
        f.unlink(missing_ok=True)
    return final_path


def _encoding(declared: Table | None, schema: pa.Schema) -> dict[str, Any]:
    """How a compacted file encodes its columns (see :class:`~bench.results.tables.Table`)."""
    if declared is None:
        return {"use_dictionary": True}
    split = [c for c in declared.split_floats if c in schema.names]
    if declared.dictionary is not None:
        dictionary = list(declared.dictionary)
    else:
        dictionary = [c for c in schema.names if c not in split]
    return {"use_dictionary": dictionary, "column_encoding": dict.fromkeys(split, "BYTE_STREAM_SPLIT")} if split else {"use_dictionary": dictionary}


def compact_run(run_dir: Path, names: Iterable[str] | None = None, final: bool = False) -> list[Path]:
    """Compact every table of a run directory (``names``: only those); returns the compacted files.

    ``final``: every writer of the run is gone (see :func:`compact_table`).
    """
    root = RunDir(Path(run_dir)).samples
    if names is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    out = []
    for name in names:
        path = compact_table(run_dir, name, final)
        if path is not None:
            out.append(path)
    return out
