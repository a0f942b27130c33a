"""The document of `bench compare --format json`: groups, and each further group against the first."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from .document import Document, Model


class RunRef(Model):
    id: str
    path: str
    status: str


class GroupDoc(Model):
    label: str
    key: str
    source: str
    runs: list[RunRef]


class FigureDoc(Model):
    metric: str
    better: Literal["higher", "lower"] | None
    description: str


class Row(Model):
    """One figure of one comparison (docs/compare-gate.md, "bench compare")."""

    metric: str
    better: Literal["higher", "lower"] | None
    baseline: float | None
    candidate: float | None
    baseline_spread_pct: float | None
    candidate_spread_pct: float | None
    ratio: float | None
    change_pct: float | None
    phrase: str
    worse: bool | None
    significance: str
    test: str
    evidence: str
    p: float | None
    ci95: list[float | None] | None
    n: list[int]
    unit: str


class Comparison(Model):
    baseline: str
    candidate: str
    rows: list[Row]


class CompareDoc(Document):
    """``bench compare --format json``."""

    FILE: ClassVar[str] = "compare.json"
    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int = 2
    alpha: float
    design: Literal["runs", "duet"]
    duet: dict[str, Any] | None = None
    """a duet's design (`bench compare --run`): as in its duet.json, plus its folder and slices"""
    groups: list[GroupDoc]
    figures: list[FigureDoc]
    comparisons: list[Comparison]
    notes: list[str]
