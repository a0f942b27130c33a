"""`bench gate`: fail a CI job when a candidate is slower than its baseline beyond noise.

Rules name a summary.json figure (dotted key, see reports/README.md) and a limit::

    requests.per_s: -5%      relative: fail on a drop of more than 5 %
    latency_ms.p99: +10%     relative: fail on a rise of more than 10 %
    errors.total: <= 0       absolute: the candidate must stay at or below 0
    errors.total: 0          the same (a bare number means "<=")
    tls.resumption_pct: >= 90

A relative rule fails only when the change of the median is beyond the threshold
AND the difference is significant (:func:`bench.stats.significance`, at ``alpha``
divided by the number of relative rules, so that ``alpha`` bounds the chance that
the gate as a whole fails without a real change); beyond the
threshold but too few data to tell is *inconclusive* (a pass, loudly, unless
``strict``). An absolute rule fails on its threshold alone, judged on the worst
candidate run.

Exit status: 0 pass, 1 regression (a rule failed), 2 usage or data error (a bad
rule, a missing figure, no such run directory).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import stats
from .compare import MISSING, Group, figure_for, fmt_value, is_count, load_groups, lookup, numeric_keys, phrase, series_pair
from .errors import UserError

SCHEMA_VERSION = 1
EXIT_PASS, EXIT_REGRESSION = 0, 1
#: Rules used when none are given.
DEFAULT_RULES = ("requests.per_s: -5%", "latency_ms.p99: +10%", "errors.total: <= 0")
#: Upper bound of `bench gate --run --repeat`, so a typo cannot occupy a CI machine for hours.
MAX_REPEAT = 20

_RULE = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w.]*?)\s*:\s*(?P<spec>.*?)\s*$")
_RELATIVE = re.compile(r"^(?P<sign>[+-])\s*(?P<num>\d+(?:\.\d+)?)\s*%$")
_ABSOLUTE = re.compile(r"^(?P<op><=|<|>=|>)?\s*(?P<num>-?\d+(?:\.\d+)?)$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
}
SYNTAX = "write METRIC: -5% (fail on a drop), METRIC: +10% (fail on a rise) or METRIC: <= 0 (absolute limit)"


@dataclass(frozen=True)
class Rule:
    """One gate rule, parsed and validated.

    ``kind`` is ``relative`` (``threshold`` a signed fraction: -0.05 fails on a
    drop of more than 5 %) or ``absolute`` (``op`` and ``threshold`` a limit the
    candidate must meet).
    """

    metric: str
    kind: str
    threshold: float
    op: str
    text: str

    def describe(self) -> str:
        if self.kind == "relative":
            direction = "drop" if self.threshold < 0 or self.op == "-" else "rise"
            return f"fails on a significant {direction} of more than {abs(self.threshold) * 100:g}%"
        return f"candidate must be {self.op} {self.threshold:g}"


def parse_rule(text: str) -> Rule:
    """Parse ``METRIC: SPEC`` (see the module docstring); a bad rule raises one clear UserError.

    >>> parse_rule("requests.per_s: -5%").threshold
    -0.05
    >>> parse_rule("errors.total: 0").op
    '<='
    """
    m = _RULE.match(str(text))
    if not m or not m.group("spec"):
        raise UserError(f"rule {text!r}: expected METRIC: LIMIT", SYNTAX)
    metric, spec = m.group("metric"), m.group("spec")
    canonical = f"{metric}: {spec}"
    rel = _RELATIVE.match(spec)
    if rel:
        value = float(rel.group("num")) / 100.0
        if rel.group("sign") == "-" and value >= 1.0:
            raise UserError(f"rule {text!r}: a drop of {spec[1:]} or more can never happen", "use a drop below 100%, e.g. -5%")
        return Rule(metric, "relative", -value if rel.group("sign") == "-" else value, rel.group("sign"), canonical)
    if re.fullmatch(r"\d+(?:\.\d+)?\s*%", spec):
        raise UserError(
            f"rule {text!r}: a relative limit needs a sign saying which way is a regression",
            f"write {metric}: -{spec} to fail on a drop, {metric}: +{spec} to fail on a rise",
        )
    if re.fullmatch(r"[+-]\s*\d+(?:\.\d+)?", spec):
        raise UserError(
            f"rule {text!r}: a signed number without % is ambiguous",
            f"write {metric}: {spec}% for a relative change, or {metric}: <= {spec.lstrip('+')} for an absolute limit",
        )
    ab = _ABSOLUTE.match(spec)
    if ab and (ab.group("op") or not ab.group("num").startswith("-")):
        return Rule(metric, "absolute", float(ab.group("num")), ab.group("op") or "<=", canonical)
    raise UserError(f"rule {text!r}: cannot read the limit {spec!r}", SYNTAX)


def load_rules_file(path: str) -> tuple[list[Rule], float | None]:
    """Rules (and an optional ``alpha``) from a YAML gate file::

        schema_version: 1   # optional
        alpha: 0.05         # optional
        rules:
          requests.per_s: -5%
          latency_ms.p99: +10%
          errors.total: <= 0
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise UserError(f"--rules {path}: cannot read ({exc.strerror or exc})", "pass a YAML gate file") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--rules {path}: not valid YAML ({str(exc).splitlines()[0]})", "see docs/compare-gate.md for the format") from None
    if not isinstance(data, dict):
        raise UserError(f"--rules {path}: expected a mapping with a 'rules' key", "see docs/compare-gate.md for the format")
    unknown = sorted(set(data) - {"schema_version", "alpha", "rules"})
    if unknown:
        raise UserError(f"--rules {path}: unknown key {unknown[0]!r}", "allowed keys: schema_version, alpha, rules")
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(f"--rules {path}: schema_version {version!r} is newer than this lbbench understands", "upgrade lbbench")
    alpha = data.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1):
        raise UserError(f"--rules {path}: alpha must be a number between 0 and 1 (got {alpha!r})", "for example alpha: 0.05")
    raw = data.get("rules")
    texts: list[str] = []
    if isinstance(raw, dict):
        texts = [f"{k}: {_spec_text(v)}" for k, v in raw.items()]
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and len(item) == 1:
                (k, v), = item.items()
                texts.append(f"{k}: {_spec_text(v)}")
            elif isinstance(item, str):
                texts.append(item)
            else:
                raise UserError(f"--rules {path}: cannot read rule {item!r}", SYNTAX)
    if not texts:
        raise UserError(f"--rules {path}: no rules", "add a 'rules' mapping, e.g. rules: {requests.per_s: -5%}")
    rules = []
    for t in texts:
        try:
            rules.append(parse_rule(t))
        except UserError as exc:
            raise UserError(f"--rules {path}: {exc.problem}", exc.fix) from None
    return rules, float(alpha) if alpha is not None else None


