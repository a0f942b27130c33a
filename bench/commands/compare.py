"""`bench compare RUN...`: runs side by side, as ratios to the first group."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    cmp_ = sub.add_parser("compare", help="put runs side by side: ratios to the first, significant or within noise")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders of them (repeats of one scenario+variant are grouped; the first group is the baseline)")
    cmp_.add_argument("--format", choices=["table", "markdown", "json", "html"], help="output format (default: from --output's suffix, else a terminal table)")
    cmp_.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    cmp_.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    cmp_.add_argument("--metric", action="append", default=[], metavar="KEY", help="also compare this summary.json field, e.g. latency_ms.p90 (repeatable)")
    cmp_.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare

    compare(args.runs, fmt=args.format, output=args.output, alpha=args.alpha, extra_metrics=args.metric)
    if args.output:
        say(f"wrote {args.output}")
    return EXIT_OK
