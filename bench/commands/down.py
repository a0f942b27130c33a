"""`bench down PROJECT|--all`: tear a lab (or every lbbench leftover) down."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    d = sub.add_parser("down", help="tear a lab down (or every lbbench leftover with --all)")
    d.add_argument("project", nargs="?", help="lab project name (see `bench status`)")
    d.add_argument("--all", action="store_true", help="remove every container, network and volume labelled by lbbench")
    d.set_defaults(func=cmd_down)


def cmd_down(args: argparse.Namespace) -> int:
    from ..labctl import lab_down

    if not args.all and not args.project:
        raise UserError("bench down: name a PROJECT or pass --all", "`bench status` lists labs")
    containers, networks = lab_down(None if args.all else args.project)
    say(f"removed {containers} container(s) and {networks} network(s)")
    return EXIT_OK
