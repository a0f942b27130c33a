"""Gate rules: ``METRIC: LIMIT``, parsed and validated (one clear line per bad rule).

Rules name a summary.json figure (dotted key, see reports/README.md) and a limit::

    cost.lb_us_per_request: +2%   relative: fail on a rise of more than 2 %
    requests.per_s: -5%           relative: fail on a drop of more than 5 %
    errors.total: <= 0            absolute: the candidate must stay at or below 0
    errors.total: 0               the same (a bare number means "<=")
    tls.resumption_pct: >= 90

How a rule is judged is in :mod:`bench.gate.verdict`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..inputs import read_text

#: Version of the gate file format (``--rules FILE``).
SCHEMA_VERSION = 1
#: Rules used when none are given, for finished runs (repeats of each side).
DEFAULT_RULES = ("requests.per_s: -5%", "latency_ms.p99: +10%", "errors.total: <= 0")
#: Rules used when none are given, for a duet (`bench gate --run`): what a release can break at a fixed load.
#: A rule whose figure the duet does not have (no TLS handshakes in the slices) is left out with a note.
DUET_RULES = (
    "cost.lb_us_per_request: +2%",
    "cost.lb_us_per_full_handshake: +2%",
    "latency_ms.p50: +10%",
    "latency_ms.p99: +20%",
    "errors.pct: <= 0.01",
)

_RULE = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w.]*?)\s*:\s*(?P<spec>.*?)\s*$")
_RELATIVE = re.compile(r"^(?P<sign>[+-])\s*(?P<num>\d+(?:\.\d+)?)\s*%$")
_ABSOLUTE = re.compile(r"^(?P<op><=|<|>=|>)?\s*(?P<num>-?\d+(?:\.\d+)?)$")
OPS: dict[str, Callable[[float, float], bool]] = {
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
            direction = "drop" if self.threshold < 0 else "rise"
            return f"fails when the whole interval lies beyond a {direction} of {abs(self.threshold) * 100:g}%"
        return f"candidate must be {self.op} {self.threshold:g}"

    @property
    def limit_text(self) -> str:
        """``+2%``, ``-5%`` or ``<= 0``."""
        return f"{self.threshold * 100:+g}%" if self.kind == "relative" else f"{self.op} {self.threshold:g}"


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
    text = read_text(Path(path), "gate file", "pass a YAML gate file", flag="--rules")
    try:
        data = yaml.safe_load(text)
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


