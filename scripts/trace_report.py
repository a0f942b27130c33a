#!/usr/bin/env python3
"""Where `bench report`'s wall time goes: each step in each process (forked copies too), with offsets.

    .venv/bin/python scripts/trace_report.py RUN_DIR

Runs `bench report RUN_DIR` in this process (it writes into RUN_DIR, as `bench report`
does: use a copy) with timing wrappers around the steps of bench/report/build.py, the
series, the summary's parts and each plot (nothing else changes), then prints one line
per step: process, thread, start and end in seconds since this script started, wall
seconds and the thread's own CPU seconds, sorted by start. Steps of the forked copies
show up with their own process id, so what runs beside what is visible; the last line
is the whole process's and its copies' CPU (user + system). Reading a table in the
main thread shows little CPU: Arrow decodes in its own threads.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

T0 = time.time()
LOG = Path(tempfile.mkdtemp(prefix="trace-report-")) / "spans"


def record(label: str, start: float, end: float, cpu: float) -> None:
    """One line per span, appended by whichever process ran it (a forked copy appends to the same file)."""
    with LOG.open("a") as f:
        f.write(f"{os.getpid():>7} {threading.current_thread().name[:12]:12s} {start - T0:7.2f} {end - T0:7.2f} {end - start:6.2f} {cpu:6.2f}  {label}\n")


def traced(owner: Any, name: str, label: str | None = None, with_arg: bool = False) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.time(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            text = label or name
            if with_arg and len(args) > 1:
                text += f" {args[1]}"
            record(text, start, time.time(), time.thread_time() - cpu)

    setattr(owner, name, wrapper)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    start, cpu = time.time(), time.thread_time()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.analysis import common, series, summary
    from bench.cli import main as bench
    from bench.report import build, plots

    record("imports", start, time.time(), time.thread_time() - cpu)
    for name in ("compact_run", "load_run", "build_series", "summarise_data", "save_summary", "render_plots", "_write_derived", "render_html"):
        traced(build, name)
    traced(common.RunData, "_read", "read", with_arg=True)
    for name in ("traffic_rates", "established_by_hop", "cpu_pct", "ports_in_use", "per_second_table", "timeline"):
        traced(series, name)
    for name in ("connections_summary", "haproxy_summary", "tls_summary", "latency_summary", "load_summary", "cost_summary", "run_checks", "traced_hops", "decomposition_summary"):
        traced(summary, name)
    for i, (name, title, fn) in enumerate(plots.PLOTS):
        holder = type("Plot", (), {"draw": staticmethod(fn)})
        traced(holder, "draw", f"plot {name} (figure; savefig below)")
        plots.PLOTS[i] = (name, title, holder.draw)
    import matplotlib.figure

    traced(matplotlib.figure.Figure, "savefig")
    try:
        code = bench(["report", sys.argv[1]])
    finally:
        me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        record(f"TOTAL: this process {me.ru_utime:.2f} user + {me.ru_stime:.2f} sys, forked copies {kids.ru_utime:.2f} + {kids.ru_stime:.2f}", T0, time.time(), time.process_time())
        print("".join(sorted(LOG.read_text().splitlines(keepends=True), key=lambda line: float(line.split()[2]))), file=sys.stderr, end="")
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
