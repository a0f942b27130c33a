"""Build a large, format-faithful run directory from a real one, for measuring the analysis at scale.

    .venv/bin/python scripts/synthetic_run.py BASE_RUN OUT --requests 10M [--compacted | --old-chunks]

BASE_RUN is a real run directory (a `bench run smoke`, say). OUT gets the same run
repeated back to back in time until it holds at least ``--requests`` requests (or
``--repeat N`` times): every sample table's rows copied once per repetition with
their times (``t``, ``intended_t``) shifted by the base run's span rounded up to a
whole second, so per-second tables stay on whole seconds. The tables are written
as a running lbbench writes them, one stream per writer with a batch per second
(``samples/<table>/part-<writer>-<id>.arrows``), left open as by a run that was
killed before its end, so ``bench report OUT`` meets what it meets after such a
run (compaction included); ``--compacted`` compacts them right away (the state
``bench run`` leaves); ``--old-chunks`` writes one zstd Parquet file per writer
and second, as lbbench wrote them before streams and compaction existed.

run.json keeps the base's scenario, topology and versions (its status ``running``,
as a killed run's, unless ``--compacted``); its ``id`` names the copy, and its load
window runs from the first repetition's start to the last one's
end. events.jsonl keeps the first ``load`` / ``ramp-up`` / ``steady`` phase, the
last ``end`` phase, and every other event once per repetition (shifted). Nothing
else (logs, configs, Locust CSVs) is copied. No figure is invented: every row is
a row the base run measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results.store import STREAM_SUFFIX, compact_run, read_arrow
from bench.results.tables import TABLES

#: Columns holding epoch seconds, shifted per repetition.
TIME_COLUMNS = ("t", "intended_t")
#: Phases that open a run (kept from the first repetition) and close it (kept from the last).
FIRST_PHASES = ("load", "ramp-up", "steady")
LAST_PHASES = ("end",)


def count(text: str) -> int:
    """``10M`` -> 10_000_000, ``65k`` -> 65_000."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def base_tables(base: Path) -> dict[str, pa.Table]:
    """Every sample table of the base run that has rows, in the types its writers write (strings as strings)."""
    names = sorted(p.name for p in (base / "samples").iterdir() if p.is_dir())
    tables = {name: read_arrow(base, name) for name in names}
    return {name: t.cast(TABLES[name].schema) if name in TABLES else t for name, t in tables.items() if t.num_rows}


def span_of(tables: dict[str, pa.Table], run: dict) -> tuple[float, float]:
    """First and last sample time of the base run (epoch seconds)."""
    lows, highs = [], []
    for table in tables.values():
        t = table.column("t").cast(pa.float64())
        lows.append(pc.min(t).as_py())
        highs.append(pc.max(t).as_py())
    window = run.get("load_window") or {}
    lows += [v for v in (window.get("start"),) if v is not None]
    highs += [v for v in (window.get("end"),) if v is not None]
    return min(lows), max(highs)


