"""`bench gate --run`: a duet judged as it runs, stopping as soon as every rule is decided.

The duet (:mod:`bench.duet`) yields paired slices; at planned looks (the first
after :data:`FIRST_LOOK_S` of slices, then every :data:`LOOK_EVERY_S`, the last when
the budget is spent) the rules are judged on the slices so far. The gate stops
at the first look where a rule fails or every rule passes. Because it looks more
than once, each look tests at its share of ``alpha`` (:func:`bench.stats.look_alphas`):
the chance of a wrong verdict over all the looks stays within ``alpha``, and the
verdict's interval is printed with the confidence of the look that decided.

The same judgement runs again on the finished duet folder
(:func:`judge_duet_folder`, `bench gate --duet DIR`), so a verdict can be
reproduced and re-judged with other rules from the files alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import stats
from ..analysis.unfinished import cut_by_stop
from ..compare import Group, Run, compare_paired, figure_for, provenance_notes
from ..duet import Design, SideSpec, join_halves, plan_duet, planned_looks, read_duet, run_duet, slices_between
from ..errors import UserError
from ..results.gate import gate_dict
from ..results.layout import RunDir
from ..results.store import read_table
from ..slices import FIGURES, over_slices, paired_figures, side_slices
from .rules import DUET_RULES, Rule, parse_rule
from .verdict import Outcome, judge_absolute, judge_relative, verdict_doc, worse_up

#: Slice time before the first look, and between looks.
FIRST_LOOK_S = 60.0
LOOK_EVERY_S = 30.0
GATE_FILE = "gate.json"
#: Share of a side's scheduled sends that went out late or not at all above which the slices are flagged.
LATE_WARN = 0.01


def slice_frames(out: Path, doc: dict[str, Any], n: int) -> tuple[Any, Any]:
    """Both sides' per-slice figures for the first ``n`` slices of a duet folder."""
    edges = slices_between(doc["design"], n)
    return tuple(side_slices(Path(out) / doc["sides"][side], edges) for side in ("baseline", "candidate"))


def judge_slices(
    base: Any,
    cand: Any,
    rules: Sequence[Rule],
    alpha: float,
    strict: bool = False,
    defaults: bool = False,
) -> tuple[list[Outcome], list[str]]:
    """Every rule on the paired slices; with ``defaults`` a rule whose figure was not measured is left out (noted)."""
    figs = paired_figures(base, cand)
    outcomes: list[Outcome] = []
    notes: list[str] = []
    for rule in rules:
        if rule.metric not in figs:
            raise UserError(
                f"figure {rule.metric!r} is not measured per slice in a duet",
                f"use one of: {', '.join(k for k, *_ in FIGURES)}",
            )
        b, c = figs[rule.metric]
        if defaults and not (np.isfinite(b).any() and np.isfinite(c).any()):
            notes.append(f"rule {rule.text} left out: no slice measured {rule.metric} (nothing of that kind in this load)")
            continue
        if rule.kind == "absolute":
            value = over_slices(rule.metric, cand)
            what = f"candidate, {'total' if rule.metric.startswith('errors.') or rule.metric.endswith('.total') else 'median'} over {len(c)} slices"
            outcomes.append(judge_absolute(rule, [] if value is None else [value], over_slices(rule.metric, base), what))
        else:
            row = compare_paired(b, c, figure_for(rule.metric), alpha)
            outcomes.append(judge_relative(rule, row, alpha, strict))
            notes += spread_note(rule, row.estimate, outcomes[-1].status, alpha)
    for side, frame in (("baseline", base), ("candidate", cand)):
        due = float(frame["load.due"].sum()) if "load.due" in frame else 0.0
        behind = float(frame["load.late"].sum() + frame["load.dropped"].sum()) if due else 0.0
        if due and behind / due > LATE_WARN:
            notes.append(
                f"the {side}'s load generator sent {100 * behind / due:.1f}% of its scheduled requests late or not at all: "
                "the machine could not hold the offered load; lower --rate"
            )
    return outcomes, notes


