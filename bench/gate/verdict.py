"""Judging gate rules on a comparison: pass, fail or inconclusive, with the interval and the detectable change.

A relative rule takes the comparison's :class:`~bench.compare.comparison.Row` of
its figure (the same ratio, interval and estimate `bench compare` shows) and
applies its threshold with :func:`bench.stats.decide`:

- **fail** when the whole interval lies beyond the threshold (the change is
  larger than allowed, and that is not noise);
- **pass** when the whole interval lies inside it;
- **inconclusive** otherwise, or when there is no interval at all (one run per
  side). It has its own exit status (:data:`EXIT_INCONCLUSIVE`) and says how many
  more slices or runs would decide it.

An absolute rule (``errors.total: <= 0``) is judged on the worst candidate run
(or, for a duet, on the candidate's total over the slices) with no test.

Requests a run sent and never answered (its ``unfinished`` section,
bench/analysis/unfinished.py) are in none of its figures. A rule is judged
again at the ends of the ranges they give each run's figure (``unfinished.bounds``:
for a pass, every candidate run at its worse end and every baseline run at its
better one; for a fail, the other way round); a verdict that does not hold there
is **inconclusive** (:func:`unfinished_check`), with one line naming the side, the
runs, how many were unfinished and the oldest wait, as a run's SLO thresholds
say ``undecided``. A run recorded before the count (``unfinished`` null) is
judged as before.

The gate fails when any rule fails; else it is inconclusive when any rule is;
else it passes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import stats
from ..compare import Group, Row, Run, compare_figure, figure_for, fmt_value, is_count, lookup, numeric_keys
from ..compare.comparison import compare_values
from ..compare.runs import unfinished_notes
from ..errors import UserError
from ..results.figures import MISSING, number
from .rules import OPS, Rule

SCHEMA_VERSION = 2
EXIT_PASS, EXIT_REGRESSION, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 3, 130


@dataclass
class Outcome:
    """The verdict of one rule."""

    rule: str
    metric: str
    kind: str
    status: str  # "pass", "fail" or "inconclusive"
    message: str
    baseline: float | None = None
    candidate: float | None = None
    ratio: float | None = None
    change_pct: float | None = None
    phrase: str = "n/a"
    test: str = "-"
    n: list[int] = field(default_factory=list)
    unit: str = ""
    p: float | None = None
    alpha: float | None = None
    ci: list[float] | None = None
    detectable_pct: float | None = None
    passable_pct: float | None = None
    more: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(ratio: float | None) -> float | None:
    return None if ratio is None or not math.isfinite(ratio) else round(100.0 * (ratio - 1.0), 2)


def _fmt(x: float | None, metric: str = "") -> str:
    return fmt_value(x, count=is_count(metric))


def _signed(pct: float | None) -> str:
    return "n/a" if pct is None else f"{pct:+.1f}%"


def judge_relative(rule: Rule, row: Row, alpha: float, strict: bool = False) -> Outcome:
    """A relative rule on one figure's comparison row."""
    d = row.to_dict()
    base = Outcome(
        rule.text, rule.metric, rule.kind, stats.INCONCLUSIVE, "", row.baseline, row.candidate,
        row.ratio, _pct(row.ratio), d["phrase"], row.sig.describe(), list(row.sig.n), row.sig.unit,
        None if row.sig.p is None else round(row.sig.p, 6), alpha,
    )  # fmt: skip
    head = f"{rule.metric} {_fmt(row.baseline, rule.metric)} -> {_fmt(row.candidate, rule.metric)}"
    est = row.estimate
    if row.sig.test == "identical":
        base.status, base.ratio, base.change_pct = stats.PASS, 1.0, 0.0
        base.message = f"{head}: the same on both sides; limit {rule.limit_text}"
        return base
    if est is None:
        if row.candidate is None and row.baseline is not None:
            base.status, base.message = stats.FAIL, f"{rule.metric}: the candidate has no value (null in summary.json), baseline {_fmt(row.baseline, rule.metric)}"
            return base
        why = stats.ONE_RUN if row.sig.test == "one run" else f"too few values to tell ({row.sig.n[0]} v {row.sig.n[1]})"
        fix = "repeat runs (>= 3 per side), or measure both at once: bench gate --run" if row.sig.test == "one run" else "measure longer or repeat runs"
        base.status = stats.FAIL if strict else stats.INCONCLUSIVE
        base.message = f"{head} ({_signed(base.change_pct)}); limit {rule.limit_text}: {why}; {fix}"
        return base
    dec = stats.decide(est, rule.threshold, alpha)
    base.ratio, base.change_pct = dec.ratio, _pct(dec.ratio)
    base.ci = [round(dec.ci[0], 6), round(dec.ci[1], 6)]
    base.detectable_pct, base.passable_pct = _pct(dec.detectable), _pct(dec.passable)
    base.more = dec.more
    level = f"{100 * (1 - alpha):.4g} %"
    ci = f"{level} CI {_signed(_pct(dec.ci[0]))} .. {_signed(_pct(dec.ci[1]))}"
    head = f"{head} ({_signed(base.change_pct)}, {ci}, {row.sig.describe()})"
    word = "rise" if rule.threshold > 0 else "drop"
    if dec.status == stats.FAIL:
        base.status, base.message = stats.FAIL, f"{head}: wholly beyond the {rule.limit_text} limit"
    elif dec.status == stats.PASS:
        base.status, base.message = stats.PASS, f"{head}: wholly within the {rule.limit_text} limit"
    else:
        base.status = stats.FAIL if strict else stats.INCONCLUSIVE
        more = (
            f"about {dec.more} more {est.unit}{' per side' if est.design == 'independent' else ''} would decide it"
            if dec.more is not None
            else "the estimate sits on the limit: no number of slices would decide it"
        )
        base.message = (
            f"{head}: the interval straddles the {rule.limit_text} limit; {more} "
            f"(this noise and n catch a {word} of {_signed(base.detectable_pct)} or more)"
        )
    return base