def _spec_text(value: Any) -> str:
    # YAML reads `errors.total: 0` as the number 0; keep rule text as the user wrote it
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Outcome:
    """The verdict of one rule."""

    rule: str
    metric: str
    kind: str
    status: str  # "pass", "fail" or "inconclusive"
    message: str
    baseline: float | None
    candidate: float | None
    change_pct: float | None
    phrase: str
    significance: str
    test: str
    evidence: str
    p: float | None
    ci95: list[float] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _fmt(x: float | None, metric: str = "") -> str:
    return fmt_value(x, count=is_count(metric))


def evaluate_rule(rule: Rule, base: Group, cand: Group, alpha: float, strict: bool = False) -> Outcome:
    """Apply one rule to the baseline and candidate groups."""
    figure = figure_for(rule.metric)
    cand_vals = _values(cand, rule.metric, "candidate")
    if rule.kind == "absolute":
        if not cand_vals:
            return Outcome(rule.text, rule.metric, rule.kind, "fail", f"{rule.metric}: no value in any candidate run", None, None, None, "n/a", "-", "-", "-", None, None)
        worst = max(cand_vals) if rule.op in ("<=", "<") else min(cand_vals)
        ok = _OPS[rule.op](worst, rule.threshold)
        which = "worst candidate run" if len(cand_vals) > 1 else "candidate"
        msg = f"{rule.metric} = {_fmt(worst, rule.metric)} ({which}); limit {rule.op} {rule.threshold:g}"
        base_vals = base.values(rule.metric)
        return Outcome(
            rule.text, rule.metric, rule.kind, "pass" if ok else "fail", msg,
            float(np.median(base_vals)) if base_vals else None, worst, None, "n/a", "-", "threshold only", "-", None, None,
        )
    base_vals = _values(base, rule.metric, "baseline")
    if not base_vals:
        raise UserError(f"figure {rule.metric!r} is null in every baseline run ({base.runs[0].path})", "gate on a figure the baseline measured")
    b = float(np.median(base_vals))
    if not cand_vals:
        msg = f"{rule.metric}: the candidate has no value (null in summary.json), baseline {_fmt(b, rule.metric)}"
        return Outcome(rule.text, rule.metric, rule.kind, "fail", msg, b, None, None, "n/a", "-", "-", "-", None, None)
    c = float(np.median(cand_vals))
    if b == 0:
        change = 0.0 if c == 0 else math.copysign(math.inf, c)
    else:
        change = c / b - 1.0
    beyond = change < rule.threshold if rule.op == "-" else change > rule.threshold
    sig = stats.significance(base_vals, cand_vals, *series_pair(base, cand, figure), alpha=alpha, seed=stats.seed_for(rule.metric))
    ratio = None if b == 0 and c != 0 else (1.0 if b == 0 else c / b)
    words = phrase(ratio if ratio is not None else math.inf, figure)
    change_pct = round(change * 100, 2) if math.isfinite(change) else None
    change_txt = f"{change_pct:+.1f}%" if change_pct is not None else "from 0"
    limit = f"{rule.threshold * 100:+g}%"
    head = f"{rule.metric} {_fmt(b, rule.metric)} -> {_fmt(c, rule.metric)} ({change_txt}, {words}); limit {limit}"
    evidence = f"{sig.describe()}, {sig.evidence()}" if sig.test != "none" else "no test possible"
    if not beyond:
        status, msg = "pass", f"{head}: within the threshold"
    elif sig.significant:
        status, msg = "fail", f"{head}: beyond the threshold and significant ({evidence})"
    elif sig.significant is None:
        status = "fail" if strict else "inconclusive"
        msg = f"{head}: beyond the threshold but too few data to tell; repeat runs (>= {stats.MIN_REPEATS} per side)"
    else:
        status, msg = "pass", f"{head}: beyond the threshold but within noise ({evidence})"
    return Outcome(
        rule.text, rule.metric, rule.kind, status, msg, b, c,
        change_pct, words,
        sig.marker, sig.describe(), sig.evidence(),
        None if sig.p is None else round(sig.p, 4),
        [round(x, 4) for x in sig.ci95] if sig.ci95 else None,
    )


