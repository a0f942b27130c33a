#!/usr/bin/env python3
"""Where `bench run`'s own time goes: each step of the start and the end, with offsets.

    /work/coord/labrun .venv/bin/python scripts/trace_run.py [SCENARIO] [--duration 5s]

Runs the scenario in this process with timing wrappers around the steps of
bench/run.py and bench/topology/lab.py (nothing else changes), then prints one line
per step: start and end in seconds since the run began, and its duration, plus the
first request (from the requests table), the scheduled end (the go + the duration), the
load's end (run.json) and the tail of Locust's log. Steps in
threads (the teardown) show up where they ran, so overlaps are visible.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from bench import engine, images, run
from bench.collect import collectors, integrity
from bench.load import runner
from bench.report import build as report_build
from bench.report import plots as report_plots
from bench.results.store import read_arrow
from bench.topology import lab as lab_mod

SPANS: list[tuple[str, float, float, str]] = []
T0 = 0.0


def traced(owner: Any, name: str, label: str | None = None) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPANS.append((label or name, start, time.time(), threading.current_thread().name))

    setattr(owner, name, wrapper)


def main() -> int:
    global T0  # noqa: PLW0603 - the trace's time origin, set once per run of this script
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="smoke")
    ap.add_argument("--duration", default="5s")
    args = ap.parse_args()
    for owner, name in [
        (run, "preflight"), (run, "start_warm"), (run, "_import_analysis"), (run, "record_lab"), (lab_mod.Lab, "check_configs"), (images, "haproxy_build"),
        (run, "load_scenario"), (run, "prepare_load"), (engine, "client"), (engine, "compose_version"),
        (images, "ensure_images"), (images, "versions"), (run, "_git_sha"), (run, "config_diff"),
        (run, "_copy_public_configs"), (run, "start_load"), (run, "start_locust"), (run, "open_start_gate"),
        (run, "build_report"), (run, "_build_report"),
        (lab_mod, "allocate_subnets"), (lab_mod, "make_tls"),
        (lab_mod.Lab, "prepare"), (lab_mod.Lab, "validate"), (lab_mod.Lab, "_compose"), (lab_mod.Lab, "wait_ready"),
        (lab_mod.Lab, "save_logs"), (lab_mod.Lab, "down"), (lab_mod.Lab, "write_state"),
        (collectors.Collectors, "start"), (collectors.Collectors, "stop"),
        (report_build, "save_summary"), (report_plots, "render_plots"), (report_build, "render_html"),
        (report_build, "compact_run"), (report_build, "load_run"), (report_build, "build_series"), (report_build, "summarise_data"),
        (report_build, "write_series"), (report_build, "write_hlog"), (report_plots, "make_context"), (report_build, "writers_gone"),
        (runner.LocustProcess, "stop"), (runner, "end_group"), (integrity.LabWatch, "stop"), (run.Teardown, "go"), (run.Teardown, "join"),
        (lab_mod.Lab, "containers"), (lab_mod.Lab, "_states"), (integrity.LabWatch, "start"), (run, "_record_lab_state"),
    ]:  # fmt: skip
        if hasattr(owner, name):
            traced(owner, name)
    out = Path(tempfile.mkdtemp(prefix="lbbench-trace-")) / "run"
    said: list[tuple[float, str]] = []
    T0 = time.time()
    try:
        run.run_scenario(args.scenario, duration=args.duration, out=out, log=lambda m: said.append((time.time(), m)))
        r = json.loads((out / "run.json").read_text())
        req = read_arrow(out, "requests", columns=["t"])
        first = pc.min(req["t"]).as_py()
        end = r["load_window"]["end"]
        sched_end = r["load_window"]["start"] + float(str(args.duration).rstrip("s"))
        log_file = out / "locust" / "locust.log"
        print("locust.log:", log_file.read_text()[-1500:] if log_file.exists() else "-")
    finally:
        t_done = time.time()
        shutil.rmtree(out.parent, ignore_errors=True)
    rows = [(s - T0, e - T0, name, thread) for name, s, e, thread in SPANS]
    rows += [(t - T0, t - T0, f"log: {m[:70]}", "") for t, m in said]
    rows += [(first - T0, first - T0, "** first request", ""), (end - T0, end - T0, "** load end", "")]
    rows.append((sched_end - T0, sched_end - T0, "** scheduled load end (start + duration)", ""))
    rows.append((t_done - T0, t_done - T0, "** run_scenario returned", ""))
    for s, e, name, thread in sorted(rows):
        dur = f"{e - s:6.2f}s" if e > s else "       "
        where = f"  [{thread}]" if thread and thread != "MainThread" else ""
        print(f"{s:7.2f} -> {e:7.2f} {dur}  {name}{where}")
    print(f"scheduled end -> load end {end - sched_end:.2f} s")
    print(f"\nstart -> first request {first - T0:.2f} s; load end -> return {t_done - end:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
