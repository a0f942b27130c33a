"""``duet.json``: the design of a duet (`bench gate --run`, `bench compare --run`), its slices and looks.

A duet folder holds ``duet.json``, the two run directories it names
(``baseline/``, ``candidate/``), ``gate.json`` (`bench gate`'s verdict) and, with
``--rate auto``, ``probe/<side>/`` (the probe's load-generator samples).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from .document import Document, Model, ResultsError, read_document

DUET_JSON = "duet.json"
GATE_JSON = "gate.json"


class Design(Model):
    """When the slices are and at which load."""

    slice_s: float
    warmup_s: float
    planned: int
    """the most slices the budget holds"""
    start_at: float | None = None
    """epoch seconds at which both sides' schedules started (null until they did)"""
    rate: float | None = None
    """offered load per side in the scenario's unit (null until the probe found it)"""
    sharing: str = ""
    """how the two sides share the cores"""


class Look(Model):
    """One look of a sequential gate at the slices so far."""

    n: int
    alpha: float
    """the nominal two-sided alpha this look tested at (its share of the gate's alpha)"""
    verdict: str
    t_s: float | None = None
    """seconds since the duet started"""


class Probe(Model):
    """``--rate auto``: the probe's steps, the highest both labs held, and the rate chosen."""

    steps: list[dict[str, Any]]
    max_held: float
    """the highest step both sides held"""
    max_held_by_side: dict[str, float | None] = Field(default_factory=dict)
    """each side's highest step before its first failed one (its saturation, measured once, with the other side loaded alike)"""
    fraction: float
    rate: float


class DuetDoc(Document):
    """``duet.json`` of a duet folder."""

    FILE: ClassVar[str] = DUET_JSON
    SCHEMA_VERSION: ClassVar[int] = 1
    MISSING_FIX: ClassVar[str] = "pass the --out folder of `bench gate --run` or `bench compare --run`"

    schema_version: int = 1
    status: Literal["starting", "running", "completed", "interrupted", "failed", "invalid"]
    design: Design
    sides: dict[str, str]
    """side (baseline, candidate) -> its run directory, relative to the duet folder"""
    start_order: list[str]
    """the order the sides' labs and load generators were started in (drawn at random)"""
    slices: int
    looks: list[Look] = Field(default_factory=list)
    probe: Probe | None = None
    started_at: str | None = None
    ended_at: str | None = None


def read_duet(folder: Path) -> DuetDoc:
    """``duet.json`` of a duet folder (one line when it is missing, damaged or newer)."""
    path = Path(folder) / DUET_JSON
    if not path.exists():
        raise ResultsError(f"{folder}: no {DUET_JSON} (not a duet folder)", DuetDoc.MISSING_FIX)
    return read_document(DuetDoc, path)
