"""`bench gate`: exit 1 when a candidate regressed beyond a threshold, 3 when the evidence cannot tell."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from .common import Subparsers, real, say, whole


def _duration(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        from ..spec import parse_duration

        try:
            return parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}") from None

    parse.__name__ = flag
    return parse


def _instant(text: str) -> float:
    """An ISO time (``2026-12-01T16:30:00Z``) or epoch seconds, as epoch seconds."""
    import datetime as dt

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (an ISO time such as 2026-12-01T16:30:00Z, or epoch seconds)") from None
    return when.timestamp()


def _rate(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (a number such as 400, or auto)") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0: {text!r}")
    return value


def add_duet_args(p: argparse.ArgumentParser, command: str) -> None:
    """The flags of a duet (`bench gate --run`, `bench compare --run`): the scenario, the load, the slices, each side."""
    p.add_argument("--run", metavar="SCENARIO", help="run the scenario first: both sides at once (a duet; a rate-model scenario such as open)")
    p.add_argument(
        "--rate",
        type=_rate,
        help="with --run: the fixed offered load per side, in the scenario's unit, or auto (default: 60%% of the highest rate both labs hold at once, found by a short probe)",
    )
    p.add_argument("--slice", dest="slice_s", metavar="DURATION", type=_duration("--slice"), help="with --run: length of one paired slice (default 5s)")
    p.add_argument("--warmup", dest="warmup_s", metavar="DURATION", type=_duration("--warmup"), help="with --run: time before the first slice (default 10s)")
    budget = "the most slice time; the gate stops earlier once decided" if command == "gate" else "slice time"
    p.add_argument("--budget", dest="budget_s", metavar="DURATION", type=_duration("--budget"), help=f"with --run: {budget} (default 4m)")
    p.add_argument("--out", help=f"with --run: folder of the runs (default reports/{command}-<scenario>-<time>)")
    for side in ("baseline", "candidate"):
        p.add_argument(f"--{side}-variant", help=f"with --run: topology variant of the {side}")
        p.add_argument(f"--{side}-set", action="append", default=[], metavar="KEY=VALUE", help=f"with --run: topology override of the {side} (repeatable)")
        p.add_argument(f"--{side}-scenario", metavar="SCENARIO", help=f"with --run: another scenario (name or file) for the {side}")


def side_specs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--baseline-*`` and ``--candidate-*`` as the two side specs."""
    return tuple({"variant": getattr(args, f"{s}_variant"), "sets": getattr(args, f"{s}_set"), "scenario": getattr(args, f"{s}_scenario")} for s in ("baseline", "candidate"))  # type: ignore[return-value]


def register(sub: Subparsers) -> None:
    g = sub.add_parser(
        "gate",
        help="exit 1 when a candidate regressed beyond its threshold (0 pass, 2 usage/data error, 3 inconclusive)",
        description="Judge a candidate against its baseline. With --run SCENARIO both labs run at once (a duet) at one fixed load.",
    )
    g.add_argument("--baseline", nargs="+", default=[], metavar="RUN", help="baseline run directories or folders")
    g.add_argument("--candidate", nargs="+", default=[], metavar="RUN", help="candidate run directories or folders")
    g.add_argument("--duet", action="append", metavar="DIR", help="judge a finished duet folder (the --out of bench gate --run) again; twice: the two halves of a two-machine duet (--side)")
    g.add_argument("--rule", action="append", default=[], metavar="RULE", help="e.g. 'cost.lb_us_per_request: +2%%', 'latency_ms.p99: +10%%', 'errors.total: <= 0' (repeatable)")
    g.add_argument("--rules", metavar="FILE", help="YAML gate file with a 'rules' mapping (and optional alpha)")
    g.add_argument("--alpha", type=real(above=0, below=1), help="1 - the confidence of the intervals (default 0.05: 95%%), or the gate file's")
    g.add_argument("--strict", action="store_true", help="count an inconclusive rule as a regression (exit 1 instead of 3)")
    g.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per rule")
    g.add_argument("--json", metavar="FILE", help="write the full verdict as JSON")
    add_duet_args(g, "gate")
    g.add_argument("--fixed", action="store_true", help="with --run: judge once, when the budget is spent (no early stop)")
    g.add_argument("--side", choices=["baseline", "candidate"], help="with --run: run only this side here (half of a duet on two machines; needs --start-at and --rate)")
    g.add_argument("--start-at", dest="start_at", type=_instant, metavar="TIME", help="with --side: the instant both machines start the schedule (ISO time or epoch seconds, at least a minute ahead)")
    g.add_argument("--interleaved", action="store_true", help="with --run: whole runs of each side one after the other (random order per round) instead of a duet")
    g.add_argument("--repeat", type=whole(1, 20), help="with --interleaved: runs per side (default 3, at most 20)")
    g.add_argument("--duration", help="with --interleaved: override the scenario's duration, e.g. 20s")
    g.set_defaults(func=cmd_gate)


def cmd_gate(args: argparse.Namespace) -> int:
    from ..gate import gate

    return gate(
        baseline=args.baseline,
        candidate=args.candidate,
        rule_texts=args.rule,
        rules_file=args.rules,
        alpha=args.alpha,
        strict=args.strict,
        junit=args.junit,
        json_out=args.json,
        run=args.run,
        repeat=args.repeat,
        interleaved=args.interleaved,
        baseline_spec=side_specs(args)[0],
        candidate_spec=side_specs(args)[1],
        duration=args.duration,
        out=args.out,
        duet=args.duet,
        rate=args.rate,
        slice_s=args.slice_s,
        warmup_s=args.warmup_s,
        budget_s=args.budget_s,
        fixed=args.fixed,
        side=args.side,
        start_at=args.start_at,
        log=say,
    )
