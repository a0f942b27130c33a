"""`bench fault KIND`: inject a fault into a running lab by hand, or recover one."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .common import EXIT_OK, Subparsers, say, whole


def register(sub: Subparsers) -> None:
    from ..faults import FAULT_KINDS

    f = sub.add_parser("fault", help="inject a fault into a running lab by hand (or recover one)")
    f.add_argument("kind", nargs="?", choices=sorted(FAULT_KINDS), metavar="KIND", help="one of: " + ", ".join(sorted(FAULT_KINDS)))
    f.add_argument("--target", default="master", help="master (default: the node holding the VIP), backup, lb-a, lb-b, or a service (lb-a-backend1, srv2)")
    f.add_argument("--lab", metavar="PROJECT", help="the lab (default: the only one up)")
    f.add_argument("--recover", type=whole(1), metavar="ID", help="undo fault ID")
    f.add_argument("--recover-all", action="store_true", help="undo every fault still injected")
    f.set_defaults(func=cmd_fault)


def cmd_fault(args: argparse.Namespace) -> int:
    from ..labctl import lab_fault, lab_recover

    if args.recover is not None or args.recover_all:
        done = lab_recover(None if args.recover_all else args.recover, project=args.lab, log=say)
        say(f"recovered fault(s) {', '.join(map(str, done)) or 'none'}")
        return EXIT_OK
    if not args.kind:
        raise UserError("bench fault: name a KIND, or --recover ID / --recover-all", "see `bench fault --help`")
    inj = lab_fault(args.kind, args.target, project=args.lab, log=say)
    say(f"fault {inj['id']} injected: {inj['kind']} on {inj['node'] or inj['services'][0]}; undo with `bench fault --recover {inj['id']}`")
    print(inj["id"])
    return EXIT_OK
