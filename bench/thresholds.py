"""SLOs in the scenario, in the style of k6 thresholds.

A scenario declares pass/fail criteria on its own figures::

    thresholds:
      latency_ms.p99: "< 50"
      errors.pct: "< 0.1"
      load.achieved_pct.requests_per_s: ">= 99"
      requests.per_s: [">= 500", "< 100000"]   # several on one metric

A metric is a dotted ``summary.json`` field (see reports/README.md, and
``bench run --help-thresholds``); an expression is an operator (``<``, ``<=``,
``>``, ``>=``, ``==``, ``!=``) and a number. Both are checked when the
scenario loads: an unknown metric or a bad expression is one line with "did
you mean". At the end of the run every threshold is checked against
summary.json (:func:`evaluate`); the verdict lands in ``summary.json``
(``thresholds``), the terminal, the report and ``--junit``; ``bench run``
exits with :data:`EXIT_THRESHOLDS_FAILED` when one failed and
:data:`EXIT_THRESHOLDS_INCONCLUSIVE` when none failed but the run cannot vouch
for a pass (a threshold without data, or a run whose figures are not the load
balancer's: see :func:`untrustworthy`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import fnmatch
import functools
import json
import math
import operator
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

#: ``bench run`` exit status when a threshold failed (k6 uses the same number).
EXIT_THRESHOLDS_FAILED = 99
#: ``bench run`` exit status when no threshold failed but the run cannot vouch for a pass.
EXIT_THRESHOLDS_INCONCLUSIVE = 98

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_EXPR = re.compile(r"^\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
SYNTAX = 'write an operator and a number, e.g. "< 50", ">= 99.5" (operators: < <= > >= == !=)'

#: Figures a threshold can name beyond the summary's own fields: derived on reading (bench/results/figures.py: ``lookup``).
DERIVED_METRICS: tuple[str, ...] = (
    "cpu.lb_ms_per_request",
    *(f"failover.gap_s.{k}" for k in ("min", "median", "p95", "max", "mean")),
)
#: Summary fields that describe the run rather than measure it.
_NOT_FIGURES = ("schema_version", "window.start", "window.end", "ports.first_exhaustion_at", "thresholds.", "unfinished.bounds.")


def _numeric_paths(model: Any, prefix: str = "") -> list[str]:
    """Every numeric leaf of a summary model, dotted; ``*`` for a key of a map (a container, a process, a role)."""
    import types
    import typing

    from pydantic import BaseModel

    def strip(annotation: Any) -> Any:
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                return strip(args[0])
            if all(a in (int, float) for a in args):
                return float
        return annotation

    def walk(annotation: Any, path: str) -> list[str]:
        annotation = strip(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [p for name, info in annotation.model_fields.items() for p in walk(info.annotation, f"{path}.{info.alias or name}" if path else (info.alias or name))]
        if origin is dict:
            return walk(typing.get_args(annotation)[1], f"{path}.*")
        if annotation in (int, float):
            return [path]
        return []  # text, flags, lists: not a figure a threshold can name

    return walk(model, prefix)


@functools.cache
def _catalogue() -> tuple[str, ...]:
    from .results.summary import Summary

    paths = [p for p in _numeric_paths(Summary) if not p.startswith(_NOT_FIGURES)]
    return tuple(dict.fromkeys([*paths, *DERIVED_METRICS]))


#: ``METRICS``: every numeric summary.json field a threshold can name (from the typed summary model,
#: bench/results/summary/), ``*`` standing for one segment that depends on the run.
#: Built on first use (it imports the typed summary models: 0.3-0.6 s that `bench run`'s start does without).
def __getattr__(name: str) -> tuple[str, ...]:
    if name == "METRICS":
        return _catalogue()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_known_metric(metric: str) -> bool:
    """Whether ``metric`` names a numeric summary field (``*`` in :data:`METRICS` matches one segment)."""
    parts = metric.split(".")
    for pattern in _catalogue():
        p = pattern.split(".")
        if len(p) == len(parts) and all(a == "*" or fnmatch.fnmatchcase(b, a) for a, b in zip(p, parts, strict=True)):
            return True
    return False


def suggest(metric: str) -> str | None:
    """The closest known metric name (for "did you mean")."""
    names = [m for m in _catalogue() if "*" not in m]
    close = difflib.get_close_matches(metric, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    # a wrong leaf under a known section: latency_ms.p95 -> the section's closest leaf
    head, _, leaf = metric.rpartition(".")
    same = [m for m in names if m.rpartition(".")[0] == head]
    close = difflib.get_close_matches(leaf, [m.rpartition(".")[2] for m in same], n=1, cutoff=0.3)
    return f"{head}.{close[0]}" if close else None


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold: ``metric op limit``."""

    metric: str
    op: str
    limit: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.limit)

    def could_flip(self, value: float, low: float | None, high: float | None) -> bool:
        """Whether the verdict at ``value`` could differ for another value in ``[low, high]`` (high None: unbounded)."""
        lo = value if low is None else min(low, value)
        hi = math.inf if high is None else max(high, value)
        outcomes = {self.holds(lo), self.holds(hi), self.holds(value)}
        if self.op in ("==", "!=") and lo <= self.limit <= hi and lo < hi:
            outcomes |= {True, False}
        return len(outcomes) > 1


