"""`bench run SCENARIO --matrix A,B,C [--repeat N]`: one scenario over several variants.

Runs go in sequence into one parent folder, each a complete run directory of
its own (``<parent>/<variant>`` or ``<parent>/<variant>-r<i>``). With
``--repeat N`` the variants are interleaved (A B C A B C ...) so that a drift of
the machine hits all of them alike. ``matrix.json`` in the parent lists the
runs and their status; Ctrl-C stops after tearing down the current run and
keeps every run so far.

A matrix file (``--matrix variants.yaml``) declares variants inline::

    variants:
      m1:
        description: one localhost address between frontend and backends
        overrides: {lb: {local_addresses: 1}}
      m4:
        overrides: {lb: {local_addresses: 4}}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import engine, paths
from .errors import UserError
from .inputs import check_output_dir
from .load.fit import prepare_load
from .results.layout import RunDir, is_run_dir, matrix_json
from .spec import Variant, format_validation_error, load_scenario, read_yaml, resolve_variant_paths, scenario_topology, variant_names

MATRIX_SCHEMA_VERSION = 1
MAX_RUNS = 60


def parse_matrix(matrix: str) -> tuple[list[str], dict[str, Variant]]:
    """``A,B,C`` or a YAML file -> variant names and inline variants."""
    if matrix.endswith((".yaml", ".yml")):
        path = Path(matrix)
        raw = read_yaml(path)
        declared = raw.get("variants")
        if not isinstance(declared, dict) or not declared:
            raise UserError(f"{path}: expected a 'variants' mapping of name -> {{description, overrides}}", "see README (Variants)")
        extra: dict[str, Variant] = {}
        for name, body in resolve_variant_paths(declared, path.parent).items():
            try:
                extra[str(name)] = Variant.model_validate(body or {})
            except ValidationError as err:
                raise format_validation_error(f"{path}: variants.{name}", err, Variant) from None
        return list(extra), extra
    names = [n.strip() for n in matrix.split(",") if n.strip()]
    if not names:
        raise UserError("--matrix: no variant named", "for example --matrix base,monolith")
    if len(set(names)) != len(names):
        raise UserError(f"--matrix: a variant is named twice ({matrix})", "name each variant once")
    return names, {}


def run_matrix(
    scenario_name: str,
    matrix: str | None,
    repeat: int = 1,
    duration: str | None = None,
    out: Path | None = None,
    sets: list[str] | None = None,
    log: Callable[[str], None] = print,
    scale: float | None = None,
    workers: int = 0,
    live: Any = None,
) -> Path:
    """Run the scenario once per variant (times ``repeat``, interleaved); return the parent folder.

    ``scale`` and ``workers`` go to every run (see :func:`bench.run.run_scenario`).
    """
    from .run import run_scenario

    scenario, _ = load_scenario(scenario_name, duration)
    if matrix:
        names, extra = parse_matrix(matrix)
    else:
        names, extra = [scenario.variant or "base"], {}
    if repeat < 1:
        raise UserError(f"--repeat {repeat}: must be at least 1", "use --repeat 1 or more")
    # With faults, --repeat repeats the fault cycle inside each run instead.
    cycles = repeat if scenario.faults else 1
    rounds = 1 if scenario.faults else repeat
    known = set(variant_names(scenario)) | set(extra) | {"base"}
    for name in names:
        if name not in known:
            raise UserError(f"--matrix: no variant named {name!r} for scenario {scenario.name}", f"use one of: {', '.join(sorted(known))}")
        # Validate every variant (and that its load fits this machine) before the first run starts, so a typo costs nothing.
        variant_scenario = scenario.model_copy(update={"variants": {**scenario.variants, **extra}})
        topology, _ = scenario_topology(variant_scenario, None if name == "base" else name, sets)
        prepare_load(variant_scenario.with_repeats(cycles), topology, scale=scale, workers=workers, log=lambda _m: None)
    total = len(names) * rounds
    if total > MAX_RUNS:
        raise UserError(f"{total} runs requested (max {MAX_RUNS})", "fewer variants or a smaller --repeat")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = check_output_dir(Path(out) if out else paths.REPORTS / f"{scenario.name}-matrix-{stamp}")
    engine.client()  # no engine: one line before the matrix folder exists
    engine.compose_binary()
    created = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "schema_version": MATRIX_SCHEMA_VERSION,
        "scenario": scenario.name,
        "variants": names,
        "inline_variants": {k: v.model_dump(mode="json") for k, v in extra.items()},
        "repeat": repeat,
        "fault_cycles": cycles,
        "sets": sets or [],
        "runs": [],
    }
    _write(parent, record)
    for i in range(rounds):
        for name in names:
            label = name if rounds == 1 else f"{name}-r{i + 1}"
            log(f"matrix: run {len(record['runs']) + 1}/{total}: {label}")
            entry: dict[str, Any] = {"variant": name, "round": i + 1, "dir": label, "status": "running"}
            record["runs"].append(entry)
            _write(parent, record)
            try:
                run_dir = run_scenario(
                    scenario_name,
                    duration=duration,
                    out=parent / label,
                    variant=None if name == "base" else name,
                    sets=sets,
                    log=log,
                    repeat=cycles,
                    extra_variants=extra,
                    scale=scale,
                    workers=workers,
                    live=live,
                )
            except BaseException:
                entry["status"] = "failed" if is_run_dir(parent / label) else "not started"
                if len(record["runs"]) == 1 and entry["status"] == "not started":
                    _discard(parent, created)  # the first run's checks refused it: nothing was gathered
                else:
                    _write(parent, record)
                raise
            status = json.loads(RunDir(run_dir).run_json.read_text()).get("status")
            entry["status"] = status
            _write(parent, record)
            if status == "interrupted":
                log("matrix: interrupted; keeping the runs so far")
                return parent
    return parent


def _discard(parent: Path, created: bool) -> None:
    """Remove the matrix record, and the folder when this run created it and nothing else is in it."""
    path = matrix_json(parent)
    for p in (path, path.with_suffix(".json.tmp")):
        p.unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):  # something else is in it: keep it
            parent.rmdir()


def _write(parent: Path, record: dict[str, Any]) -> None:
    path = matrix_json(parent)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def run_command(
    scenario_name: str,
    matrix: str | None = None,
    repeat: int = 1,
    duration: str | None = None,
    out: Path | None = None,
    variant: str | None = None,
    sets: list[str] | None = None,
    log: Callable[[str], None] = print,
    scale: float | None = None,
    workers: int = 0,
    live: Any = None,
) -> tuple[Path, bool]:
    """What `bench run` does: one run, or a matrix / repeats into a parent folder.

    Returns the folder written and whether it is a parent of several runs.
    """
    from .run import run_scenario

    if matrix and variant:
        raise UserError("--matrix and --variant both given", "name the variants in --matrix only")
    scenario, _ = load_scenario(scenario_name, duration)
    if repeat < 1:
        raise UserError(f"--repeat {repeat}: must be at least 1", "use --repeat 1 or more")
    if matrix or (repeat > 1 and not scenario.faults):
        if variant:
            matrix = variant
        return run_matrix(scenario_name, matrix, repeat, duration, out, sets, log, scale=scale, workers=workers, live=live), True
    return run_scenario(scenario_name, duration=duration, out=out, variant=variant, sets=sets, log=log, repeat=repeat, scale=scale, workers=workers, live=live), False
