"""`bench doctor`: check what a run needs on this machine."""

from __future__ import annotations

import argparse

from .common import EXIT_FAIL, EXIT_OK, Subparsers


def register(sub: Subparsers) -> None:
    doc = sub.add_parser("doctor", help="check engine, compose, images, cores, fd limits, lab subnets")
    doc.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import run_checks

    checks = run_checks()
    for check in checks:
        print(check.line())
    return EXIT_FAIL if any(c.level == "FAIL" for c in checks) else EXIT_OK
