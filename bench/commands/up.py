"""`bench up [TOPOLOGY]`: bring a lab up and leave it running."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    u = sub.add_parser("up", help="bring a topology up and leave it running (for working by hand)")
    u.add_argument("topology", nargs="?", default="split", help="topology name or path (default split)")
    u.add_argument("--variant", help="topology variant")
    u.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one topology field (repeatable)")
    u.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from ..labctl import lab_up

    info = lab_up(args.topology, variant=args.variant, sets=args.set, log=say)
    say(f"lab {info['project']} is up: VIP {info['vip']}")
    if info.get("server_name"):  # the user's own certificate names a host, not the VIP
        name = info["server_name"]
        say(f"  try: curl --cacert {info['ca']} --resolve {name}:443:{info['vip']} https://{name}/?echo=1")
    else:
        say(f"  try: curl --cacert {info['ca']} https://{info['vip']}/?echo=1")
    say(f"  stop: bench down {info['project']}")
    print(info["project"])
    return EXIT_OK