def chunks_of(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The table cut as a running lbbench writes it: one piece per writer and second, in time order."""
    writers = (
        pc.cast(table.column("worker"), pa.string()).to_numpy(zero_copy_only=False)
        if "worker" in table.column_names
        else np.full(table.num_rows, "collector", dtype=object)
    )
    seconds = np.floor(table.column("t").cast(pa.float64()).to_numpy())
    out = []
    for writer in sorted(set(writers.tolist())):
        rows = np.flatnonzero(writers == writer)
        order = rows[np.argsort(seconds[rows], kind="stable")]
        secs = seconds[order]
        bounds = np.flatnonzero(np.diff(secs)) + 1
        label = str(writer).rsplit(":", 1)[-1]  # a process writes as its pid
        for piece in np.split(order, bounds):
            out.append((label, table.take(pa.array(piece))))
    return out


def shifted(table: pa.Table, by: int) -> pa.Table:
    """``table`` with its time columns moved ``by`` seconds later."""
    for col in TIME_COLUMNS:
        if col in table.column_names:
            i = table.column_names.index(col)
            c = table.column(col)
            table = table.set_column(i, col, pc.add(c, pa.scalar(by, c.type)))
    return table


def shift_event(ev: dict, by: int) -> dict:
    out = dict(ev)
    for key in ("t", "done_at", "end"):
        if isinstance(out.get(key), int | float) and not isinstance(out.get(key), bool):
            out[key] = out[key] + by
    return out


def build(base: Path, out: Path, repeat: int | None, requests: int | None, compacted: bool, old_chunks: bool = False) -> dict:
    run = json.loads((base / "run.json").read_text())
    tables = base_tables(base)
    n_base = tables["requests"].num_rows if "requests" in tables else 0
    if repeat is None:
        if not n_base:
            raise SystemExit(f"{base}: the base run has no requests; pass --repeat")
        repeat = max(1, math.ceil((requests or n_base) / n_base))
    first, last = span_of(tables, run)
    period = math.ceil(last - first + 1.0)
    if out.exists():
        shutil.rmtree(out)
    (out / "samples").mkdir(parents=True)
    if (base / "samples" / "collectors.json").exists():
        shutil.copy(base / "samples" / "collectors.json", out / "samples" / "collectors.json")
    pieces = {name: chunks_of(table) for name, table in tables.items()}
    folders = {}
    dictionary: dict[str, bool | list[str]] = {}
    for name in pieces:
        folders[name] = out / "samples" / name
        folders[name].mkdir()
        declared = TABLES.get(name)
        dictionary[name] = list(declared.dictionary) if declared is not None and declared.dictionary is not None else True
    # the base's tables without rows stay, empty: a run whose load generator counted its unfinished requests
    # has samples/unfinished/ even when none were (without it, the report reads the run as one that could not tell)
    for folder in (base / "samples").iterdir():
        if folder.is_dir() and folder.name not in folders:
            (out / "samples" / folder.name).mkdir()

    def write_old_chunks(k: int) -> None:
        # one repetition as lbbench wrote it before: one Parquet file per writer and second
        for name, parts in pieces.items():
            for i, (label, part) in enumerate(parts):
                path = folders[name] / f"part-{label}-{k * len(parts) + i:09d}.parquet"
                pq.write_table(shifted(part, k * period), path, compression="zstd", use_dictionary=dictionary[name])

    def write_streams(name: str) -> None:
        # as lbbench writes now: one stream per writer, a batch per second, left open (a killed run)
        sinks: dict[str, tuple[pa.NativeFile, ipc.RecordBatchStreamWriter]] = {}
        for k in range(repeat):
            for label, part in pieces[name]:
                if label not in sinks:
                    sink = pa.OSFile(str(folders[name] / f"part-{label}-0{STREAM_SUFFIX}"), "wb")
                    sinks[label] = (sink, ipc.new_stream(sink, part.schema))
                sinks[label][1].write_table(shifted(part, k * period))
        for sink, _writer in sinks.values():
            sink.close()  # no end-of-stream marker: the writers were killed

    with ThreadPoolExecutor(max_workers=4) as pool:
        if old_chunks:
            list(pool.map(write_old_chunks, range(repeat)))
        else:
            list(pool.map(write_streams, list(pieces)))

    events = _events(base, repeat, period)
    (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    window = run.get("load_window") or {}
    if window.get("end") is not None:
        window["end"] = window["end"] + (repeat - 1) * period
    run.update(id=f"{run.get('id')}-x{repeat}", load_window=window, synthetic={"base": str(base), "repeat": repeat, "period_s": period})
    if not compacted:
        run["status"] = "running"  # what run.json says of a run that was killed
        # its load generator is long gone (the base's pid may name another process now),
        # and its writers stopped writing when it was killed, not when this script wrote
        run["load_pid"] = None
        killed_at = time.time() - 3600
        for stream in (out / "samples").glob(f"*/*{STREAM_SUFFIX}"):
            os.utime(stream, (killed_at, killed_at))
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    if compacted:
        compact_run(out, final=True)
    return {"repeat": repeat, "period_s": period, "requests": n_base * repeat, "files": sum(1 for _ in (out / "samples").glob("*/*.*"))}


def _events(base: Path, repeat: int, period: int) -> list[dict]:
    path = base / "events.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    top = max((e["id"] for e in records if isinstance(e.get("id"), int)), default=0)
    out = []
    for k in range(repeat):
        for ev in records:
            name = ev.get("name")
            if ev.get("kind") == "phase" and name in FIRST_PHASES and k > 0:
                continue
            if ev.get("kind") == "phase" and name in LAST_PHASES and k < repeat - 1:
                continue
            e = shift_event(ev, k * period)
            if isinstance(e.get("id"), int) and k:
                e["id"] = e["id"] + k * top  # the k-th repetition's faults: ids of their own
            out.append(e)
    return sorted(out, key=lambda e: float(e["t"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path, help="a real run directory")
    p.add_argument("out", type=Path, help="the synthetic run directory to write (replaced if it exists)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--requests", type=count, help="at least this many requests (e.g. 65k, 1M, 10M)")
    size.add_argument("--repeat", type=int, help="repeat the base run this many times")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--compacted", action="store_true", help="compact the tables (as `bench run` leaves them)")
    layout.add_argument("--old-chunks", action="store_true", help="Parquet chunks, as lbbench wrote them before compaction existed")
    args = p.parse_args(argv)
    if not (args.base / "run.json").exists():
        p.error(f"{args.base}: not a run directory (no run.json)")
    t0 = time.monotonic()
    info = build(args.base, args.out, args.repeat, args.requests, args.compacted, args.old_chunks)
    print(json.dumps({**info, "out": str(args.out), "seconds": round(time.monotonic() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
