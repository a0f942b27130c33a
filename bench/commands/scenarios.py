"""`bench scenarios`: the shipped scenarios, one line each."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, Subparsers


def register(sub: Subparsers) -> None:
    sc = sub.add_parser("scenarios", help="list the shipped scenarios")
    sc.set_defaults(func=cmd_scenarios)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from ..spec import list_scenarios

    rows = [(s.name, s.topology + (f"/{s.variant}" if s.variant else ""), f"{s.duration:g}s", s.description) for s in list_scenarios()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    for name, topo, duration, description in rows:
        print(f"{name:<{widths[0]}}  {topo:<{widths[1]}}  {duration:>{widths[2]}}  {description}")
    return EXIT_OK
