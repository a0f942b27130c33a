"""`bench down PROJECT|--all`: tear a lab (or every lbbench leftover) down."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UserError
from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    d = sub.add_parser("down", help="tear a lab down (or every lbbench leftover with --all)")
    d.add_argument("project", nargs="*", help="lab project name(s) (see `bench status`)")
    d.add_argument("--all", action="store_true", help="remove every container, network and volume labelled by lbbench, except labs of live runs")
    d.add_argument("--force", action="store_true", help="also remove labs that belong to a live run (it will fail)")
    d.set_defaults(func=cmd_down)


def cmd_down(args: argparse.Namespace) -> int:
    from ..labctl import lab_down

    if not args.all and not args.project:
        raise UserError("bench down: name a PROJECT or pass --all", "`bench status` lists labs")
    if args.all and args.project:
        raise UserError("bench down: name PROJECTs or pass --all, not both", "`bench status` lists labs")
    containers = networks = 0
    skipped: dict[str, Any] = {}
    for project in args.project or [None]:
        c, n, kept = lab_down(project, force=args.force)
        containers, networks = containers + c, networks + n
        skipped.update(kept)
    say(f"removed {containers} container(s) and {networks} network(s)")
    for project, who in sorted(skipped.items()):
        say(f"kept {project}: it belongs to a live run (pid {who.get('pid')}: {who.get('command')}); --force removes it too")
    return EXIT_OK
