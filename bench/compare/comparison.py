"""The comparison itself: per figure, both sides' values, the ratio, its interval, and what it means.

One function per kind of evidence, both giving :class:`Row`:

- :func:`compare_figure`: two groups of runs (repeats; Welch's t on the logs of
  the per-run values, or "one run per side: run-to-run noise unknown");
- :func:`compare_paired`: the paired slices of a duet (t on the per-slice log-ratios).

:func:`compare_groups` and :func:`compare_duet` assemble the JSON-able document
every renderer (:mod:`bench.compare.render`) and `bench gate` read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import stats
from .figures import KEY_FIGURES, Figure, is_worse, phrase, ratio_of
from .runs import Group, provenance_notes, unfinished_notes

SCHEMA_VERSION = 2


def _r(x: float | None, digits: int = 4) -> float | None:
    """Rounded for the document; None for missing and non-finite values (JSON has no inf)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


@dataclass
class Row:
    """One figure compared: values, ratio, interval, significance (and the estimate a gate rule decides on)."""

    figure: Figure
    baseline: float | None
    candidate: float | None
    baseline_spread_pct: float | None
    candidate_spread_pct: float | None
    ratio: float | None
    sig: stats.Significance

    @property
    def estimate(self) -> stats.Estimate | None:
        return self.sig.estimate

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        change = None if ratio is None or math.isinf(ratio) else 100.0 * (ratio - 1.0)
        return {
            "metric": self.figure.key,
            "better": self.figure.better,
            "baseline": _r(self.baseline),
            "candidate": _r(self.candidate),
            "baseline_spread_pct": _r(self.baseline_spread_pct, 2),
            "candidate_spread_pct": _r(self.candidate_spread_pct, 2),
            "ratio": None if ratio is None or math.isinf(ratio) else _r(ratio),
            "change_pct": _r(change, 2),
            "phrase": phrase(ratio, self.figure),
            "worse": is_worse(ratio, self.figure),
            "significance": self.sig.marker,
            "test": self.sig.describe(),
            "evidence": self.sig.evidence(),
            "p": _r(self.sig.p),
            "ci95": [_r(x) for x in self.sig.ci95] if self.sig.ci95 else None,
            "n": list(self.sig.n),
            "unit": self.sig.unit,
        }


def _spread(values: np.ndarray) -> float | None:
    if values.size < 2 or values.mean() == 0:
        return None
    return float(100.0 * values.std(ddof=1) / abs(values.mean()))


def typical(values: Sequence[float] | np.ndarray, scale: str | None) -> float | None:
    """A side's value as the estimate sees it: the geometric mean (``log``), the mean (``linear``), else the median.

    So the two values of a row divide to exactly the ratio whose interval is shown.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    if scale == "log" and np.all(v > 0):
        return float(np.exp(np.log(v).mean()))
    if scale == "linear":
        return float(v.mean())
    return float(np.median(v))


def compare_figure(base: Group, cand: Group, figure: Figure, alpha: float = stats.ALPHA) -> Row:
    """One figure between two groups of runs (repeats are independent samples)."""
    return compare_values(base.values(figure.key), cand.values(figure.key), figure, alpha)


def compare_values(bv: Sequence[float], cv: Sequence[float], figure: Figure, alpha: float = stats.ALPHA) -> Row:
    """One figure from both sides' per-run values (what :func:`compare_figure` reads from the groups)."""
    bv, cv = list(bv), list(cv)
    if not bv or not cv:
        sig = stats.Significance("none", None, None, None, (len(bv), len(cv)), "")
    else:
        sig = stats.significance(bv, cv, alpha=alpha)
    scale = sig.estimate.scale if sig.estimate is not None else None
    b, c = typical(bv, scale), typical(cv, scale)
    ratio = sig.estimate.ratio if sig.estimate is not None else ratio_of(b, c)
    return Row(figure, b, c, _spread(np.asarray(bv, dtype=float)), _spread(np.asarray(cv, dtype=float)), ratio, sig)