#: How much two labs of one config differ for a whole duet beyond the noise between its slices (sd of the
#: log-ratio), measured by A/A duets on a 2-core VM (20 gates of `bench gate --run open --rate 400`:
#: `scripts/gate_campaign.py --report`; docs/compare-gate.md). No interval of one duet can see it.
#: p99: none measurable beyond its slices' own noise (4.1 % rms standard error per gate).
LAB_SPREAD = {"cost.lb_us_per_request": 0.010, "latency_ms.p50": 0.030}


def spread_note(rule: Rule, est: stats.Estimate | None, status: str, alpha: float) -> list[str]:
    """A rule decided on these two labs that the spread between lab instances (:data:`LAB_SPREAD`) could undo.

    The rule is judged again with that spread added to its standard error in
    quadrature; where the verdict does not hold, a note says so, with the interval.

    >>> rule = parse_rule("cost.lb_us_per_request: +2%")
    >>> spread_note(rule, stats.Estimate("paired", "log", (30, 30), 0.035, 0.004, 29, 0.02), stats.FAIL, 0.05)[0][:64]
    'cost.lb_us_per_request: FAIL on these two labs, but INCONCLUSIVE'
    >>> spread_note(rule, stats.Estimate("paired", "log", (30, 30), 0.080, 0.004, 29, 0.02), stats.FAIL, 0.05)
    []
    """
    spread = LAB_SPREAD.get(rule.metric)
    if est is None or spread is None or status not in (stats.PASS, stats.FAIL) or rule.kind != "relative":
        return []
    dec = stats.decide(dataclasses.replace(est, se=math.hypot(est.se, spread)), rule.threshold, alpha)
    if dec.status == status:
        return []
    lo, hi = (f"{100 * (r - 1):+.1f}%" for r in dec.ci)
    note = (
        f"{rule.metric}: {status.upper()} on these two labs, but {dec.status.upper()} once the spread between two labs of one config "
        f"is counted ({100 * spread:.1f}% sd, A/A duets on a 2-core VM; interval {lo} .. {hi}): repeat the gate (fresh labs) before relying on it"
    )
    return [note]


class Sequential:
    """The looks of one sequential gate: each judges the slices so far at its share of ``alpha``.

    ``look(n, base, cand)`` returns True when the gate is decided (a rule failed,
    or every rule passed); the last planned look always decides (what is still
    open stays inconclusive). Pure: the unit tests drive it with synthetic slices.
    """

    def __init__(self, rules: Sequence[Rule], looks: Sequence[int], planned: int, alpha: float = stats.ALPHA, defaults: bool = False):
        self.rules = list(rules)
        self.looks = list(looks)
        self.alphas = stats.look_alphas(self.looks, planned, alpha)
        self.defaults = defaults
        self.history: list[dict[str, Any]] = []
        self.outcomes: list[Outcome] = []

    def look(self, n: int, base: Any, cand: Any) -> bool:
        k = self.looks.index(n)
        a = self.alphas[k]
        self.outcomes, _ = judge_slices(base, cand, self.rules, a, False, self.defaults)
        verdict = verdict_doc(self.outcomes, a, False, {})["verdict"]
        self.history.append({"n": n, "alpha": a, "verdict": verdict})
        return verdict in (stats.FAIL, stats.PASS) or k == len(self.looks) - 1


def _groups(out: Path, doc: dict[str, Any]) -> list[Group]:
    groups = []
    for side in ("baseline", "candidate"):
        path = Path(out) / doc["sides"][side]
        run = json.loads(RunDir(path).run_json.read_text())
        from ..compare.runs import group_key

        groups.append(Group(group_key(run), side, str(path), [Run(path, run, {})]))
    return groups