def evaluate(
    baseline: Sequence[str],
    candidate: Sequence[str],
    rules: Sequence[Rule],
    alpha: float = stats.ALPHA,
    strict: bool = False,
) -> dict[str, Any]:
    """The full verdict of a gate as a JSON-able dict (``verdict`` is ``pass`` or ``fail``)."""
    groups = _two_groups(baseline, candidate)
    for g, side in zip(groups, ("baseline", "candidate"), strict=True):
        bad = [r for r in g.runs if r.status != "completed"]
        if bad:
            raise UserError(
                f"{side} run {bad[0].path} has status {bad[0].status!r}; a gate needs completed runs",
                "rerun it, or leave it out of --baseline/--candidate",
            )
    return judge(groups[0], groups[1], rules, alpha, strict)


def judge(base: Group, cand: Group, rules: Sequence[Rule], alpha: float = stats.ALPHA, strict: bool = False) -> dict[str, Any]:
    """The verdict of the rules on two loaded groups (what :func:`evaluate` returns)."""
    # The gate fails when ANY rule fails, so alpha bounds the whole gate: split it over the
    # relative rules (Bonferroni); absolute rules take no test.
    relative = sum(r.kind == "relative" for r in rules)
    alpha_rule = alpha / max(relative, 1)
    outcomes = [evaluate_rule(r, base, cand, alpha_rule, strict) for r in rules]
    failed = [o for o in outcomes if o.status == "fail"]
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": "fail" if failed else "pass",
        "alpha": alpha,
        "alpha_per_rule": round(alpha_rule, 6),
        "strict": strict,
        "baseline": {"key": base.key, "runs": [str(r.path) for r in base.runs]},
        "candidate": {"key": cand.key, "runs": [str(r.path) for r in cand.runs]},
        "rules": [o.to_dict() for o in outcomes],
        "failed": len(failed),
        "inconclusive": sum(o.status == "inconclusive" for o in outcomes),
    }


