"""`bench run SCENARIO`: a scenario end to end into a run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..results.layout import RunDir, find_run_dirs
from .common import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, Subparsers, real, say, whole


def register(sub: Subparsers) -> None:
    r = sub.add_parser("run", help="run a scenario end to end and write a run directory")
    r.add_argument("scenario", help="scenario name (see `bench scenarios`) or path to a scenario YAML")
    r.add_argument("--duration", help="override the scenario's duration, e.g. 10s, 2m")
    r.add_argument("--out", help="run directory to write (default reports/<scenario>-<variant>-<time>)")
    r.add_argument("--variant", help="topology variant to run (default: the scenario's)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one topology field, e.g. lb.backend.processes=4 (repeatable)")
    r.add_argument("--matrix", metavar="A,B,C|FILE", help="run once per variant (names, or a YAML file of variants) into one parent folder")
    r.add_argument(
        "--repeat",
        type=whole(1, 60),
        default=1,
        help="N runs, variants interleaved A B C A B C ...; a scenario with faults repeats its fault cycle N times in one run instead",
    )
    r.add_argument(
        "--scale",
        type=real(above=0, maximum=1e6),
        metavar="F",
        help="multiply a scalable scenario's load (seed-peak) by F; default: what fits this machine. A scale that does not fit stops before starting",
    )
    r.add_argument(
        "--workers",
        type=whole(0, 64),
        default=0,
        metavar="N",
        help="load generator as Locust's master here plus N worker containers on the lab's client network (each load.processes processes)",
    )
    r.add_argument(
        "--junit",
        metavar="FILE",
        help="write the scenario's thresholds (SLOs) as JUnit XML: one testcase per threshold (docs/thresholds.md)",
    )
    r.add_argument("--quiet", action="store_true", help="no live view (by default: a live panel on a terminal, one line every 5 s in logs)")
    r.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve the run's live figures and the lab's HAProxy counters as Prometheus/OpenMetrics text on http://127.0.0.1:N/metrics while it lasts",
    )
    r.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDR", help="address --metrics-port listens on (default 127.0.0.1, loopback only)")
    r.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ..live.view import LiveView
    from ..matrix import run_command
    from ..thresholds import check_output_path, exit_status, verdict_line, write_junit

    if args.junit:
        check_output_path(Path(args.junit), "--junit")  # before anything starts

    metrics = None
    if args.metrics_port is not None:
        from ..live.metrics import MetricsServer

        metrics = MetricsServer(args.metrics_port, args.metrics_host)
        metrics.start()  # a port in use is one line, before anything else starts
        say(f"metrics: {metrics.url} while the run lasts")
    live = LiveView("quiet" if args.quiet else "auto", collector=metrics.collector if metrics else None)
    try:
        folder, is_parent = run_command(
            args.scenario,
            matrix=args.matrix,
            repeat=args.repeat,
            duration=args.duration,
            out=Path(args.out) if args.out else None,
            variant=args.variant,
            sets=args.set,
            log=say,
            scale=args.scale,
            workers=args.workers,
            live=live,
        )
    finally:
        live.close()
        if metrics is not None:
            metrics.stop()
    run_dirs = [RunDir(d) for d in (find_run_dirs(folder) if is_parent else [folder])]
    if is_parent:  # each run said its own headline when its summary was ready; here, all of them together
        from ..analysis.summary import headline

        for run_dir in run_dirs:
            if run_dir.summary_json.exists():
                for line in headline(json.loads(run_dir.summary_json.read_text()), f"{run_dir.root.name}: "):
                    say(line)
    # the thresholds' verdicts (each run's headline said them already): JUnit and the exit status
    verdicts = []
    for run_dir in run_dirs:
        if run_dir.summary_json.exists():
            section = json.loads(run_dir.summary_json.read_text()).get("thresholds")
            if verdict_line(section):
                verdicts.append((run_dir.root.name, section))
    if args.junit:
        write_junit(Path(args.junit), verdicts)
        say(f"wrote {args.junit}")
    print(folder)
    runs = [json.loads(d.run_json.read_text()) for d in run_dirs if d.run_json.exists()]
    statuses = [r.get("status") for r in runs]
    for r in runs:
        if r.get("status") == "invalid":
            # one line: what happened to the lab, and when
            label = f"{r.get('id')}: " if is_parent else ""
            say(f"{label}INVALID: the lab changed during the run: {(r.get('integrity') or {}).get('headline')}")
    if "interrupted" in statuses:
        return EXIT_INTERRUPTED
    if "invalid" in statuses:
        return EXIT_INVALID  # no threshold verdict of a lab that changed under the run counts
    # the worst verdict of the runs: a failed threshold, then an inconclusive one (docs/thresholds.md)
    return max((exit_status(v) for _, v in verdicts), default=EXIT_OK)