def _sides(out: Path, doc: dict[str, Any], looks: list[dict[str, Any]]) -> dict[str, Any]:
    groups = _groups(out, doc)
    return {
        "design": "duet",
        "duet": {**doc["design"], "folder": str(out), "slices": doc.get("slices"), "status": doc.get("status"), "looks": looks, "start_order": doc.get("start_order")},
        "baseline": {"key": groups[0].key, "runs": [groups[0].source]},
        "candidate": {"key": groups[1].key, "runs": [groups[1].source]},
    }


def judge_duet_folder(
    out: Path | Sequence[Path], rules: Sequence[Rule] | None = None, alpha: float | None = None, strict: bool = False
) -> dict[str, Any]:
    """The verdict of a finished duet folder, from its files (`bench gate --duet DIR`).

    Two folders are the two halves of a duet run on two machines (``--side``),
    joined first (:func:`bench.duet.join_halves`). Without ``alpha`` the alpha of
    the look the duet stopped at is used, so the verdict is the one the duet gave.
    """
    if isinstance(out, Path | str):
        out = Path(out)
        doc = read_duet(out)
    elif len(out) == 1:
        out = Path(out[0])
        doc = read_duet(out)
    else:
        doc, _ = join_halves([Path(f) for f in out])
        out = Path(out[0])
    n = int(doc.get("slices") or 0)
    groups = _groups(out, doc)
    invalid = [f"the {g.label}'s lab changed during the duet ({r.invalid})" for g in groups for r in g.runs if r.invalid is not None]
    if invalid and n < stats.MIN_PAIRS:
        raise UserError(
            f"{out}: not comparable: {'; '.join(invalid)} (after {n} slices)",
            "see the runs' events.jsonl for what changed the lab (a container killed, OOM, restarted; the VIP moved), then rerun the gate",
        )
    if n < stats.MIN_PAIRS:
        raise UserError(f"{out}: the duet measured only {n} slices", "rerun it with a larger --budget")
    looks = list(doc.get("looks") or [])
    if alpha is None:
        alpha = float(looks[-1]["alpha"]) if looks else stats.ALPHA
    defaults = rules is None
    rule_list = list(rules) if rules is not None else [parse_rule(t) for t in DUET_RULES]
    base, cand = slice_frames(out, doc, n)
    outcomes, notes = judge_slices(base, cand, rule_list, alpha, strict, defaults)
    hung = {side: slices_unfinished(Path(out) / doc["sides"][side], slices_between(doc["design"], n)) for side in ("baseline", "candidate")}
    outcomes = [unfinished_in_slices(rule_for(rule_list, o), o, hung, cand, strict) for o in outcomes]
    notes += [
        f"the {side}'s run ({h['run']}) left {h['count']:,} request{'s' if h['count'] != 1 else ''} sent before the last judged slice ended unanswered "
        f"(oldest waiting {h['oldest_s']:.1f} s): in no slice's latency, error or request count"
        for side, h in hung.items()
        if h["count"]
    ]
    if invalid:
        # a lab that changed under the duet measured something else: no rule is decided by it
        for o in outcomes:
            o.status, o.message = stats.INCONCLUSIVE, f"{o.metric}: not comparable ({o.message})"
        notes.insert(0, f"NOT COMPARABLE: {'; '.join(invalid)}; every rule is inconclusive (rerun the gate)")
    notes += provenance_notes(*groups)
    notes += LAB_INSTANCE_NOTE
    notes += saturation_note(doc)
    if doc["design"].get("sharing"):
        notes.append(f"cores: {doc['design']['sharing']}")
    return verdict_doc(outcomes, alpha, strict, _sides(out, doc, looks), notes)


#: Slice figures computed from the requests table (:func:`bench.slices._latency`): requests never answered are in none of them.
REQUEST_FIGURES = ("latency_ms.", "errors.", "requests.")