def _two_groups(baseline: Sequence[str], candidate: Sequence[str]) -> list[Group]:
    if not baseline or not candidate:
        raise UserError("bench gate needs --baseline RUN... and --candidate RUN... (or --run SCENARIO)", "see `bench gate --help`")
    base = load_groups(baseline, labels=["baseline"] * len(baseline))
    cand = load_groups(candidate, labels=["candidate"] * len(candidate))
    merged = []
    for label, parts in (("baseline", base), ("candidate", cand)):
        runs = [r for g in parts for r in g.runs]
        key = " + ".join(sorted({k for g in parts for k in g.key.split(" + ")}))
        merged.append(Group(key, label, ", ".join(g.source for g in parts), runs))
    return merged


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
        ET.SubElement(props, "property", name=side, value=" ".join(verdict[side]["runs"]))
    ET.SubElement(props, "property", name="alpha", value=str(verdict["alpha"]))
    for o in rules:
        case = ET.SubElement(suite, "testcase", classname="bench.gate", name=o["rule"], time="0")
        if o["status"] == "fail":
            failure = ET.SubElement(case, "failure", message=o["message"], type="regression")
            failure.text = json.dumps({k: o[k] for k in ("baseline", "candidate", "change_pct", "significance", "test", "evidence")})
        elif o["status"] == "inconclusive":
            ET.SubElement(case, "skipped", message=o["message"])
        ET.SubElement(case, "system-out").text = o["message"]
    root = ET.Element("testsuites", name="bench gate", tests=suite.get("tests", "0"), failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def print_verdict(verdict: dict[str, Any], console: Any = None) -> None:
    """The verdict as a rich table plus one line: ``gate: PASS`` or ``gate: FAIL (n of m rules)``."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"bench gate: {verdict['candidate']['key']} (candidate) vs {verdict['baseline']['key']} (baseline)", title_justify="left")
    for col in ("rule", "baseline", "candidate", "change", "significance", "test", "verdict"):
        t.add_column(col, justify="right" if col in ("baseline", "candidate", "change") else "left")
    styles = {"fail": "bold red", "pass": "green", "inconclusive": "yellow"}
    for o in verdict["rules"]:
        change = "n/a" if o["change_pct"] is None else f"{o['change_pct']:+.1f}%"
        test = o["test"] if o["evidence"] in ("-", "") else f"{o['test']}, {o['evidence']}"
        t.add_row(o["rule"], _fmt(o["baseline"], o["metric"]), _fmt(o["candidate"], o["metric"]), change, o["significance"], test, o["status"].upper(), style=styles.get(o["status"], ""))
    console.print(t)
    for o in verdict["rules"]:
        if o["status"] != "pass":
            console.print(f"{o['status'].upper()}: {o['message']}", style=styles[o["status"]], highlight=False)
    n = len(verdict["rules"])
    if verdict["verdict"] == "fail":
        console.print(f"gate: FAIL ({verdict['failed']} of {n} rules regressed)", style="bold red", highlight=False)
    else:
        extra = f", {verdict['inconclusive']} inconclusive" if verdict["inconclusive"] else ""
        console.print(f"gate: PASS ({n} rules{extra})", style="bold green", highlight=False)


# --------------------------------------------------------------------------- interleaved runs


def run_interleaved(
    scenario: str,
    repeat: int,
    out: Path,
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    duration: str | None = None,
    log: Callable[[str], None] = print,
    runner: Callable[..., Path] | None = None,
) -> tuple[list[Path], list[Path]]:
    """Run baseline and candidate alternately (A B A B ...) into ``out/baseline`` and ``out/candidate``.

    ``baseline``/``candidate`` hold ``variant``, ``sets`` and optionally
    ``scenario`` (a scenario file replacing ``scenario`` for that side).
    Interleaving spreads any drift of the machine over both sides alike.
    """
    if runner is None:
        from .run import run_scenario as runner
    if not 1 <= repeat <= MAX_REPEAT:
        raise UserError(f"--repeat {repeat}: must be between 1 and {MAX_REPEAT}", "use for example --repeat 3")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty", "choose another --out or remove it")
    dirs: dict[str, list[Path]] = {"baseline": [], "candidate": []}
    for i in range(1, repeat + 1):
        for side, spec in (("baseline", baseline), ("candidate", candidate)):
            target = out / side / f"run-{i:02d}"
            log(f"gate: {side} run {i}/{repeat}")
            run_dir = runner(
                spec.get("scenario") or scenario,
                duration=duration,
                out=target,
                variant=spec.get("variant"),
                sets=list(spec.get("sets") or []),
                log=log,
            )
            dirs[side].append(Path(run_dir))
    return dirs["baseline"], dirs["candidate"]


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
    repeat: int = 3,
    baseline_spec: dict[str, Any] | None = None,
    candidate_spec: dict[str, Any] | None = None,
    duration: str | None = None,
    out: str | None = None,
    log: Callable[[str], None] = print,
    console: Any = None,
) -> int:
    """`bench gate`: evaluate the rules (running the scenario first with ``run``); returns 0 pass or 1 regression.

    Usage and data errors raise :class:`~bench.errors.UserError` (exit 2).
    """
    rules = [parse_rule(t) for t in rule_texts]
    file_alpha = None
    if rules_file:
        from_file, file_alpha = load_rules_file(rules_file)
        rules += from_file
    if not rules:
        rules = [parse_rule(t) for t in DEFAULT_RULES]
    alpha = alpha if alpha is not None else (file_alpha if file_alpha is not None else stats.ALPHA)
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must be between 0 and 1", "use for example --alpha 0.05")
    if run:
        if baseline or candidate:
            raise UserError("use either --run SCENARIO or --baseline/--candidate run directories, not both", "see `bench gate --help`")
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        from . import paths

        target = Path(out) if out else paths.REPORTS / f"gate-{Path(run).stem}-{stamp}"
        base_dirs, cand_dirs = run_interleaved(run, repeat, target, baseline_spec or {}, candidate_spec or {}, duration, log)
        baseline, candidate = [str(target / "baseline")], [str(target / "candidate")]
        log(f"gate: runs in {target}")
    verdict = evaluate(baseline, candidate, rules, alpha, strict)
    print_verdict(verdict, console)
    if json_out:
        Path(json_out).write_text(json.dumps(verdict, indent=2, allow_nan=False) + "\n")
    if junit:
        Path(junit).write_text(junit_xml(verdict))
    return EXIT_REGRESSION if verdict["verdict"] == "fail" else EXIT_PASS
