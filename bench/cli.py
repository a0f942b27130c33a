"""The `bench` command: parse, call one function, print. No logic lives here.

Exit status: 0 success, 1 a check failed (`bench doctor`), 2 a usage or input
error (one line on stderr naming the problem and the fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import UserError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UserError (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .run import run_scenario

    run_dir = run_scenario(
        args.scenario,
        duration=args.duration,
        out=Path(args.out) if args.out else None,
        variant=args.variant,
        sets=args.set,
        log=_say,
    )
    run = json.loads((run_dir / "run.json").read_text())
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        s = json.loads(summary_path.read_text())
        lat = s["latency_ms"]
        _say(
            f"{s['requests']['per_s']} req/s, {s['requests']['total']} requests, {s['errors']['total']} errors, "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms"
        )
    print(run_dir)
    return EXIT_INTERRUPTED if run.get("status") == "interrupted" else EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    from .labctl import lab_up

    info = lab_up(args.topology, variant=args.variant, sets=args.set, log=_say)
    _say(f"lab {info['project']} is up: VIP {info['vip']}")
    _say(f"  try: curl --cacert {info['ca']} https://{info['vip']}/?echo=1")
    _say(f"  stop: bench down {info['project']}")
    print(info["project"])
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from .labctl import lab_down

    if not args.all and not args.project:
        raise UserError("bench down: name a PROJECT or pass --all", "`bench status` lists labs")
    containers, networks = lab_down(None if args.all else args.project)
    _say(f"removed {containers} container(s) and {networks} network(s)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .labctl import lab_status

    labs = lab_status()
    if not labs:
        print("no lbbench labs")
    for project, info in sorted(labs.items()):
        vip = info.get("vip") or "?"
        containers = info["containers"]
        running = sum(1 for c in containers if c["status"] == "running")
        holder = info.get("vip_holder") or "?"
        print(f"{project}  VIP {vip} on {holder}  {running}/{len(containers)} running")
        for c in sorted(containers, key=lambda c: c["service"]):
            print(f"  {c['service']:<20} {c['role']:<10} {c['status']}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    checks = run_checks()
    for check in checks:
        print(check.line())
    return EXIT_FAIL if any(c.level == "FAIL" for c in checks) else EXIT_OK


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .spec import list_scenarios

    for s in list_scenarios():
        print(f"{s.name:<16} {s.topology}{'/' + s.variant if s.variant else '':<12} {s.duration:>5g}s  {s.description}")
    return EXIT_OK


def cmd_images(args: argparse.Namespace) -> int:
    from .images import ensure_images

    ref = ensure_images(args.flavour, base=args.base, log=_say)
    print(ref.node_tag)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis.summary import SummaryError, write_summary

    run_dir = Path(args.run_dir)
    try:
        write_summary(run_dir)
    except SummaryError as exc:
        raise UserError(str(exc), "pass a run directory (it holds run.json)") from None
    print(run_dir / "summary.json")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description="Load-test and benchmark software load balancers (HAProxy + keepalived labs).")
    p.add_argument("--version", action="version", version=f"lbbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("run", help="run a scenario end to end and write a run directory")
    r.add_argument("scenario", help="scenario name (see `bench scenarios`) or path to a scenario YAML")
    r.add_argument("--duration", help="override the scenario's duration, e.g. 10s, 2m")
    r.add_argument("--out", help="run directory to write (default reports/<scenario>-<variant>-<time>)")
    r.add_argument("--variant", help="topology variant to run (default: the scenario's)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one topology field, e.g. lb.backend.processes=4 (repeatable)")
    r.set_defaults(func=cmd_run)

    u = sub.add_parser("up", help="bring a topology up and leave it running (for working by hand)")
    u.add_argument("topology", nargs="?", default="split", help="topology name or path (default split)")
    u.add_argument("--variant", help="topology variant")
    u.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one topology field (repeatable)")
    u.set_defaults(func=cmd_up)

    d = sub.add_parser("down", help="tear a lab down (or every lbbench leftover with --all)")
    d.add_argument("project", nargs="?", help="lab project name (see `bench status`)")
    d.add_argument("--all", action="store_true", help="remove every container, network and volume labelled by lbbench")
    d.set_defaults(func=cmd_down)

    s = sub.add_parser("status", help="list labs, their containers and who holds the VIP")
    s.set_defaults(func=cmd_status)

    doc = sub.add_parser("doctor", help="check engine, compose, images, cores, fd limits, lab subnets")
    doc.set_defaults(func=cmd_doctor)

    sc = sub.add_parser("scenarios", help="list the shipped scenarios")
    sc.set_defaults(func=cmd_scenarios)

    im = sub.add_parser("images", help="build the lab images offline (cached by content hash)")
    im.add_argument("action", choices=["build"], help="build")
    im.add_argument("--flavour", default="node", help="image flavour: node (Debian 12) or node-trixie (Debian 13)")
    im.add_argument("--base", help="use this official base image instead of a debootstrap one (needs a registry)")
    im.set_defaults(func=cmd_images)

    rep = sub.add_parser("report", help="rebuild summary.json (and the report) from a run directory alone")
    rep.add_argument("run_dir", help="a run directory")
    rep.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as exc:
        _say(f"bench: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("bench: interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