def judge_absolute(rule: Rule, cand_values: Sequence[float], base_value: float | None, what: str) -> Outcome:
    """An absolute rule on the candidate's values (worst run, or total over slices: ``what`` says which)."""
    if not cand_values:
        return Outcome(rule.text, rule.metric, rule.kind, stats.FAIL, f"{rule.metric}: no value in any candidate run")
    worst = max(cand_values) if rule.op in ("<=", "<") else min(cand_values)
    ok = OPS[rule.op](worst, rule.threshold)
    msg = f"{rule.metric} = {_fmt(worst, rule.metric)} ({what}); limit {rule.op} {rule.threshold:g}"
    return Outcome(rule.text, rule.metric, rule.kind, stats.PASS if ok else stats.FAIL, msg, base_value, worst, test="threshold only")


# --------------------------------------------------------------------------- runs (repeats of each side)


def _values(group: Group, metric: str, side: str) -> list[float]:
    """Per-run values; a figure no run has at all is a data error (exit 2)."""
    present = [lookup(r.summary, metric) for r in group.runs]
    if all(v is MISSING for v in present):
        known = sorted({k for r in group.runs for k in numeric_keys(r.summary)})
        near = [k for k in known if k.split(".")[0] == metric.split(".")[0]][:8] or known[:8]
        raise UserError(
            f"figure {metric!r} is not in summary.json of the {side} ({group.runs[0].path})",
            f"use a figure the runs have, e.g. {', '.join(near)}",
        )
    return group.values(metric)


def judge(base: Group, cand: Group, rules: Sequence[Rule], alpha: float = stats.ALPHA, strict: bool = False) -> dict[str, Any]:
    """The verdict of the rules on two groups of runs (what :func:`bench.gate.evaluate` returns)."""
    outcomes = []
    for rule in rules:
        cand_vals = _values(cand, rule.metric, "candidate")
        if rule.kind == "absolute":
            base_vals = base.values(rule.metric)
            which = "worst candidate run" if len(cand_vals) > 1 else "candidate"
            outcome = judge_absolute(rule, cand_vals, float(np.median(base_vals)) if base_vals else None, which)
        else:
            if not _values(base, rule.metric, "baseline"):
                raise UserError(f"figure {rule.metric!r} is null in every baseline run ({base.runs[0].path})", "gate on a figure the baseline measured")
            outcome = judge_relative(rule, compare_figure(base, cand, figure_for(rule.metric), alpha), alpha, strict)
        outcomes.append(unfinished_check(rule, outcome, base, cand, alpha, strict))
    from ..compare import provenance_notes

    return verdict_doc(
        outcomes,
        alpha,
        strict,
        {"design": "runs", "baseline": {"key": base.key, "runs": [str(r.path) for r in base.runs]}, "candidate": {"key": cand.key, "runs": [str(r.path) for r in cand.runs]}},
        provenance_notes(base, cand) + unfinished_notes([base, cand]),
    )


# --------------------------------------------------------------------------- unfinished requests


def worse_up(rule: Rule) -> bool:
    """Whether a higher candidate value is the way this rule fails (a rise, or an upper limit)."""
    return rule.threshold > 0 if rule.kind == "relative" else rule.op in ("<=", "<")


