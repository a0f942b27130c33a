"""The `bench` command: parse, call one function, print. No logic lives here.

Exit status: 0 success, 1 a check failed (`bench doctor`) or a regression (`bench gate`), 2 a usage or input
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
    from .matrix import run_command

    folder, is_parent = run_command(
        args.scenario,
        matrix=args.matrix,
        repeat=args.repeat,
        duration=args.duration,
        out=Path(args.out) if args.out else None,
        variant=args.variant,
        sets=args.set,
        log=_say,
        scale=args.scale,
        workers=args.workers,
    )
    run_dirs = sorted(p.parent for p in folder.glob("*/run.json")) if is_parent else [folder]
    for run_dir in run_dirs:
        summary_path = run_dir / "summary.json"
        if summary_path.exists():
            s = json.loads(summary_path.read_text())
            lat = s["latency_ms"]
            label = f"{run_dir.name}: " if is_parent else ""
            _say(
                f"{label}{s['requests']['per_s']} req/s, {s['requests']['total']} requests, {s['errors']['total']} errors, "
                f"p50 {lat['p50']} ms, p99 {lat['p99']} ms"
            )
            load = s.get("load") or {}
            if load.get("reached") is not None or load.get("find_max"):
                # target vs achieved; says so when the load generator could not reach it
                _say(f"{label}load: {load['verdict']}")
    print(folder)
    statuses = [json.loads((d / "run.json").read_text()).get("status") for d in run_dirs if (d / "run.json").exists()]
    return EXIT_INTERRUPTED if "interrupted" in statuses else EXIT_OK


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


def cmd_fault(args: argparse.Namespace) -> int:
    from .labctl import lab_fault, lab_recover

    if args.recover is not None or args.recover_all:
        done = lab_recover(None if args.recover_all else args.recover, project=args.lab, log=_say)
        _say(f"recovered fault(s) {', '.join(map(str, done)) or 'none'}")
        return EXIT_OK
    if not args.kind:
        raise UserError("bench fault: name a KIND, or --recover ID / --recover-all", "see `bench fault --help`")
    inj = lab_fault(args.kind, args.target, project=args.lab, log=_say)
    _say(f"fault {inj['id']} injected: {inj['kind']} on {inj['node'] or inj['services'][0]}; undo with `bench fault --recover {inj['id']}`")
    print(inj["id"])
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

    rows = [(s.name, s.topology + (f"/{s.variant}" if s.variant else ""), f"{s.duration:g}s", s.description) for s in list_scenarios()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    for name, topo, duration, description in rows:
        print(f"{name:<{widths[0]}}  {topo:<{widths[1]}}  {duration:>{widths[2]}}  {description}")
    return EXIT_OK


def cmd_images(args: argparse.Namespace) -> int:
    from .images import ensure_images

    ref = ensure_images(args.flavour, base=args.base, log=_say)
    print(ref.node_tag)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis.summary import SummaryError
    from .report import build_report

    run_dir = Path(args.run_dir)
    try:
        report = build_report(run_dir)
    except SummaryError as exc:
        raise UserError(str(exc), "pass a run directory (it holds run.json)") from None
    _say(f"wrote {run_dir / 'summary.json'}, {run_dir / 'plots'}/ and {run_dir / 'derived'}/")
    print(report)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    compare(args.runs, fmt=args.format, output=args.output, alpha=args.alpha, extra_metrics=args.metric)
    if args.output:
        _say(f"wrote {args.output}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    from .gate import gate

    return gate(
        baseline=args.baseline,
        candidate=args.candidate,
        rule_texts=args.rule,
        rules_file=args.rules,
        alpha=args.alpha,
        strict=args.strict,
        junit=args.junit,
        json_out=args.json,
        run=args.run,
        repeat=args.repeat,
        baseline_spec={"variant": args.baseline_variant, "sets": args.baseline_set, "scenario": args.baseline_scenario},
        candidate_spec={"variant": args.candidate_variant, "sets": args.candidate_set, "scenario": args.candidate_scenario},
        duration=args.duration,
        out=args.out,
        log=_say,
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import render_table, run_calibrate

    result = run_calibrate(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        clients=args.client or None,
        haproxy_threads=args.haproxy_threads,
        out=Path(args.out) if args.out else None,
        log=_say,
    )
    print(render_table(result), end="")
    if args.out:
        _say(f"wrote {args.out}")
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
    r.add_argument("--matrix", metavar="A,B,C|FILE", help="run once per variant (names, or a YAML file of variants) into one parent folder")
    r.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="N runs, variants interleaved A B C A B C ...; a scenario with faults repeats its fault cycle N times in one run instead",
    )
    r.add_argument(
        "--scale",
        type=float,
        metavar="F",
        help="multiply a scalable scenario's load (seed-peak) by F; default: what fits this machine. A scale that does not fit stops before starting",
    )
    r.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="load generator as Locust's master here plus N worker containers on the lab's client network (each load.processes processes)",
    )
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

    from .faults import FAULT_KINDS

    f = sub.add_parser("fault", help="inject a fault into a running lab by hand (or recover one)")
    f.add_argument("kind", nargs="?", choices=sorted(FAULT_KINDS), metavar="KIND", help="one of: " + ", ".join(sorted(FAULT_KINDS)))
    f.add_argument("--target", default="master", help="master (default: the node holding the VIP), backup, lb-a, lb-b, or a service (lb-a-backend1, srv2)")
    f.add_argument("--lab", metavar="PROJECT", help="the lab (default: the only one up)")
    f.add_argument("--recover", type=int, metavar="ID", help="undo fault ID")
    f.add_argument("--recover-all", action="store_true", help="undo every fault still injected")
    f.set_defaults(func=cmd_fault)

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

    cal = sub.add_parser("calibrate", help="load generator efficiency: lean engine and FastHttpUser vs wrk on one loopback HAProxy")
    cal.add_argument("--seconds", type=float, default=5.0, help="measuring window per client and round (default 5)")
    cal.add_argument("--rounds", type=int, default=3, help="interleaved rounds A B A B ... (default 3)")
    cal.add_argument("--connections", type=int, default=50, help="concurrent connections (wrk -c, Locust users; default 50)")
    cal.add_argument("--client", action="append", default=[], metavar="NAME", help="measure only these clients (repeatable): wrk-ka lean-ka fasthttp-ka wrk-close lean-close lean-resume")
    cal.add_argument("--haproxy-threads", type=int, default=1, help="HAProxy nbthread (default 1)")
    cal.add_argument("--out", help="write the result as JSON to this file")
    cal.set_defaults(func=cmd_calibrate)

    rep = sub.add_parser("report", help="rebuild summary.json, plots/ and report.html from a run directory alone")
    rep.add_argument("run_dir", help="a run directory")
    rep.set_defaults(func=cmd_report)

    cmp_ = sub.add_parser("compare", help="put runs side by side: ratios to the first, significant or within noise")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders of them (repeats of one scenario+variant are grouped; the first group is the baseline)")
    cmp_.add_argument("--format", choices=["table", "markdown", "json", "html"], help="output format (default: from --output's suffix, else a terminal table)")
    cmp_.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    cmp_.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    cmp_.add_argument("--metric", action="append", default=[], metavar="KEY", help="also compare this summary.json field, e.g. latency_ms.p90 (repeatable)")
    cmp_.set_defaults(func=cmd_compare)

    g = sub.add_parser("gate", help="exit 1 when a candidate regressed beyond threshold AND noise (0 pass, 2 usage/data error)")
    g.add_argument("--baseline", nargs="+", default=[], metavar="RUN", help="baseline run directories or folders")
    g.add_argument("--candidate", nargs="+", default=[], metavar="RUN", help="candidate run directories or folders")
    g.add_argument("--rule", action="append", default=[], metavar="RULE", help="e.g. 'requests.per_s: -5%%', 'latency_ms.p99: +10%%', 'errors.total: <= 0' (repeatable)")
    g.add_argument("--rules", metavar="FILE", help="YAML gate file with a 'rules' mapping (and optional alpha)")
    g.add_argument("--alpha", type=float, help="significance level (default 0.05, or the gate file's)")
    g.add_argument("--strict", action="store_true", help="count a change beyond the threshold with too few data to tell as a regression")
    g.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per rule")
    g.add_argument("--json", metavar="FILE", help="write the full verdict as JSON")
    g.add_argument("--run", metavar="SCENARIO", help="run the scenario first: baseline and candidate interleaved A B A B ...")
    g.add_argument("--repeat", type=int, default=3, help="runs per side with --run (default 3, at most 20)")
    g.add_argument("--duration", help="with --run: override the scenario's duration, e.g. 20s")
    g.add_argument("--out", help="with --run: parent folder of the runs (default reports/gate-<scenario>-<time>)")
    for side in ("baseline", "candidate"):
        g.add_argument(f"--{side}-variant", help=f"with --run: topology variant of the {side}")
        g.add_argument(f"--{side}-set", action="append", default=[], metavar="KEY=VALUE", help=f"with --run: topology override of the {side} (repeatable)")
        g.add_argument(f"--{side}-scenario", metavar="SCENARIO", help=f"with --run: another scenario (name or file) for the {side}")
    g.set_defaults(func=cmd_gate)
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
