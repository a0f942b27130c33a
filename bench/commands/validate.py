"""`bench validate SCENARIO`: everything `bench run` checks before it starts, every problem at once; no lab starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    v = sub.add_parser(
        "validate",
        help="check a scenario as `bench run` would before starting (spec, fit, images, your config and files, haproxy -c); starts no lab",
    )
    v.add_argument("scenario", help="scenario name (see `bench scenarios`) or path to a scenario YAML")
    v.add_argument("--variant", help="topology variant (default: the scenario's)")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one topology field (repeatable)")
    v.add_argument("--duration", help="override the scenario's duration, e.g. 10s")
    v.add_argument("--scale", type=float, metavar="F", help="as `bench run --scale`")
    v.add_argument("--workers", type=int, default=0, metavar="N", help="as `bench run --workers`")
    v.add_argument("--repeat", type=int, default=1, help="as `bench run --repeat` (a scenario with faults repeats its cycle)")
    v.add_argument("--offline", action="store_true", help="no Docker: spec, fit, your files and the rendered configs only (no images, no haproxy -c)")
    v.add_argument("--render", metavar="DIR", help="also write the rendered configs (public parts) to DIR, to read what your lines and templates produce")
    v.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from ..preflight import describe, preflight

    checked = preflight(
        args.scenario,
        duration=args.duration,
        variant=args.variant,
        sets=args.set,
        repeat=args.repeat,
        scale=args.scale,
        workers=args.workers,
        log=say,
        for_run=False,
        with_engine=not args.offline,
        render_to=Path(args.render) if args.render else None,
    )
    for line in describe(checked):
        print(f"ok  {line}")
    if args.render:
        say(f"wrote the rendered configs to {args.render}")
    return EXIT_OK
