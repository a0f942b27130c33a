"""`bench capacity`: measure what each operation costs the load balancer, predict what a target profile needs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import EXIT_INTERRUPTED, EXIT_OK, Subparsers, say


def register(sub: Subparsers) -> None:
    cap = sub.add_parser("capacity", help="cost per request/handshake/connection/MB and the cores, processes, memory and ports a target profile needs")
    csub = cap.add_subparsers(dest="capacity_command", metavar="SUBCOMMAND")
    csub.required = True

    m = csub.add_parser("measure", help="sweep fixed rates of each operation on a lab, fit the costs, validate with a mixed run (about 10 min)")
    m.add_argument("--scenario", default="seed-peak", help="scenario whose topology and overrides the sweep runs on (default seed-peak)")
    m.add_argument("--variant", help="topology variant (default: the scenario's)")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one topology field (repeatable)")
    m.add_argument("--plan", default="full", choices=("full", "quick"), help="full (2 labs, about 8 min) or quick (a tiny sweep for tests)")
    m.add_argument("--stage-seconds", type=float, default=10.0, metavar="S", help="seconds per rate (default 10)")
    m.add_argument("--out", help="capacity folder to write (default reports/capacity-<plan>-<time>)")
    m.add_argument("--validate", default="seed-peak", metavar="SCENARIO", help="scalable scenario run to check the model (default seed-peak); 'none' skips it")
    m.add_argument("--validate-scale", type=float, metavar="F", help="its scale (default: the largest 1/2/5 x 10^k the model says fits)")
    m.add_argument("--validate-duration", default="40s", help="its duration (default 40s)")
    m.add_argument("--profile", action="append", default=[], metavar="NAME|FILE", help="profile to predict (repeatable; default seed-peak)")
    m.add_argument("--json", action="store_true", help="print capacity.json instead of the tables")
    m.set_defaults(func=cmd_capacity)

    f = csub.add_parser("fit", help="fit a capacity folder again from its raw data (capacity.json, steps.csv, report.html)")
    f.add_argument("folder", help="a folder `bench capacity measure` wrote")
    f.add_argument("--profile", action="append", default=[], metavar="NAME|FILE", help="profile to predict (repeatable; default seed-peak)")
    f.add_argument("--json", action="store_true", help="print capacity.json instead of the tables")
    f.set_defaults(func=cmd_capacity)

    p = csub.add_parser("predict", help="what a target profile needs by a fitted model: cores, processes, memory, ports, headroom")
    p.add_argument("profile", help="profile name (profiles/NAME.yaml) or path")
    p.add_argument("--model", required=True, metavar="DIR|FILE", help="a capacity folder or its capacity.json")
    p.add_argument("--scale", type=float, default=1.0, metavar="F", help="multiply the profile's rates and counts by F")
    p.add_argument("--cores", type=float, help="cores of the target machine (default: the profile's, else this machine's)")
    p.add_argument("--memory-gb", type=float, help="memory of the target machine, GB")
    p.add_argument("--json", action="store_true", help="print the prediction as JSON")
    p.set_defaults(func=cmd_capacity)

    v = csub.add_parser("validate", help="run the mixed validation scenario for a fitted capacity folder and compare")
    v.add_argument("folder", help="a folder `bench capacity measure` wrote")
    v.add_argument("--scenario", default="seed-peak", help="scalable scenario to run (default seed-peak)")
    v.add_argument("--scale", type=float, metavar="F", help="its scale (default: what the model says fits)")
    v.add_argument("--duration", default="40s", help="its duration (default 40s)")
    v.add_argument("--profile", action="append", default=[], metavar="NAME|FILE", help="profile to predict (repeatable; default seed-peak)")
    v.set_defaults(func=cmd_capacity)


def cmd_capacity(args: argparse.Namespace) -> int:
    """One subcommand: measure, fit, predict or validate."""
    return {"measure": _measure, "fit": _fit, "predict": _predict, "validate": _validate}[args.capacity_command](args)


def _show(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        from ..capacity.report import render_terminal

        render_terminal(doc)


def _measure(args: argparse.Namespace) -> int:
    from ..capacity.main import measure

    folder, doc = measure(
        out=Path(args.out) if args.out else None,
        scenario=args.scenario,
        variant=args.variant,
        sets=args.set,
        plan=args.plan,
        stage_s=args.stage_seconds,
        validate=None if args.validate == "none" else args.validate,
        validate_scale=args.validate_scale,
        validate_duration=args.validate_duration,
        profiles=args.profile or ["seed-peak"],
        log=say,
    )
    _show(doc, args.json)
    say(f"wrote {folder}/capacity.json and {folder}/report.html")
    print(folder)
    return EXIT_INTERRUPTED if any("did not complete (interrupted)" in n for n in doc.get("notes", [])) else EXIT_OK


def _fit(args: argparse.Namespace) -> int:
    from ..capacity.main import refit

    doc = refit(Path(args.folder), args.profile or ["seed-peak"], log=say)
    _show(doc, args.json)
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from ..capacity.main import predict_profile

    out = predict_profile(args.profile, Path(args.model), args.scale, args.cores, args.memory_gb)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        from ..capacity.report import print_prediction

        print_prediction(out)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from ..capacity.main import validate_folder

    doc = validate_folder(Path(args.folder), args.scenario, args.scale, args.duration, args.profile or ["seed-peak"], log=say)
    _show(doc, False)
    return EXIT_OK
