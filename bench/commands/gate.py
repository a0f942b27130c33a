"""`bench gate`: exit 1 when a candidate regressed beyond a threshold and beyond noise."""

from __future__ import annotations

import argparse

from .common import Subparsers, say


def register(sub: Subparsers) -> None:
    g = sub.add_parser("gate", help="exit 1 when a candidate regressed beyond threshold AND noise (0 pass, 2 usage/data error)")
    g.add_argument("--baseline", nargs="+", default=[], metavar="RUN", help="baseline run directories or folders")
    g.add_argument("--candidate", nargs="+", default=[], metavar="RUN", help="candidate run directories or folders")
    g.add_argument("--rule", action="append", default=[], metavar="RULE", help="e.g. 'requests.per_s: -5%%', 'latency_ms.p99: +10%%', 'errors.total: <= 0' (repeatable)")
    g.add_argument("--rules", metavar="FILE", help="YAML gate file with a 'rules' mapping (and optional alpha)")
    g.add_argument("--alpha", type=float, help="significance level (default 0.05, or the gate file's)")
    g.add_argument("--strict", action="store_true", help="count a change beyond the threshold with too few data to tell as a regression")
    g.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per rule")
    g.add_argument("--json", metavar="FILE", help="write the full verdict as JSON")
    g.add_argument("--run", metavar="SCENARIO", help="run the scenario first: baseline and candidate interleaved A B A B ...")
    g.add_argument("--repeat", type=int, default=3, help="runs per side with --run (default 3, at most 20)")
    g.add_argument("--duration", help="with --run: override the scenario's duration, e.g. 20s")
    g.add_argument("--out", help="with --run: parent folder of the runs (default reports/gate-<scenario>-<time>)")
    for side in ("baseline", "candidate"):
        g.add_argument(f"--{side}-variant", help=f"with --run: topology variant of the {side}")
        g.add_argument(f"--{side}-set", action="append", default=[], metavar="KEY=VALUE", help=f"with --run: topology override of the {side} (repeatable)")
        g.add_argument(f"--{side}-scenario", metavar="SCENARIO", help=f"with --run: another scenario (name or file) for the {side}")
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
        baseline_spec={"variant": args.baseline_variant, "sets": args.baseline_set, "scenario": args.baseline_scenario},
        candidate_spec={"variant": args.candidate_variant, "sets": args.candidate_set, "scenario": args.candidate_scenario},
        duration=args.duration,
        out=args.out,
        log=say,
    )
