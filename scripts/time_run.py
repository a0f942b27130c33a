#!/usr/bin/env python3
"""Time the harness itself around one `bench run`: start-up and wind-down.

    /work/coord/labrun .venv/bin/python scripts/time_run.py [SCENARIO] [-- extra bench run args]

Runs ``bench run SCENARIO --out <tmp dir>`` as a child process, stamps every line it
prints, and then reads the run directory to print:

- start -> first request: from the moment the child is started to the earliest
  request timestamp in the ``requests`` table (what a user waits before load flows);
- load end -> summary: from ``run.json``'s ``load_window.end`` to the line with
  the requests per second (the summary on screen), and to the child's exit;
- the stamped log, so each phase in between can be read off.

The run directory is removed afterwards unless ``--keep`` is given. Nothing here
asserts a time: it prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc

from bench.results.store import read_arrow

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".venv" / "bin" / "bench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="smoke")
    ap.add_argument("--duration", default="10s", help="load duration (default 10s: the phases around it are measured)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--json", action="store_true", help="print one JSON line with the figures at the end")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="further `bench run` arguments after --")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="lbbench-timerun-")) / "run"
    extra = [a for a in args.extra if a != "--"]
    cmd = [str(BENCH), "run", args.scenario, "--duration", args.duration, "--out", str(out), *extra]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.time(), line.rstrip("\n")))
    code = proc.wait()
    t_exit = time.time()
    for t, line in lines:
        print(f"{t - t0:7.2f}  {line}")
    figures: dict[str, float | int | None] = {"exit_code": code, "total_s": round(t_exit - t0, 2)}
    try:
        run = json.loads((out / "run.json").read_text())
        req = read_arrow(out, "requests", columns=["t"])
        # a request's t is when it was sent (capture stamps the start)
        first = pc.min(req["t"]).as_py()
        end = run["load_window"]["end"]
        summary_at = next((t for t, line in lines if " req/s, " in line), None)
        figures.update(
            start_to_first_request_s=round(first - t0, 2),
            load_end_to_summary_s=round(summary_at - end, 2) if summary_at else None,
            load_end_to_exit_s=round(t_exit - end, 2),
        )
    except (OSError, KeyError, ValueError) as exc:
        print(f"time_run: could not read the run directory: {exc}", file=sys.stderr)
    print()
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json:
        print(json.dumps(figures))
    if not args.keep:
        shutil.rmtree(out.parent, ignore_errors=True)
    else:
        print(f"run directory: {out}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
