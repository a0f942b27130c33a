"""`bench gate`: fail a CI job when a candidate regressed beyond its threshold, and say when it cannot tell.

Three ways to get the evidence, one way to judge it (:mod:`bench.gate.verdict`):

- ``--run SCENARIO`` (the default way): a **duet** (:mod:`bench.duet`): baseline
  and candidate labs up at once, one schedule at one fixed load, paired slices,
  judged as they come and stopped as soon as every rule is decided
  (:mod:`bench.gate.sequential`);
- ``--run SCENARIO --interleaved --repeat N``: whole runs of each side in random
  order per round (:mod:`bench.gate.interleaved`), for what cannot run at once;
- ``--baseline RUN... --candidate RUN...``: finished runs (repeats of each side);
- ``--duet DIR``: judge a finished duet folder again (other rules, or to reproduce).

Rules are ``METRIC: LIMIT`` (:mod:`bench.gate.rules`). Exit status: 0 pass,
1 regression, 2 usage or data error, 3 inconclusive.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import stats
from ..compare import Group, load_groups
from ..duet import SideSpec
from ..errors import UserError
from ..inputs import check_output_dir, check_output_file
from ..results.gate import gate_dict
from .interleaved import MAX_REPEAT, run_interleaved
from .rules import DEFAULT_RULES, DUET_RULES, Rule, load_rules_file, parse_rule
from .verdict import EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_PASS, EXIT_REGRESSION, Outcome, exit_status, judge, junit_xml, print_verdict

__all__ = [
    "DEFAULT_RULES", "DUET_RULES", "EXIT_INCONCLUSIVE", "EXIT_PASS", "EXIT_REGRESSION", "MAX_REPEAT", "Outcome", "Rule",
    "evaluate", "exit_status", "gate", "judge", "junit_xml", "load_rules_file", "parse_rule", "print_verdict", "run_interleaved",
]  # fmt: skip


def _two_groups(baseline: Sequence[str], candidate: Sequence[str]) -> list[Group]:
    if not baseline or not candidate:
        raise UserError("bench gate needs --baseline RUN... and --candidate RUN... (or --run SCENARIO, or --duet DIR)", "see `bench gate --help`")
    base = load_groups(baseline, labels=["baseline"] * len(baseline))
    cand = load_groups(candidate, labels=["candidate"] * len(candidate))
    merged = []
    for label, parts in (("baseline", base), ("candidate", cand)):
        runs = [r for g in parts for r in g.runs]
        key = " + ".join(sorted({k for g in parts for k in g.key.split(" + ")}))
        merged.append(Group(key, label, ", ".join(g.source for g in parts), runs))
    return merged


def evaluate(baseline: Sequence[str], candidate: Sequence[str], rules: Sequence[Rule], alpha: float = stats.ALPHA, strict: bool = False) -> dict[str, Any]:
    """The verdict of the rules on finished runs (``verdict`` is ``pass``, ``fail`` or ``inconclusive``)."""
    groups = _two_groups(baseline, candidate)
    for g, side in zip(groups, ("baseline", "candidate"), strict=True):
        invalid = [r for r in g.runs if r.invalid is not None]
        if invalid:
            raise UserError(
                f"{side} run {invalid[0].path} is not comparable: its lab changed during the run ({invalid[0].invalid})",
                "rerun it, or leave it out of --baseline/--candidate",
            )
        bad = [r for r in g.runs if r.status != "completed"]
        if bad:
            raise UserError(
                f"{side} run {bad[0].path} has status {bad[0].status!r}; a gate needs completed runs",
                "rerun it, or leave it out of --baseline/--candidate",
            )
    return judge(groups[0], groups[1], rules, alpha, strict)


def gate(
    baseline: Sequence[str] = (),
    candidate: Sequence[str] = (),
    rule_texts: Sequence[str] = (),
    rules_file: str | None = None,
    alpha: float | None = None,
    strict: bool = False,
    junit: str | None = None,
    json_out: str | None = None,
    run: str | None = None,
    repeat: int | None = None,
    interleaved: bool = False,
    baseline_spec: dict[str, Any] | None = None,
    candidate_spec: dict[str, Any] | None = None,
    duration: str | None = None,
    out: str | None = None,
    duet: Sequence[str] | str | None = None,
    rate: float | None = None,
    slice_s: float | None = None,
    warmup_s: float | None = None,
    budget_s: float | None = None,
    fixed: bool = False,
    side: str | None = None,
    start_at: float | None = None,
    log: Callable[[str], None] = print,
    console: Any = None,
) -> int:
    """`bench gate`: get the evidence (see the module docstring), judge the rules, print; returns the exit status.

    Usage and data errors raise :class:`~bench.errors.UserError` (exit 2).
    """
    rules = [parse_rule(t) for t in rule_texts]
    file_alpha = None
    if rules_file:
        from_file, file_alpha = load_rules_file(rules_file)
        rules += from_file
    given = alpha if alpha is not None else file_alpha
    alpha = given if given is not None else stats.ALPHA
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must be between 0 and 1", "use for example --alpha 0.05")
    modes = [m for m, on in (("--run", bool(run)), ("--baseline/--candidate", bool(baseline or candidate)), ("--duet", bool(duet))) if on]
    if len(modes) > 1:
        raise UserError(f"use one of --run SCENARIO, --baseline/--candidate or --duet DIR, not {' and '.join(modes)}", "see `bench gate --help`")
    duet_flags = [f for f, v in (("--rate", rate), ("--slice", slice_s), ("--warmup", warmup_s), ("--budget", budget_s), ("--side", side), ("--start-at", start_at)) if v is not None]
    if duet_flags and (not run or interleaved):
        raise UserError(f"{duet_flags[0]} applies to a duet only (bench gate --run SCENARIO)", f"drop {duet_flags[0]}, or use --run without --interleaved")
    if repeat is not None and not interleaved:
        raise UserError("--repeat applies to --interleaved runs only", "add --interleaved, or drop --repeat (a duet takes --budget)")
    if duration is not None and not interleaved:
        raise UserError("--duration applies to --interleaved runs only", "a duet takes --budget (how long to measure at most)")
    # where the verdict goes is checked before anything is measured
    for flag, path in (("--json", json_out), ("--junit", junit)):
        if path is not None:
            check_output_file(Path(path), flag)
    if duet:
        # without --alpha, the alpha of the look the duet stopped at: the verdict it gave
        verdict = _duet_verdict(duet, rules or None, given, strict)
    elif run and not interleaved:
        b, c = (SideSpec(s.get("scenario"), s.get("variant"), list(s.get("sets") or [])) for s in (baseline_spec or {}, candidate_spec or {}))
        from .sequential import gate_duet

        result = gate_duet(run, b, c, rules or None, alpha, strict, out, rate, slice_s, warmup_s, budget_s, not fixed, log, side=side, start_at=start_at)
        if result is None:  # one half of a two-machine duet: judged when joined
            return EXIT_PASS
        verdict = result
        log(f"gate: duet in {verdict['duet']['folder']} ({verdict['duet']['slices']} slices, {verdict['duet']['seconds']:g} s)")
    else:
        rules = rules or [parse_rule(t) for t in DEFAULT_RULES]
        if run:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            from .. import paths

            target = check_output_dir(Path(out) if out else paths.REPORTS / f"gate-{Path(run).stem}-{stamp}")
            run_interleaved(run, repeat or 3, target, baseline_spec or {}, candidate_spec or {}, duration, log)
            baseline, candidate = [str(target / "baseline")], [str(target / "candidate")]
            log(f"gate: runs in {target}")
        verdict = evaluate(baseline, candidate, rules, alpha, strict)
    print_verdict(verdict, console)
    if json_out:
        Path(json_out).write_text(json.dumps(gate_dict(verdict), indent=2, allow_nan=False) + "\n")
    if junit:
        Path(junit).write_text(junit_xml(verdict))
    if (verdict.get("duet") or {}).get("status") == "interrupted" and not duet:
        log("gate: interrupted: the verdict covers the slices measured before Ctrl-C")
        return EXIT_INTERRUPTED
    return exit_status(verdict)


def _duet_verdict(folders: Sequence[str] | str, rules: list[Rule] | None, alpha: float | None, strict: bool) -> dict[str, Any]:
    from .sequential import judge_duet_folder

    paths = [Path(folders)] if isinstance(folders, str) else [Path(f) for f in folders]
    if len(paths) > 2:
        raise UserError(f"--duet given {len(paths)} times", "give one duet folder, or the two halves of a two-machine duet")
    return judge_duet_folder(paths, rules, alpha, strict)