def slices_unfinished(run_dir: Path, edges: Sequence[float]) -> dict[str, Any]:
    """A side's requests sent before its last judged slice ended and never answered: ``count``, ``oldest_s``, ``min_wait_ms``.

    By the intended send time where the rate model has one (as the slices place
    requests), else the send time; one sent before the first slice and still
    waiting during them counts too (the slices' figures leave it out all the same).
    """
    unf = read_table(Path(run_dir), "unfinished", ("t", "dropped_t", "intended_t", "after_stop"))
    unf = unf[~cut_by_stop(unf)]  # cut by the stop: no request of the load
    if unf.empty:
        return {"count": 0}
    t = unf["intended_t"].fillna(unf["t"]).to_numpy(dtype=float)
    waited = unf["dropped_t"].to_numpy(dtype=float) - t
    inside = t < float(edges[-1])
    if not inside.any():
        return {"count": 0}
    return {"count": int(inside.sum()), "oldest_s": float(waited[inside].max()), "min_wait_ms": 1000.0 * float(waited[inside].min()), "run": str(run_dir)}


def rule_for(rules: Sequence[Rule], outcome: Outcome) -> Rule:
    return next(r for r in rules if r.text == outcome.rule)


def unfinished_in_slices(rule: Rule, outcome: Outcome, hung: dict[str, dict[str, Any]], cand: Any, strict: bool = False) -> Outcome:
    """``outcome``, or inconclusive when a side's unfinished requests could change it (the slices leave them out).

    Only rules on figures the slices take from the requests table can change. A
    fail stays a fail where the candidate alone left requests unfinished and
    finishing them could only make it worse: more errors (``errors.total``), or a
    latency rule whose every unfinished wait is at least the largest value of any
    candidate slice. Anything else the unfinished requests touch is inconclusive.
    """
    sides = [side for side in ("baseline", "candidate") if hung[side]["count"]]
    if not sides or outcome.status not in (stats.PASS, stats.FAIL) or not rule.metric.startswith(REQUEST_FIGURES):
        return outcome
    if outcome.status == stats.FAIL and sides == ["candidate"] and worse_up(rule):
        if rule.metric == "errors.total":
            return outcome
        if rule.metric.startswith("latency_ms.") and rule.metric in cand:
            values = cand[rule.metric].to_numpy(dtype=float)
            top = float(np.nanmax(values)) if np.isfinite(values).any() else math.inf
            if hung["candidate"]["min_wait_ms"] >= top:
                return outcome
    named = "; ".join(
        f"the {side}'s run ({hung[side]['run']}): {hung[side]['count']:,} request{'s' if hung[side]['count'] != 1 else ''} sent before the last judged slice ended "
        f"and never answered, oldest waiting {hung[side]['oldest_s']:.1f} s"
        for side in sides
    )
    out = Outcome(**outcome.to_dict())
    out.status = stats.FAIL if strict else stats.INCONCLUSIVE
    out.message = f"{outcome.message}; {outcome.status.upper()} on the answered requests only: {named}; the slices' {rule.metric} leaves them out: undecided"
    return out


#: What a duet's intervals cannot cover, said with every duet verdict (measured: docs/compare-gate.md "Measured here").
LAB_INSTANCE_NOTE = [
    (
        "the intervals cover the noise between slices of these two labs, not how two labs of one config differ for a whole duet "
        "(20 A/A duets on a 2-core VM: sd 1.0 % in cost per request, 3.0 % in p50; docs/compare-gate.md); "
        "a verdict that difference could undo is named in a note of its own: repeat the gate (fresh labs) to tell"
    )
]


def saturation_note(doc: dict[str, Any]) -> list[str]:
    """Throughput at saturation from the probe (``--rate auto``), a secondary figure: one measurement, no interval."""
    probe = doc.get("probe") or {}
    held = probe.get("max_held_by_side") or {}
    if not held:
        return []
    b, c = held.get("baseline"), held.get("candidate")
    shown = ", ".join(f"{side} {'none' if v is None else f'{v:.0f}'}" for side, v in (("baseline", b), ("candidate", c)))
    return [
        (
            f"throughput at saturation (the probe, both labs at once, one measurement each, steps 1.5x apart): highest step held: {shown}; "
            f"the duet ran at {probe.get('rate')} ({100 * float(probe.get('fraction') or 0):.0f}% of {probe.get('max_held'):.0f})"
        )
    ]


