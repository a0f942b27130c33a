"""The table registry and the one Parquet reader/writer/compactor (bench/results/)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.analysis.summary import summarise
from bench.results import store
from bench.results.store import COMPACTED, ChunkWriter, StoreError, compact_run, compact_table, read_arrow, read_table, table_files
from bench.results.tables import TABLES, Column, Table, by_source, get, register

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "runs"

#: How reports/README.md spells an Arrow type in its "type" column.
README_TYPES = {pa.float64(): "float64", pa.int64(): "int64", pa.int32(): "int32", pa.string(): "string", pa.bool_(): "bool"}


def readme_tables() -> dict[str, list[tuple[list[str], str]]]:
    """Per table documented in reports/README.md: its column rows as (names, type cell)."""
    out: dict[str, list[tuple[list[str], str]]] = {}
    current = None
    for line in (ROOT / "reports" / "README.md").read_text().splitlines():
        m = re.match(r"^`(\w+)`:", line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        if current is None:
            continue
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[current].append((re.findall(r"`(\w+)`", cells[0]), cells[1]))
        elif line.startswith("#"):
            current = None
    return out


def test_every_table_is_documented_column_by_column_in_the_readme() -> None:
    documented = readme_tables()
    for table in TABLES.values():
        assert table.name in documented, f"reports/README.md does not document table {table.name}"
        rows = documented[table.name]
        names = {n for names, _ in rows for n in names}
        assert set(table.names) <= names, f"{table.name}: README lacks {set(table.names) - names}"
        for names, type_cell in rows:
            for n in names:
                if n in table.names and type_cell:
                    want = README_TYPES[table.column(n).type]
                    assert type_cell.startswith(want), f"{table.name}.{n}: README says {type_cell!r}, schema {want}"


def test_registry_declarations() -> None:
    assert {t.name for t in by_source("collector")} | {t.name for t in by_source("load")} == set(TABLES)
    for table in TABLES.values():
        assert table.schema.names == list(table.names)
        assert table.names[0] == "t", table.name  # every sample is stamped on the host clock
        assert all(c.doc for c in table.columns), table.name
    with pytest.raises(KeyError, match="no sample table named 'nope'"):
        get("nope")
    with pytest.raises(ValueError, match="already declared"):
        register(Table("vrrp", "other", "collector", "x.py", (Column("t", pa.float64(), "t"),)))
    with pytest.raises(ValueError, match="duplicate"):
        Table("x", "x", "collector", "x.py", (Column("t", pa.float64(), "t"), Column("t", pa.float64(), "t")))
    assert register(TABLES["vrrp"]) is TABLES["vrrp"]  # the same declaration twice is fine


@pytest.mark.parametrize("name", sorted(TABLES))
def test_a_table_without_rows_keeps_its_columns_and_types(tmp_path: Path, name: str) -> None:
    table = read_arrow(tmp_path, name)
    assert table.schema == TABLES[name].read_schema and table.num_rows == 0
    df = read_table(tmp_path, name)
    assert tuple(df.columns) == TABLES[name].names


def write_vrrp(run_dir: Path, n: int, writer: str = "collector", close: bool = False, start: int = 0) -> Path:
    """``n`` one-row batches of ``vrrp`` from one writer; its stream's path."""
    w = ChunkWriter(run_dir, "vrrp", writer)
    for i in range(start, start + n):
        path = w.write({"t": [float(i)], "node": ["lb-a"], "holds_vip": [i % 2 == 0]})
    if close:
        w.close()
    assert path is not None
    return path


def folder_names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "samples" / "vrrp").iterdir())


def test_chunks_of_older_and_newer_writers_read_with_the_declared_columns(tmp_path: Path) -> None:
    folder = tmp_path / "samples" / "netdev"
    folder.mkdir(parents=True)
    # an older writer: no rx_dropped/tx_dropped, counters as int32, and a column we no longer know
    old = {"t": [1.0], "node": ["lb-a"], "iface": ["eth0"], "network": ["client"], "rx_bytes": pa.array([5], pa.int32()),
           "tx_bytes": [6], "rx_packets": [1], "tx_packets": [1], "gone": ["x"]}  # fmt: skip
    pq.write_table(pa.table(old), folder / "part-old-000000.parquet")
    ChunkWriter(tmp_path, "netdev", "new").write({"t": [2.0], "node": ["lb-a"], "iface": ["eth0"], "network": ["client"],
        "rx_bytes": [7], "tx_bytes": [8], "rx_packets": [2], "tx_packets": [2], "rx_dropped": [0], "tx_dropped": [1]})  # fmt: skip
    table = read_arrow(tmp_path, "netdev")
    assert table.schema == TABLES["netdev"].read_schema
    assert sorted(table.column("rx_bytes").to_pylist()) == [5, 7]
    df = read_table(tmp_path, "netdev").sort_values("t")
    assert df["rx_dropped"].isna().tolist() == [True, False]
    assert list(read_table(tmp_path, "netdev", ["t", "tx_dropped"]).columns) == ["t", "tx_dropped"]
    with pytest.raises(KeyError, match="no column"):
        read_table(tmp_path, "netdev", ["t", "nope"])


