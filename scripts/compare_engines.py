"""Time the request analysis's heaviest steps in numpy/pandas (what lbbench does) against DuckDB and Polars.

    python scripts/compare_engines.py RUN_DIR [--repeat 3]

RUN_DIR is a compacted run directory (``samples/requests/compacted.parquet``), e.g. a
large synthetic one from scripts/synthetic_run.py. Each engine reads the requests
file itself and computes the same figures:

- ``read``: the columns ``t``, ``latency_ms``, ``error`` into memory;
- ``timeline``: per 100 ms bin the requests, the successes and the exact p50/p90/p99
  and maximum latency of the successes (linear interpolation);
- ``window``: requests, successes and the mean latency of the successes in a window.

lbbench depends on neither DuckDB nor Polars; run this with an interpreter that has
both (and pyarrow, pandas, numpy), with this repository on ``PYTHONPATH``, e.g.
``python -m venv /tmp/eng && /tmp/eng/bin/pip install duckdb polars pyarrow pandas numpy``.
Prints one JSON line per engine and step: wall seconds, CPU seconds (all threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLUMNS = ["t", "latency_ms", "error"]


def timed(engine: str, step: str, fn, repeat: int):  # type: ignore[no-untyped-def]
    best = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if best is None or w < best[0]:
            best = (w, c)
    assert best is not None
    print(json.dumps({"engine": engine, "step": step, "wall_s": round(best[0], 3), "cpu_s": round(best[1], 3)}), flush=True)
    return out


def numpy_pandas(run: Path, window: tuple[float, float], repeat: int) -> None:
    import numpy as np

    from bench.analysis.requests import ok_mask, steady_mask, timeline
    from bench.results.store import read_table

    req = timed("numpy+pandas", "read", lambda: read_table(run, "requests", COLUMNS), repeat)
    timed("numpy+pandas", "timeline", lambda: timeline(req), repeat)

    def win() -> tuple[int, int, float]:
        m, ok = steady_mask(req, window), ok_mask(req)
        lat = req["latency_ms"].to_numpy()[m & ok]
        return int(m.sum()), int((m & ok).sum()), float(np.mean(lat))

    timed("numpy+pandas", "window", win, repeat)


def duckdb_sql(run: Path, window: tuple[float, float], repeat: int) -> None:
    import duckdb

    path = str(run / "samples" / "requests" / "compacted.parquet")
    con = duckdb.connect()
    timed("duckdb", "read", lambda: con.sql(f"select t, latency_ms, error from read_parquet('{path}')").to_arrow_table(), repeat)
    q = f"""
        select floor(t / 0.1)::bigint as bin, count(*) as requests, count(*) filter (where error = '') as ok,
               quantile_cont(latency_ms, [0.5, 0.9, 0.99]) filter (where error = '') as q,
               max(latency_ms) filter (where error = '') as max_ms
        from read_parquet('{path}') group by bin order by bin"""
    timed("duckdb", "timeline", lambda: con.sql(q).to_arrow_table(), repeat)
    w = f"""
        select count(*), count(*) filter (where error = ''), avg(latency_ms) filter (where error = '')
        from read_parquet('{path}') where t >= {window[0]} and t < {window[1]}"""
    timed("duckdb", "window", lambda: con.execute(w).fetchall(), repeat)


def polars_lazy(run: Path, window: tuple[float, float], repeat: int) -> None:
    import polars as pl

    path = run / "samples" / "requests" / "compacted.parquet"
    timed("polars", "read", lambda: pl.read_parquet(path, columns=COLUMNS), repeat)
    ok = pl.col("error") == ""
    lat = pl.col("latency_ms").filter(ok)
    tl = (
        pl.scan_parquet(path)
        .group_by((pl.col("t") / 0.1).floor().cast(pl.Int64).alias("bin"))
        .agg(
            pl.len().alias("requests"),
            ok.sum().alias("ok"),
            *(lat.quantile(q, interpolation="linear").alias(f"p{q}") for q in (0.5, 0.9, 0.99)),
            lat.max().alias("max_ms"),
        )
        .sort("bin")
    )
    timed("polars", "timeline", tl.collect, repeat)
    w = (
        pl.scan_parquet(path)
        .filter((pl.col("t") >= window[0]) & (pl.col("t") < window[1]))
        .select(pl.len(), ok.sum(), lat.mean())
    )
    timed("polars", "window", w.collect, repeat)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--repeat", type=int, default=3, help="runs per step; the fastest is printed")
    p.add_argument("--engines", default="numpy+pandas,duckdb,polars")
    args = p.parse_args(argv)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(args.run_dir / "samples" / "requests" / "compacted.parquet", columns=["t"]).column("t")
    lo, hi = pc.min(t).as_py(), pc.max(t).as_py()
    window = (lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo))
    engines = {"numpy+pandas": numpy_pandas, "duckdb": duckdb_sql, "polars": polars_lazy}
    for name in args.engines.split(","):
        engines[name](args.run_dir, window, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