def _range(run: Run, metric: str) -> tuple[float, float, float] | None:
    """(value, low, high) of a run's figure: the range its unfinished requests leave it (high inf: unbounded)."""
    value = run.value(metric)
    if value is None:
        return None
    bound = (run.unfinished.get("bounds") or {}).get(metric)
    if not bound:
        return value, value, value
    low, high = number(bound.get("low")), number(bound.get("high"))
    return value, value if low is None else min(low, value), math.inf if high is None else max(high, value)


def _ends(group: Group, metric: str, up: bool) -> list[float]:
    """Every comparable run's figure at the upper (``up``) or lower end of its range."""
    out = []
    for r in group.runs:
        rng = _range(r, metric) if r.invalid is None else None
        if rng is not None:
            out.append(rng[2] if up else rng[1])
    return out


def _moved(group: Group, metric: str) -> list[tuple[Run, tuple[float, float, float]]]:
    """The comparable runs whose figure the unfinished requests leave a range, not a value."""
    out = []
    for r in group.runs:
        rng = _range(r, metric) if r.invalid is None else None
        if rng is not None and (rng[1] < rng[0] or rng[2] > rng[0]):
            out.append((r, rng))
    return out


def _judged_at(rule: Rule, base: list[float], cand: list[float], alpha: float) -> str:
    """The rule's status on these per-run values (an unbounded value decides it: the limit cannot hold it)."""
    if rule.kind == "absolute":
        return judge_absolute(rule, cand, None, "").status
    if not all(math.isfinite(v) for v in [*base, *cand]):
        # moved to infinity the way being checked: a ratio of 0 or infinity, beyond any limit that way
        return "unbounded"
    return judge_relative(rule, compare_values(base, cand, figure_for(rule.metric), alpha), alpha).status


def unfinished_check(rule: Rule, outcome: Outcome, base: Group, cand: Group, alpha: float, strict: bool = False) -> Outcome:
    """``outcome``, or inconclusive when the runs' unfinished requests could change it (module docstring).

    A pass is judged again with every candidate run at the end of its range that
    is worse for the rule and every baseline run at its better end; a fail the
    other way round. Inconclusive outcomes, and runs without unfinished requests
    (or recorded before the count), are left as they are.
    """
    if outcome.status not in (stats.PASS, stats.FAIL):
        return outcome
    sides = [("candidate", cand)] if rule.kind == "absolute" else [("baseline", base), ("candidate", cand)]
    moved = [(side, r, rng) for side, g in sides for r, rng in _moved(g, rule.metric)]
    if not moved:
        return outcome
    up = worse_up(rule)
    toward_fail = outcome.status == stats.PASS
    # toward a fail: the candidate at its worse end, the baseline at its better end
    cand_up = up if toward_fail else not up
    status = _judged_at(rule, _ends(base, rule.metric, not cand_up), _ends(cand, rule.metric, cand_up), alpha)
    if status == outcome.status:
        return outcome
    runs = "; ".join(
        f"the {side}'s {r.id} ({r.path}): {r.unfinished_text()}, {rule.metric} could be {_fmt(lo, rule.metric)} to "
        f"{'unbounded' if math.isinf(hi) else _fmt(hi, rule.metric)}"
        for side, r, (_, lo, hi) in moved
    )
    could = "fail" if toward_fail else "pass"
    out = Outcome(**outcome.to_dict())
    out.status = stats.FAIL if strict else stats.INCONCLUSIVE
    out.message = (
        f"{outcome.message}; {outcome.status.upper()} on the finished requests only: {runs}; had they finished "
        f"the rule could {could}: undecided"
    )
    return out


def verdict_doc(outcomes: Sequence[Outcome], alpha: float, strict: bool, sides: dict[str, Any], notes: Sequence[str] = ()) -> dict[str, Any]:
    """The gate document: overall verdict, every rule's outcome, notes."""
    failed = [o for o in outcomes if o.status == stats.FAIL]
    inconclusive = [o for o in outcomes if o.status == stats.INCONCLUSIVE]
    verdict = stats.FAIL if failed else stats.INCONCLUSIVE if inconclusive else stats.PASS
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": verdict,
        "alpha": alpha,
        "strict": strict,
        **sides,
        "rules": [o.to_dict() for o in outcomes],
        "failed": len(failed),
        "inconclusive": len(inconclusive),
        "notes": list(notes),
    }


def exit_status(verdict: dict[str, Any]) -> int:
    """0 pass, 1 regression, 3 inconclusive."""
    return {stats.FAIL: EXIT_REGRESSION, stats.INCONCLUSIVE: EXIT_INCONCLUSIVE}.get(verdict["verdict"], EXIT_PASS)