def test_a_sealed_stream_is_compacted_and_removed(tmp_path: Path) -> None:
    stream = write_vrrp(tmp_path, 5, close=True)
    before = read_table(tmp_path, "vrrp")
    assert before["t"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert compact_table(tmp_path, "vrrp") == tmp_path / "samples" / "vrrp" / COMPACTED
    assert folder_names(tmp_path) == [COMPACTED]
    assert read_table(tmp_path, "vrrp").equals(before)
    held = pq.read_schema(tmp_path / "samples" / "vrrp" / COMPACTED).metadata[store.CHUNKS_KEY].decode().split("\n")
    assert held == [stream.name]
    compact_table(tmp_path, "vrrp")  # again: nothing changes
    assert read_table(tmp_path, "vrrp").equals(before)


def test_a_stream_still_written_keeps_growing_beside_the_compacted_file(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path, "vrrp", "live")
    for i in range(3):
        stream = w.write({"t": [float(i)], "node": ["lb-a"], "holds_vip": [True]})
    compact_run(tmp_path)  # a `bench report` while the run goes: the writer may append more
    assert stream is not None and stream.exists()
    assert table_files(tmp_path, "vrrp")[1] == [store.Part(stream, 3)]
    w.write({"t": [3.0], "node": ["lb-a"], "holds_vip": [False]})
    late = write_vrrp(tmp_path, 1, writer="late", start=9)
    assert sorted(read_table(tmp_path, "vrrp")["t"]) == [0.0, 1.0, 2.0, 3.0, 9.0]  # writers' rows side by side
    w.close()
    compact_run(tmp_path)
    assert folder_names(tmp_path) == [COMPACTED, late.name]  # the late writer has not closed its stream
    assert sorted(read_table(tmp_path, "vrrp")["t"]) == [0.0, 1.0, 2.0, 3.0, 9.0]
    compact_run(tmp_path, final=True)  # the run is over: every writer is gone
    assert folder_names(tmp_path) == [COMPACTED]
    assert sorted(read_table(tmp_path, "vrrp")["t"]) == [0.0, 1.0, 2.0, 3.0, 9.0]


def test_a_killed_writer_loses_at_most_its_torn_last_batch(tmp_path: Path) -> None:
    stream = write_vrrp(tmp_path, 4)
    data = stream.read_bytes()
    stream.write_bytes(data[:-5])  # SIGKILL in the middle of the last batch
    assert read_table(tmp_path, "vrrp")["t"].tolist() == [0.0, 1.0, 2.0]
    compact_run(tmp_path, final=True)
    assert folder_names(tmp_path) == [COMPACTED]
    assert read_table(tmp_path, "vrrp")["t"].tolist() == [0.0, 1.0, 2.0]
    # killed before its schema was complete: no rows, no error
    (tmp_path / "samples" / "vrrp" / "part-x-1.arrows").write_bytes(data[:7])
    assert read_table(tmp_path, "vrrp")["t"].tolist() == [0.0, 1.0, 2.0]


def test_a_compaction_killed_at_any_point_loses_and_doubles_nothing(tmp_path: Path) -> None:
    stream = write_vrrp(tmp_path, 4, close=True)
    old = tmp_path / "samples" / "vrrp" / "part-old-000001.parquet"
    pq.write_table(pa.table({"t": [7.0], "node": ["lb-b"], "holds_vip": [False]}), old)
    expected = read_table(tmp_path, "vrrp")["t"].tolist()
    saved = {f: f.read_bytes() for f in (stream, old)}
    folder = tmp_path / "samples" / "vrrp"
    # killed while writing: a half-written temporary file beside the rows
    (folder / f"{COMPACTED}.999.tmp").write_bytes(b"PAR1 half")
    assert read_table(tmp_path, "vrrp")["t"].tolist() == expected
    compact_table(tmp_path, "vrrp")
    assert folder_names(tmp_path) == [COMPACTED]
    # killed after the rename, before the files were removed: the compacted file holds them
    for f, data in saved.items():
        f.write_bytes(data)
    assert read_table(tmp_path, "vrrp")["t"].tolist() == expected
    compact_table(tmp_path, "vrrp")
    assert folder_names(tmp_path) == [COMPACTED]
    assert read_table(tmp_path, "vrrp")["t"].tolist() == expected


def test_a_tail_reads_each_row_once_as_the_run_goes(tmp_path: Path) -> None:
    tail = store.TableTail(tmp_path, "vrrp", ["t"])
    assert tail.read_new().num_rows == 0  # nothing written yet
    w = ChunkWriter(tmp_path, "vrrp", "live")
    w.write({"t": [0.0, 1.0], "node": ["lb-a"] * 2, "holds_vip": [True] * 2})
    assert tail.read_new().column("t").to_pylist() == [0.0, 1.0]
    assert tail.read_new().num_rows == 0
    w.write({"t": [2.0], "node": ["lb-a"], "holds_vip": [True]})
    stream = w.path
    assert stream is not None
    whole = stream.read_bytes()
    w.write({"t": [3.0], "node": ["lb-a"], "holds_vip": [True]})
    complete = stream.read_bytes()
    stream.write_bytes(complete[: len(whole) + 20])  # the last batch is still being written
    assert tail.read_new().column("t").to_pylist() == [2.0]
    stream.write_bytes(complete)
    assert tail.read_new().column("t").to_pylist() == [3.0]
    pq.write_table(pa.table({"t": [8.0], "node": ["lb-b"], "holds_vip": [False]}), tmp_path / "samples" / "vrrp" / "part-old-000001.parquet")
    assert tail.read_new().column("t").to_pylist() == [8.0]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.iterdir() if (p / "run.json").exists()))
