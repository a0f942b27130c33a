"""`bench watch RUN_DIR`: the live view of a run another `bench run` is writing (from another terminal or host)."""

from __future__ import annotations

import argparse

from .common import EXIT_INTERRUPTED, EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    w = sub.add_parser("watch", help="follow a run that another `bench run` is writing: the same live view, until it ends")
    w.add_argument("run_dir", help="the run directory (bench run prints it; reports/<scenario>-<variant>-<time>)")
    w.add_argument("--lines", action="store_true", help="one compact line every 5 s instead of the panel")
    w.add_argument("--metrics-port", type=int, metavar="N", help="also serve the run's figures as Prometheus/OpenMetrics text on http://127.0.0.1:N/metrics")
    w.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDR", help="address --metrics-port listens on (default 127.0.0.1)")
    w.set_defaults(func=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    from ..live.view import watch_run

    metrics = None
    if args.metrics_port is not None:
        from ..live.metrics import MetricsServer

        metrics = MetricsServer(args.metrics_port, args.metrics_host)
        metrics.start()
        say(f"metrics: {metrics.url} while the run lasts")
    try:
        status = watch_run(args.run_dir, "lines" if args.lines else "auto", collector=metrics.collector if metrics else None)
    finally:
        if metrics is not None:
            metrics.stop()
    say(f"run {status}")
    return EXIT_INTERRUPTED if status == "interrupted" else EXIT_OK