def gate_duet(
    scenario: str,
    baseline: SideSpec,
    candidate: SideSpec,
    rules: Sequence[Rule] | None = None,
    alpha: float = stats.ALPHA,
    strict: bool = False,
    out: str | None = None,
    rate: float | None = None,
    slice_s: float | None = None,
    warmup_s: float | None = None,
    budget_s: float | None = None,
    sequential: bool = True,
    log: Callable[[str], None] = print,
    seed: int | None = None,
    side: str | None = None,
    start_at: float | None = None,
) -> dict[str, Any] | None:
    """Run a duet and judge it as it runs (see the module docstring); returns the verdict document.

    ``sequential=False`` is a fixed design: one look when the budget is spent.
    With ``side`` only that half runs (no verdict: None; join it with the other
    half's folder by `bench gate --duet A --duet B`).
    """
    from .. import duet as duet_mod

    defaults = rules is None
    rule_list = list(rules) if rules is not None else [parse_rule(t) for t in DUET_RULES]
    unknown = [r for r in rule_list if r.metric not in {k for k, *_ in FIGURES} and not r.metric.startswith("cost.by_role.")]
    if unknown:
        raise UserError(f"figure {unknown[0].metric!r} is not measured per slice in a duet", f"use one of: {', '.join(k for k, *_ in FIGURES)}")
    sides, design, target = plan_duet(
        scenario, baseline, candidate, Path(out) if out else None, rate,
        slice_s or duet_mod.SLICE_S, duet_mod.WARMUP_S if warmup_s is None else warmup_s,
        budget_s or duet_mod.BUDGET_S, log, side, start_at,
    )  # fmt: skip
    if side is not None:
        run_duet(sides, design, target, lambda n: False, [design.planned], log=log, seed=seed)
        log(f"gate: the {side} half of a duet is in {target}; judge it with the other half: bench gate --duet {target} --duet OTHER")
        return None
    if sequential:
        looks = planned_looks(design.planned, round(FIRST_LOOK_S / design.slice_s), round(LOOK_EVERY_S / design.slice_s))
    else:
        looks = [design.planned]
    seq = Sequential(rule_list, looks, design.planned, alpha, defaults)
    started = time.monotonic()

    def look(n: int) -> bool:
        base, cand = (side_slices(s.run_dir, design.edges(n)) for s in sides)
        done = seq.look(n, base, cand)
        seq.history[-1]["t_s"] = round(time.monotonic() - started, 1)
        k = looks.index(n)
        summary = "; ".join(f"{o.metric} {_short(o)}" for o in seq.outcomes if o.kind == "relative")
        log(f"look {k + 1}/{len(looks)} ({n} slices, alpha {seq.alphas[k]:.2g}): {seq.history[-1]['verdict']}: {summary}")
        return done

    history = seq.history
    doc = run_duet(sides, design, target, look, looks, log=log, seed=seed, history=history)
    if doc["status"] == "interrupted" and int(doc.get("slices") or 0) < stats.MIN_PAIRS:
        raise KeyboardInterrupt  # nothing to judge: the command's Ctrl-C exit (130); the folder keeps what was measured
    verdict = judge_duet_folder(target, rule_list if not defaults else None, history[-1]["alpha"] if history else alpha, strict)
    verdict["duet"]["seconds"] = round(time.monotonic() - started, 1)
    (target / GATE_FILE).write_text(json.dumps(gate_dict(verdict), indent=2, allow_nan=False) + "\n")
    return verdict


def _short(o: Outcome) -> str:
    if o.ci is None:
        return o.status
    return f"{o.change_pct:+.1f}% [{100 * (o.ci[0] - 1):+.1f}, {100 * (o.ci[1] - 1):+.1f}] {o.status}"


__all__ = ["Design", "gate_duet", "judge_duet_folder", "judge_slices"]
