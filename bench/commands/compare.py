"""`bench compare RUN...`: runs side by side, as ratios to the first group (or a duet with --run)."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, Subparsers, real, say
from .gate import add_duet_args, side_specs


def register(sub: Subparsers) -> None:
    cmp_ = sub.add_parser("compare", help="put runs side by side: ratios to the first, with intervals; --run measures both at once")
    cmp_.add_argument("runs", nargs="*", metavar="RUN", help="run directories or folders of them (repeats of one scenario+variant are grouped; the first group is the baseline)")
    cmp_.add_argument("--format", choices=["table", "markdown", "json", "html"], help="output format (default: from --output's suffix, else a terminal table)")
    cmp_.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    cmp_.add_argument("--alpha", type=real(above=0, below=1), default=0.05, help="1 - the confidence of the intervals (default 0.05: 95%%)")
    cmp_.add_argument("--metric", action="append", default=[], metavar="KEY", help="also compare this summary.json field, e.g. latency_ms.p90 (repeatable)")
    add_duet_args(cmp_, "compare")
    cmp_.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare

    base, cand = side_specs(args)
    compare(
        args.runs, fmt=args.format, output=args.output, alpha=args.alpha, extra_metrics=args.metric,
        run=args.run, rate=args.rate, slice_s=args.slice_s, warmup_s=args.warmup_s, budget_s=args.budget_s,
        out=args.out, baseline_spec=base, candidate_spec=cand, log=say,
    )  # fmt: skip
    if args.output:
        say(f"wrote {args.output}")
    return EXIT_OK
