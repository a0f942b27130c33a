#!/usr/bin/env python3
"""Time the harness itself around `bench run`: start-up and wind-down, phase by phase.

    /work/coord/labrun .venv/bin/python scripts/time_run.py [--duration 5s] [--rounds N]
        [--checkout NAME=DIR ...] [--json] [SCENARIO] [-- extra bench run args]

Options go BEFORE the scenario (everything after it is handed to `bench run`).
Runs ``bench run SCENARIO --out <tmp dir>`` as a child process, stamps every line it
prints, and then reads the run directory. For each run it prints the offsets (seconds
after the child was started) of:

- ``compose_up``: the preflight is done and ``compose up`` begins (the "starting PROJECT" line);
- ``started_at``: run.json's ``started_at`` (the run directory is written);
- ``locust_ready``: the load generator waits at its start gate (the gate's ``.waiting``
  file; absent when Locust is started after the lab);
- ``go``: run.json's ``load_window.start`` (the lab is up, the gate opens);
- ``first_request``: the earliest request in the ``requests`` table;

and the headline figures: ``start_to_first_request_s``, ``go_to_first_request_s``,
``locust_exit_s`` (the scheduled end, ``load_window.start`` + the scenario's duration, to
``load_window.end``: Locust stopping its users, sealing its samples and exiting),
``load_end_to_summary_s`` (``load_window.end`` to the line with the requests per second
on screen), ``load_end_to_exit_s`` and ``scheduled_end_to_exit_s`` (the two ends added).

``--checkout NAME=DIR`` (repeatable) runs another checkout's `bench` (its package, scenarios
and locustfile, through PYTHONPATH, with this venv's interpreter); with several checkouts
and ``--rounds N`` the runs are interleaved (A B A B ...), and a table of ranges per
checkout ends the output. The run directories are removed unless ``--keep`` is given.
Nothing here asserts a time: it prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from bench.results.store import read_arrow

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"

PHASES = ("compose_up", "started_at", "locust_ready", "go", "first_request")
FIGURES = (
    "start_to_first_request_s", "go_to_first_request_s", "locust_exit_s", "load_end_to_summary_s", "load_end_to_exit_s",
    "scheduled_end_to_exit_s", "total_s", "req_per_s",
)  # fmt: skip


def _checkout(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=DIR with DIR a checkout of lbbench")
    return name, Path(path).resolve()


def _line_at(lines: list[tuple[float, str]], needle: str) -> float | None:
    return next((t for t, line in lines if needle in line), None)


def time_one(scenario: str, duration: str, extra: list[str], checkout: Path, keep: bool) -> dict[str, Any]:
    """One `bench run` of ``checkout``: its stamped output and figures."""
    out = Path(tempfile.mkdtemp(prefix="lbbench-timerun-")) / "run"
    cmd = [str(PYTHON), "-c", "import sys; from bench.cli import main; sys.exit(main())", "run", scenario, "--duration", duration, "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH", "")]))}
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env, cwd=checkout)
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.time(), line.rstrip("\n")))
    code = proc.wait()
    t_exit = time.time()
    result: dict[str, Any] = {"exit_code": code, "t0": t0, "total_s": round(t_exit - t0, 2), "lines": [(round(t - t0, 2), line) for t, line in lines]}
    at: dict[str, float | None] = {"compose_up": _line_at(lines, "starting lbbench-")}
    try:
        run = json.loads((out / "run.json").read_text())
        import datetime as dt

        at["started_at"] = dt.datetime.fromisoformat(run["started_at"]).timestamp()
        waiting = out / "locust" / ".start.waiting"
        at["locust_ready"] = waiting.stat().st_mtime if waiting.exists() else None
        at["go"] = run["load_window"]["start"]
        req = read_arrow(out, "requests", columns=["t"])
        at["first_request"] = pc.min(req["t"]).as_py()  # a request's t is when it was sent
        end = run["load_window"]["end"]
        summary_at = _line_at(lines, " req/s, ")
        headline = next((line for _, line in lines if " req/s, " in line), "")
        result["req_per_s"] = float(headline.split(" req/s")[0].replace(",", "")) if headline else None
        result.update(
            start_to_first_request_s=round(at["first_request"] - t0, 2),
            go_to_first_request_s=round(at["first_request"] - at["go"], 2),
            load_end_to_summary_s=round(summary_at - end, 2) if summary_at else None,
            load_end_to_exit_s=round(t_exit - end, 2),
            locust_exit_s=round(end - (at["go"] + float(run["scenario"]["duration"])), 2),
            scheduled_end_to_exit_s=round(t_exit - (at["go"] + float(run["scenario"]["duration"])), 2),
            requests=req.num_rows,
        )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        result["error"] = f"could not read the run directory: {exc}"
    result["phases"] = {k: (round(v - t0, 2) if v is not None else None) for k, v in at.items()}
    if keep:
        result["run_dir"] = str(out)
    else:
        shutil.rmtree(out.parent, ignore_errors=True)
    return result


def _range(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="smoke")
    ap.add_argument("--duration", default="10s", help="load duration (default 10s: the phases around it are measured)")
    ap.add_argument("--rounds", type=int, default=1, help="runs per checkout, interleaved (default 1)")
    ap.add_argument("--checkout", type=_checkout, action="append", help="NAME=DIR: time that checkout's bench (repeatable; default: this one)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--quiet", action="store_true", help="do not print the stamped output of each run")
    ap.add_argument("--json", action="store_true", help="print one JSON line with the figures of each run")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="further `bench run` arguments after --")
    args = ap.parse_args()
    if args.scenario.startswith("-"):
        ap.error(f"{args.scenario}: options go before the scenario")
    checkouts = args.checkout or [("this", ROOT)]
    extra = [a for a in args.extra if a != "--"]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in checkouts}
    failed = False
    for round_ in range(1, args.rounds + 1):
        for name, path in checkouts:
            r = time_one(args.scenario, args.duration, extra, path, args.keep)
            results[name].append(r)
            failed |= r["exit_code"] != 0
            print(f"--- {name} round {round_}: exit {r['exit_code']}" + (f", {r['error']}" if "error" in r else ""))
            if not args.quiet or r["exit_code"] != 0:
                for t, line in r["lines"]:
                    print(f"{t:7.2f}  {line}")
            print("  phases (s after start): " + ", ".join(f"{k} {v}" for k, v in r["phases"].items()))
            print("  " + ", ".join(f"{k} {r.get(k)}" for k in FIGURES))
            if args.json:
                print(json.dumps({"checkout": name, "round": round_, **{k: v for k, v in r.items() if k != "lines"}}))
            sys.stdout.flush()
    print()
    width = max(len(k) for k in (*FIGURES, *PHASES)) + 2
    print(f"{'':<{width}}" + "".join(f"{name:>16}" for name in results))
    for key in (*FIGURES, *PHASES):
        row = []
        for runs in results.values():
            values = [r[key] if key in FIGURES else r["phases"].get(key) for r in runs]
            row.append(_range([v for v in values if v is not None]))
        print(f"{key:<{width}}" + "".join(f"{cell:>16}" for cell in row))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
