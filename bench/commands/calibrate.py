"""`bench calibrate`: the load generators' efficiency against wrk on one loopback HAProxy."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, Subparsers, real, say, whole


def register(sub: Subparsers) -> None:
    cal = sub.add_parser("calibrate", help="load generator efficiency: lean engine and FastHttpUser vs wrk on one loopback HAProxy")
    cal.add_argument("--seconds", type=real(minimum=1, maximum=120), default=5.0, help="measuring window per client and round (default 5)")
    cal.add_argument("--rounds", type=whole(1, 20), default=3, help="interleaved rounds A B, B A, ... (default 3, at most 20)")
    cal.add_argument("--connections", type=whole(1, 5000), default=50, help="concurrent connections (wrk -c, Locust users; default 50)")
    cal.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="measure only these clients (repeatable): wrk-ka lean-ka fasthttp-ka wrk-close lean-close lean-resume (the default set); "
        "lean-open lean-connrate lean-handshake lean-held (the rate models, held connections); base-ka base-close ... (with --baseline)",
    )
    cal.add_argument(
        "--baseline",
        metavar="DIR",
        help="another lbbench checkout (e.g. `git worktree add /tmp/before main`): its lean engine runs as the base-* clients, interleaved with this one",
    )
    cal.add_argument("--haproxy-threads", type=whole(1, 64), default=1, help="HAProxy nbthread (default 1)")
    cal.add_argument("--out", help="write the result as JSON to this file")
    cal.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..calibrate import render_table, run_calibrate

    result = run_calibrate(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        clients=args.client or None,
        haproxy_threads=args.haproxy_threads,
        out=Path(args.out) if args.out else None,
        log=say,
        baseline=Path(args.baseline) if args.baseline else None,
    )
    print(render_table(result), end="")
    if args.out:
        say(f"wrote {args.out}")
    return EXIT_OK
