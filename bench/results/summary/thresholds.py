"""``thresholds``: the scenario's SLOs judged against this summary (bench/thresholds.py, docs/thresholds.md)."""

from __future__ import annotations

from .base import Figure, Section


class ThresholdResult(Section):
    """``thresholds.results[]``: one threshold, its value and verdict."""

    metric: str
    """a numeric summary.json field, dotted"""
    op: str
    """<, <=, >, >=, ==, !="""
    limit: float
    threshold: str
    """``metric op limit`` as text"""
    value: Figure
    """the run's value; null = no data in this run"""
    status: str
    """pass, fail, no_data or undecided (requests that never finished could change the verdict: unfinished.bounds)"""
    message: str


class Thresholds(Section):
    status: str
    """pass, fail, inconclusive (none failed, but one had no data or was undecided, or the run cannot vouch for a pass), none (no thresholds)"""
    passed: int
    failed: int
    no_data: int
    undecided: int = 0
    """thresholds the unfinished requests could flip (status undecided)"""
    untrustworthy: list[str]
    """why this run cannot vouch for a pass: not completed, bottleneck loadgen/contended, lab integrity broken"""
    results: list[ThresholdResult]