# --------------------------------------------------------------------------- output


def junit_xml(verdict: dict[str, Any]) -> str:
    """JUnit XML: one testcase per rule, ``<failure>`` on a regression, ``<skipped>`` when inconclusive."""
    rules = verdict["rules"]
    suite = ET.Element(
        "testsuite",
        name="bench gate",
        tests=str(len(rules)),
        failures=str(verdict["failed"]),
        errors="0",
        skipped=str(verdict["inconclusive"]),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    props = ET.SubElement(suite, "properties")
    for side in ("baseline", "candidate"):
        if side in verdict:
            ET.SubElement(props, "property", name=side, value=" ".join(verdict[side].get("runs") or [verdict[side].get("run_dir", "")]))
    ET.SubElement(props, "property", name="alpha", value=str(verdict["alpha"]))
    for o in rules:
        case = ET.SubElement(suite, "testcase", classname="bench.gate", name=o["rule"], time="0")
        if o["status"] == stats.FAIL:
            failure = ET.SubElement(case, "failure", message=o["message"], type="regression")
            failure.text = json.dumps({k: o[k] for k in ("baseline", "candidate", "change_pct", "ci", "test", "detectable_pct")})
        elif o["status"] == stats.INCONCLUSIVE:
            ET.SubElement(case, "skipped", message=o["message"])
        ET.SubElement(case, "system-out").text = o["message"]
    root = ET.Element("testsuites", name="bench gate", tests=suite.get("tests", "0"), failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _interval(o: dict[str, Any]) -> str:
    if not o.get("ci"):
        return "-"
    lo, hi = (100.0 * (x - 1.0) for x in o["ci"])
    return f"{lo:+.1f}% .. {hi:+.1f}%"


def _n(o: dict[str, Any]) -> str:
    """``48 slices``, ``5v5 runs`` or ``-``."""
    n = o.get("n") or []
    if not n or not o.get("unit"):
        return "-"
    return f"{n[0]} {o['unit']}" if o["unit"] == "slices" else f"{n[0]}v{n[1]} {o['unit']}"


def _detectable(o: dict[str, Any]) -> str:
    d = o.get("detectable_pct")
    return "-" if d is None else f"{d:+.1f}%"


def print_verdict(verdict: dict[str, Any], console: Any = None) -> None:
    """The verdict as a rich table plus one line: ``gate: PASS``, ``gate: FAIL (n of m rules)`` or ``gate: INCONCLUSIVE``."""
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # CI logs are no terminal: give the table room instead of wrapping every cell at 80 columns
    console = console or (Console() if sys.stdout.isatty() else Console(width=140))
    title = f"bench gate: {verdict['candidate']['key']} (candidate) vs {verdict['baseline']['key']} (baseline)"
    t = Table(title=Text(title), title_justify="left")
    for col in ("rule", "baseline", "candidate", "change", "interval", "detectable", "n", "verdict"):
        t.add_column(col, justify="right" if col in ("baseline", "candidate", "change", "interval", "detectable") else "left", no_wrap=col != "rule")
    styles = {stats.FAIL: "bold red", stats.PASS: "green", stats.INCONCLUSIVE: "yellow"}
    for o in verdict["rules"]:
        cells = (
            o["rule"], _fmt(o["baseline"], o["metric"]), _fmt(o["candidate"], o["metric"]), _signed(o["change_pct"]),
            _interval(o), _detectable(o), _n(o), o["status"].upper(),
        )  # fmt: skip
        t.add_row(*(Text(c) for c in cells), style=styles.get(o["status"], ""))
    console.print(t)
    for o in verdict["rules"]:
        if o["status"] != stats.PASS:
            console.print(f"{o['status'].upper()}: {o['message']}", style=styles[o["status"]], highlight=False, soft_wrap=True, markup=False)
    for note in verdict.get("notes") or []:
        console.print(f"note: {note}", style="dim", highlight=False, soft_wrap=True, markup=False)
    n = len(verdict["rules"])
    if verdict["verdict"] == stats.FAIL:
        console.print(f"gate: FAIL ({verdict['failed']} of {n} rules regressed)", style="bold red", highlight=False, markup=False)
    elif verdict["verdict"] == stats.INCONCLUSIVE:
        console.print(f"gate: INCONCLUSIVE ({verdict['inconclusive']} of {n} rules undecided; exit {EXIT_INCONCLUSIVE})", style="bold yellow", highlight=False, markup=False)
    else:
        console.print(f"gate: PASS ({n} rules)", style="bold green", highlight=False, markup=False)
