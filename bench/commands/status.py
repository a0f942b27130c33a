"""`bench status`: the labs that are up, their containers and who holds the VIP."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, Subparsers


def register(sub: Subparsers) -> None:
    s = sub.add_parser("status", help="list labs, their containers and who holds the VIP")
    s.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from ..labctl import lab_status

    labs = lab_status()
    if not labs:
        print("no lbbench labs")
    for project, info in sorted(labs.items()):
        vip = info.get("vip") or "?"
        containers = info["containers"]
        running = sum(1 for c in containers if c["status"] == "running")
        holder = info.get("vip_holder") or "?"
        print(f"{project}  VIP {vip} on {holder}  {running}/{len(containers)} running  {_owner_text(info)}")
        for c in sorted(containers, key=lambda c: c["service"]):
            print(f"  {c['service']:<20} {c['role']:<10} {c['status']}")
    return EXIT_OK


def _owner_text(info: dict[str, Any]) -> str:
    who, state = info.get("owner") or {}, info.get("owner_state")
    if state == "live-run":
        return f"[live run: pid {who.get('pid')}, {who.get('command')}; leave it]"
    if state == "by-hand":
        return "[up by hand: `bench down PROJECT` when done]"
    if state == "unknown":
        return "[no owner recorded (older lbbench, or starting)]"
    return f"[leftover (its process {who.get('pid')} is gone): `bench down PROJECT`]"
