"""`bench report RUN_DIR`: rebuild summary.json, plots/ and report.html from a run directory alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..results.layout import RunDir
from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    rep = sub.add_parser("report", help="rebuild summary.json, plots/ and report.html from a run directory alone")
    rep.add_argument("run_dir", help="a run directory")
    rep.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import build_report

    run_dir = Path(args.run_dir)
    report = build_report(run_dir)
    rd = RunDir(run_dir)
    say(f"wrote {rd.summary_json}, {rd.plots}/ and {rd.derived}/")
    print(report)
    return EXIT_OK