def test_an_old_chunked_run_summarises_the_same_before_and_after_compaction(tmp_path: Path, name: str) -> None:
    run_dir = tmp_path / name
    shutil.copytree(GOLDEN / name, run_dir)
    chunked = json.loads(json.dumps(summarise(run_dir)))
    assert chunked == json.loads((GOLDEN / name / "summary.json").read_text())
    compacted = compact_run(run_dir, final=True)
    assert compacted and not list((run_dir / "samples").glob("*/part-*"))
    assert json.loads(json.dumps(summarise(run_dir))) == chunked


def test_the_analysis_reads_every_column_its_code_names() -> None:
    """A column of a projected table that bench/analysis or bench/report names in quotes must be read."""
    from bench.analysis.common import READ_COLUMNS

    code = "".join(p.read_text() for folder in ("analysis", "report") for p in (ROOT / "bench" / folder).glob("*.py"))
    named = set(re.findall(r"""["'](\w+)["']""", code))
    # named for another table (held, requests: the histograms are summed over processes); a hop of the latency
    # decomposition, not the show stat column; the decomposition joins the timer lines by id (the rest of a line
    # is its own: names the other tables have)
    elsewhere = {
        "requests": {"worker"}, "latency_hist": {"worker"}, "haproxy_stat": {"connect"},
        "request_timers": {"t", "service", "status", "bytes", "server"},
    }  # fmt: skip
    for name, columns in READ_COLUMNS.items():
        assert set(columns) <= set(TABLES[name].names), name
        missing = (named & set(TABLES[name].names)) - set(columns) - elsewhere.get(name, set())
        assert not missing, f"bench/analysis/common.py READ_COLUMNS[{name!r}] lacks {sorted(missing)}"


@pytest.mark.parametrize(("name", "content"), [
    ("part-x-1.arrows", b"PAR1 not really" * 1000),
    ("part-x-1.arrows", b"PAR1 short"),  # short, but not the beginning of a stream either: not taken for a torn schema
    ("part-x-000001.arrow", b"PAR1 not really" * 1000),
    ("part-x-000001.parquet", b"PAR1 not really" * 1000),
    (COMPACTED, b"PAR1 not really" * 1000),
])  # fmt: skip
def test_a_damaged_sample_file_is_named_in_one_line(tmp_path: Path, name: str, content: bytes) -> None:
    write_vrrp(tmp_path, 1)
    (tmp_path / "samples" / "vrrp" / name).write_bytes(content)
    with pytest.raises(StoreError, match=f"{name}: cannot read this sample file"):
        read_table(tmp_path, "vrrp")
    with pytest.raises(StoreError, match=name):
        compact_run(tmp_path, final=True)
    assert (tmp_path / "samples" / "vrrp" / name).exists()  # kept for the user to look at


def test_the_analysis_reads_every_show_info_field_it_asks_for() -> None:
    from bench.analysis.common import READ_ROWS

    code = "".join(p.read_text() for folder in ("analysis", "report") for p in (ROOT / "bench" / folder).glob("*.py"))
    asked = set(re.findall(r"""info_metric\(\s*\w+,\s*["'](\w+)["']""", code))
    column, kept = READ_ROWS["haproxy_info"]
    assert column == "metric" and {"CumReq", "Idle_pct", "SslRate"} <= asked
    missing = asked - set(kept)
    assert not missing, f"bench/analysis/common.py READ_ROWS['haproxy_info'] lacks {sorted(missing)}"


def test_rows_can_be_filtered_while_reading(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path, "vrrp", "c")
    w.write({"t": [1.0, 2.0, 3.0], "node": ["lb-a", "lb-b", "lb-a"], "holds_vip": [True, False, True]})
    assert read_table(tmp_path, "vrrp", ["t"], where=("node", ["lb-a"]))["t"].tolist() == [1.0, 3.0]
    compact_run(tmp_path)
    assert read_table(tmp_path, "vrrp", ["t"], where=("node", ["lb-b"]))["t"].tolist() == [2.0]
    assert read_table(tmp_path, "vrrp", where=("node", ["nope"])).empty


def test_long_tables_are_allocated_in_small_pages_unless_the_environment_says_otherwise() -> None:
    """After use_small_pages(): Arrow allocates from jemalloc (else the system's allocator), numpy without the huge-page advice."""
    import os

    import numpy as np

    store.use_small_pages()
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        assert pa.default_memory_pool().backend_name in ("jemalloc", "system")
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        setter = np._core.multiarray._set_madvise_hugepage  # returns the previous setting
        assert setter(False) is False