def parse_expression(metric: str, expression: Any) -> Threshold:
    """Parse one ``"< 50"`` for ``metric``; raises ValueError with the fix in the message."""
    if isinstance(expression, bool) or not isinstance(expression, str | int | float):
        raise ValueError(f"{metric}: expected an expression like \"< 50\" (got {expression!r}); {SYNTAX}")
    m = _EXPR.match(str(expression))
    if not m:
        hint = ""
        text = str(expression).strip()
        if re.fullmatch(r"=\s*[-+\d.].*|=>.*|=<.*", text):
            op = ">=" if text.startswith("=>") else "<=" if text.startswith("=<") else "=="
            hint = f' (did you mean "{op} {text.lstrip("=<>").strip()}"?)'
        elif re.fullmatch(r"[-+]?\d+(?:\.\d+)?", text):
            hint = f' (did you mean "<= {text}" or ">= {text}"?)'
        elif re.search(r"\d\s*(ms|s|%)$", text):
            bare = re.sub(r"\s*(ms|s|%)$", "", text)
            hint = f' (did you mean "{bare}"? the unit is the metric\'s own)'
        raise ValueError(f"{metric}: cannot read {str(expression)!r}{hint}; {SYNTAX}")
    limit = float(m.group("num"))
    if not math.isfinite(limit):
        raise ValueError(f"{metric}: the limit must be a finite number (got {m.group('num')})")
    return Threshold(metric, m.group("op"), limit)


def parse_thresholds(raw: Mapping[str, Any]) -> list[Threshold]:
    """Validate a scenario's ``thresholds`` mapping (metric -> expression or list of expressions)."""
    if not isinstance(raw, Mapping):
        raise ValueError('expected a mapping of metric to expression, e.g. {latency_ms.p99: "< 50"}')
    out: list[Threshold] = []
    for key, spec in raw.items():
        metric = str(key)
        if not is_known_metric(metric):
            close = suggest(metric)
            hint = f" (did you mean {close}?)" if close else ""
            raise ValueError(f"unknown metric {metric!r}{hint}; thresholds name numeric summary.json fields, see docs/thresholds.md")
        specs = spec if isinstance(spec, list) else [spec]
        if not specs:
            raise ValueError(f"{metric}: an empty list; {SYNTAX}")
        out.extend(parse_expression(metric, s) for s in specs)
    return out


# --------------------------------------------------------------------------- evaluation


def untrustworthy(summary: Mapping[str, Any]) -> list[str]:
    """Why this run's figures cannot vouch for a pass (empty when they can).

    A pass only counts when the run completed and what it measured was the load
    balancer: not when the load generator was the bottleneck, other work on the
    machine contended with the run, or the lab's integrity broke (a container
    died or was paused, the VIP moved without a fault, collectors lost sources).
    """
    reasons = []
    status = (summary.get("run") or {}).get("status")
    if status not in (None, "completed"):
        reasons.append(f"the run did not complete (status {status})")
    b = summary.get("bottleneck") or {}
    if b.get("component") in ("loadgen", "contended"):
        reasons.append(f"bottleneck {b.get('component')}: {b.get('verdict') or ''}".rstrip(": "))
    integrity = summary.get("integrity")
    if isinstance(integrity, Mapping) and integrity.get("ok") is False:
        problems = integrity.get("problems") or integrity.get("events") or []
        first = problems[0] if problems else None
        text = first.get("message") or first.get("kind") if isinstance(first, Mapping) else first
        reasons.append(f"lab integrity broken{': ' + str(text) if text else ''}")
    return reasons


