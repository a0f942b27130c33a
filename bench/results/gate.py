"""``gate.json``: the verdict of `bench gate` (``--json FILE``, and ``gate.json`` in a duet folder)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from .document import Document, Model
from .duet import Look

Status = Literal["pass", "fail", "inconclusive"]


class RuleOutcome(Model):
    """One rule's verdict (docs/compare-gate.md, "The verdict")."""

    rule: str
    metric: str
    kind: Literal["relative", "absolute"]
    status: Status
    message: str
    baseline: float | None = None
    candidate: float | None = None
    ratio: float | None = None
    change_pct: float | None = None
    phrase: str = "n/a"
    test: str = "-"
    n: list[int] = Field(default_factory=list)
    unit: str = ""
    p: float | None = None
    alpha: float | None = None
    """the nominal two-sided alpha of the interval the verdict rests on"""
    ci: list[float] | None = None
    """that interval of the ratio candidate/baseline"""
    detectable_pct: float | None = None
    """the smallest true change (%) this rule fails with 95 % power at this noise and n"""
    passable_pct: float | None = None
    """the largest true change (%) it passes with 95 % power"""
    more: int | None = None
    """inconclusive: how many more slices (or runs per side) would decide it"""


class Side(Model):
    key: str
    runs: list[str]


class DuetInfo(Model):
    """A duet's design and how it went (see duet.json)."""

    slice_s: float
    warmup_s: float
    planned: int
    start_at: float | None = None
    rate: float | None = None
    sharing: str = ""
    folder: str
    slices: int | None = None
    status: str | None = None
    looks: list[Look] = Field(default_factory=list)
    start_order: list[str] | None = None
    seconds: float | None = None


class GateDoc(Document):
    """``gate.json``: the verdict of a gate."""

    FILE: ClassVar[str] = "gate.json"
    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int = 2
    verdict: Status
    alpha: float
    strict: bool
    design: Literal["runs", "duet"] = "runs"
    duet: DuetInfo | None = None
    baseline: Side
    candidate: Side
    rules: list[RuleOutcome]
    failed: int
    inconclusive: int
    notes: list[str] = Field(default_factory=list)


def gate_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The verdict validated against :class:`GateDoc` (a TypeError names an undeclared field)."""
    from .document import document_dict

    return document_dict(GateDoc, data)
