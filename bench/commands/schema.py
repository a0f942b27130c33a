"""`bench schema NAME`: the JSON Schema of a file lbbench writes (run, summary, lab, duet, gate, compare, capacity, sweep) or reads (scenario, topology)."""

from __future__ import annotations

import argparse
import json

from .common import EXIT_OK, Subparsers

NAMES = ("summary", "run", "lab", "duet", "gate", "compare", "capacity", "sweep", "scenario", "topology")


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "schema",
        help="print the JSON Schema of summary.json, run.json, lab.json, duet.json, gate.json, bench compare's JSON, capacity.json, sweep.json, a scenario or a topology file",
    )
    s.add_argument("name", choices=NAMES, metavar="NAME", help="one of: " + ", ".join(NAMES))
    s.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from ..results.schema import DOCUMENTS, document_schema, model_schema
    from ..spec import SCHEMA_VERSION, Scenario, Topology

    if args.name in DOCUMENTS:
        schema = document_schema(args.name)
    else:
        model = Scenario if args.name == "scenario" else Topology
        schema = model_schema(model, f"lbbench {args.name} file (schema version {SCHEMA_VERSION})")
    print(json.dumps(schema, indent=2))
    return EXIT_OK