def evaluate(thresholds: list[Threshold], summary: Mapping[str, Any], lookup: Callable[[Mapping[str, Any], str], Any] | None = None) -> dict[str, Any]:
    """The ``thresholds`` section of summary.json: each threshold's value and status, and the verdict.

    ``status`` of a threshold: ``pass``, ``fail``, ``no_data`` or ``undecided``: the
    figure leaves out requests that never finished (``unfinished`` section), and
    within the range it could take had they finished (``unfinished.bounds``) the
    verdict differs. The verdict (``status``): ``none`` (no thresholds), ``fail``
    (one failed for sure), ``inconclusive`` (none failed, but one had no data or
    was undecided, or the run cannot vouch for a pass), ``pass``.
    """
    if lookup is None:
        from .results.figures import lookup as lookup_fn

        lookup = lookup_fn  # type: ignore[assignment]  # it reads any mapping
    assert lookup is not None
    results = []
    unfinished = summary.get("unfinished") or {}
    bounds = unfinished.get("bounds") or {}
    for th in thresholds:
        value = _number(lookup(summary, th.metric))
        bound = bounds.get(th.metric)
        if value is None:
            status, message = "no_data", f"{th.text}: no data in this run"
        elif bound is not None and th.could_flip(value, _number(bound.get("low")), _number(bound.get("high"))):
            high = _number(bound.get("high"))
            low = _number(bound.get("low"))
            span = f"{_fmt(min(low, value) if low is not None else value)} to {_fmt(high) if high is not None else 'unbounded'}"
            status = "undecided"
            message = f"{th.text}: {_fmt(value)} {'passes' if th.holds(value) else 'FAILS'} on the finished requests, but with {unfinished.get('total'):,} unfinished it could be {span}: undecided"
        elif th.holds(value):
            status, message = "pass", f"{th.text}: {_fmt(value)} passes"
        else:
            status, message = "fail", f"{th.text}: {_fmt(value)} FAILS"
        results.append({"metric": th.metric, "op": th.op, "limit": th.limit, "threshold": th.text, "value": value, "status": status, "message": message})
    reasons = untrustworthy(summary) if thresholds else []
    if not thresholds:
        verdict = "none"
    elif any(r["status"] == "fail" for r in results):
        verdict = "fail"
    elif reasons or any(r["status"] in ("no_data", "undecided") for r in results):
        verdict = "inconclusive"
    else:
        verdict = "pass"
    return {
        "status": verdict,
        "passed": sum(r["status"] == "pass" for r in results),
        "failed": sum(r["status"] == "fail" for r in results),
        "no_data": sum(r["status"] == "no_data" for r in results),
        "undecided": sum(r["status"] == "undecided" for r in results),
        "untrustworthy": reasons,
        "results": results,
    }


def exit_status(section: Mapping[str, Any] | None) -> int:
    """The exit status a thresholds verdict asks for (0 when it passed or there were none)."""
    status = (section or {}).get("status")
    if status == "fail":
        return EXIT_THRESHOLDS_FAILED
    if status == "inconclusive":
        return EXIT_THRESHOLDS_INCONCLUSIVE
    return 0


def verdict_line(section: Mapping[str, Any] | None) -> str | None:
    """One line for the terminal (None without thresholds)."""
    s = section or {}
    if s.get("status") in (None, "none"):
        return None
    results = s.get("results") or []
    head = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}[s["status"]]
    text = f"thresholds: {head} ({s['passed']} of {len(results)} passed"
    text += f", {s['failed']} failed" if s.get("failed") else ""
    text += f", {s['no_data']} without data" if s.get("no_data") else ""
    text += f", {s['undecided']} undecided" if s.get("undecided") else ""
    text += ")"
    bad = [r["message"] for r in results if r["status"] != "pass"]
    if bad:
        text += ": " + "; ".join(bad)
    if s.get("untrustworthy"):
        text += "; the run cannot vouch for a pass: " + "; ".join(s["untrustworthy"])
    return text


def junit_xml(runs: list[tuple[str, Mapping[str, Any]]]) -> str:
    """JUnit XML for ``bench run --junit``: one testsuite per run (id, thresholds section), one testcase per threshold.

    A failed threshold is a ``<failure>``; one without data, or a pass the run
    cannot vouch for, is ``<skipped>`` with the reason.
    """
    root = ET.Element("testsuites", name="bench run thresholds")
    total = failures = skipped = 0
    for run_id, section in runs:
        results = section.get("results") or []
        reasons = section.get("untrustworthy") or []
        suite = ET.SubElement(root, "testsuite", name=f"bench run {run_id}", tests=str(len(results)), errors="0")
        suite.set("timestamp", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        n_fail = n_skip = 0
        for r in results:
            case = ET.SubElement(suite, "testcase", classname=f"bench.thresholds.{run_id}", name=r["threshold"], time="0")
            if r["status"] == "fail":
                n_fail += 1
                ET.SubElement(case, "failure", message=r["message"], type="threshold").text = json.dumps({k: r[k] for k in ("metric", "op", "limit", "value")})
            elif r["status"] in ("no_data", "undecided"):
                n_skip += 1
                ET.SubElement(case, "skipped", message=r["message"])
            elif reasons:
                n_skip += 1
                ET.SubElement(case, "skipped", message=f"{r['message']}, but the run cannot vouch for it: {'; '.join(reasons)}")
            ET.SubElement(case, "system-out").text = r["message"]
        suite.set("failures", str(n_fail))
        suite.set("skipped", str(n_skip))
        total, failures, skipped = total + len(results), failures + n_fail, skipped + n_skip
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("skipped", str(skipped))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def check_output_path(path: Path, flag: str) -> None:
    """Refuse an output file that cannot be written, before a run starts (one line naming the fix)."""
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory", "name a file, e.g. --junit thresholds.xml")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: folder {parent} does not exist", "create it first or name another file")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path}: not writable", "name a file you can write")


def write_junit(path: Path, runs: list[tuple[str, Mapping[str, Any]]]) -> None:
    """Write :func:`junit_xml` to ``path`` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(junit_xml(runs))
    os.replace(tmp, path)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
