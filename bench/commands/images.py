"""`bench images build`: the lab images, built offline and cached by content hash."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    im = sub.add_parser("images", help="build the lab images offline (cached by content hash)")
    im.add_argument("action", choices=["build"], help="build")
    im.add_argument("--flavour", default="node", help="image flavour: node (Debian 12) or node-trixie (Debian 13)")
    im.add_argument("--base", help="use this official base image instead of a debootstrap one (needs a registry)")
    im.set_defaults(func=cmd_images)


def cmd_images(args: argparse.Namespace) -> int:
    from ..images import ensure_images

    ref = ensure_images(args.flavour, base=args.base, log=say)
    print(ref.node_tag)
    return EXIT_OK