def compare_paired(base: np.ndarray, cand: np.ndarray, figure: Figure, alpha: float = stats.ALPHA) -> Row:
    """One figure over the paired slices of a duet (slice i of each side measured in the same window)."""
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    both = np.isfinite(b) & np.isfinite(c)
    bb, cc = b[both], c[both]
    sig = stats.significance(list(bb), list(cc), alpha=alpha, pairs=True)
    # each side's median slice; the ratio is of the pairs (the trimmed mean of their log-ratios), not of these two
    bm, cm = typical(bb, None), typical(cc, None)
    ratio = sig.estimate.ratio if sig.estimate is not None else ratio_of(bm, cm)
    return Row(figure, bm, cm, _spread(bb), _spread(cc), ratio, sig)


def _group_doc(g: Group) -> dict[str, Any]:
    return {
        "label": g.label,
        "key": g.key,
        "source": g.source,
        "runs": [{"id": r.id, "path": str(r.path), "status": r.status} for r in g.runs],
    }


def compare_groups(groups: list[Group], figures: Sequence[Figure] = KEY_FIGURES, alpha: float = stats.ALPHA) -> dict[str, Any]:
    """The comparison document: groups, and each further group against the first."""
    base = groups[0]
    comparisons = []
    tests_used: set[str] = set()
    notes: list[str] = []
    for cand in groups[1:]:
        rows = [compare_figure(base, cand, f, alpha) for f in figures]
        tests_used.update(r.sig.test for r in rows)
        comparisons.append({"baseline": base.label, "candidate": cand.label, "rows": [r.to_dict() for r in rows]})
        notes += provenance_notes(base, cand)
    return {
        "schema_version": SCHEMA_VERSION,
        "alpha": alpha,
        "design": "runs",
        "groups": [_group_doc(g) for g in groups],
        "figures": [{"metric": f.key, "better": f.better, "description": f.description} for f in figures],
        "comparisons": comparisons,
        "notes": notes + notes_for(tests_used, groups, alpha),
    }


def compare_duet(
    slices: dict[str, tuple[np.ndarray, np.ndarray]],
    figures: Sequence[Figure],
    groups: Sequence[Group],
    alpha: float = stats.ALPHA,
    design: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The comparison document of a duet: ``slices`` maps each figure to (baseline, candidate) per-slice values."""
    base, cand = groups
    rows = [compare_paired(*slices[f.key], f, alpha) for f in figures if f.key in slices]
    return {
        "schema_version": SCHEMA_VERSION,
        "alpha": alpha,
        "design": "duet",
        "duet": design or {},
        "groups": [_group_doc(g) for g in groups],
        "figures": [{"metric": f.key, "better": f.better, "description": f.description} for f in figures if f.key in slices],
        "comparisons": [{"baseline": base.label, "candidate": cand.label, "rows": [r.to_dict() for r in rows]}],
        "notes": [
            *(f"NOT COMPARABLE: the {g.label}'s lab changed during the duet ({r.invalid}): the slices from then on are not the lab's." for g in groups for r in g.runs if r.invalid is not None),
            (
                "paired t: baseline and candidate ran at the same time (a duet) under one schedule; each slice pairs "
                "both sides' figures from the same seconds; the ratio is the 20 % trimmed mean of the slices' log-ratios "
                "with its t-interval (a stall that hit one side harder in a few slices does not decide it)."
            ),
            *provenance_notes(base, cand),
            *unfinished_notes(groups),
        ],
    }


TEST_NOTES = {
    "welch t": "welch t: Welch's t-test on the logs of the per-run values (the ratio of geometric means, with its "
    "{level} interval): the runs carry all the noise between runs, which is what a change has to stand out from.",
    "one run": "noise unknown: one run per side (or fewer than 2 runs on a side). The noise within one run says nothing "
    "about how much a second run of the same configuration would differ, so no difference is called significant: "
    "repeat runs (>= 3 per side), or run both at once with `bench compare --run` / `bench gate --run` (a duet).",
}


def notes_for(tests_used: set[str], groups: list[Group], alpha: float = stats.ALPHA) -> list[str]:
    """Plain-language notes on the tests used and on runs that did not complete."""
    notes = [TEST_NOTES[t].format(level=f"{100 * (1 - alpha):g} %") for t in ("welch t", "one run") if t in tests_used]
    for g in groups:
        for r in g.runs:
            if r.invalid is not None:
                notes.append(f"run {r.id} ({r.path}) is not comparable: its lab changed during the run ({r.invalid}); its figures are left out.")
            elif r.status != "completed":
                notes.append(f"run {r.id} ({r.path}) has status {r.status}: its figures cover a partial run.")
    return notes + unfinished_notes(groups)
