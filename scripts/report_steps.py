"""Time each step of `bench report` on a run directory, in one process: where a long run's analysis goes.

    .venv/bin/python scripts/report_steps.py RUN_DIR

Reads the run (compacted or not: nothing is compacted or written into RUN_DIR), then
times reading each wide table, the series, the summary, the derived files, the
HdrHistogram log and the plots (written to a temporary folder). Prints wall, user and
system seconds per step (every thread of the process), its minor page faults (memory
touched for the first time: the system time of a long run's report), and the peak memory.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analysis.common import load_run
from bench.analysis.series import build_series, write_series
from bench.analysis.summary import summarise_data
from bench.report.html import render_html
from bench.report.latency import write_hlog
from bench.report.plots import make_context, render_plots

STEPS: list[tuple[str, float, float, float, int]] = []


def timed(label: str, step: Callable[[], Any]) -> Any:
    wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    result = step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    STEPS.append((label, time.perf_counter() - wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt))
    return result


def main() -> int:
    run = Path(sys.argv[1])
    out = Path(tempfile.mkdtemp(prefix="report-steps-"))
    data = timed("load_run", lambda: load_run(run))
    for name in ("requests", "latency_hist", "haproxy_stat", "haproxy_info", "cpu", "sockets", "netdev", "request_timers"):
        timed(f"read {name}", lambda name=name: data.table(name))
    series = timed("build_series", lambda: build_series(data))
    summary = timed("summarise_data", lambda: summarise_data(data, series))
    timed("write_series", lambda: write_series(series, out))
    timed("write_hlog", lambda: write_hlog(data.latency_hist, out / "latency.hlog"))
    ctx = timed("make_context", lambda: make_context(data, series, summary))
    plots = timed("render_plots", lambda: render_plots(ctx, out / "plots"))
    timed("render_html", lambda: render_html(data.run, summary, plots, data.events, ctx.t0))
    for label, wall, user, system, faults in STEPS:
        print(f"{label:22s} wall {wall:6.2f} s  user {user:6.2f} s  sys {system:6.2f} s  page faults {faults:9d}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    totals = [sum(step[i] for step in STEPS) for i in (1, 2, 3)]
    print(f"{'total':22s} wall {totals[0]:6.2f} s  user {totals[1]:6.2f} s  sys {totals[2]:6.2f} s  peak {peak} MB  (plots in {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
