"""The documents of a capacity folder (``bench capacity``, docs/capacity.md): ``sweep.json`` and ``capacity.json``.

``sweep.json`` is written while the sweep runs (what ran when: phases, groups, the
measuring window of every stage); ``capacity.json`` is made from the folder by the
analysis (the fitted costs with their intervals and residuals, the predictions, the
validation) and can be made again from the raw data (``bench capacity fit DIR``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from .document import Document, Model, Number


class Stage(Model):
    """One rate of a group: its target and its measuring window."""

    step: str
    """``<group>@<target>``: the step's name in the step table"""
    target: Number
    start: float
    """epoch s: the stage's schedule began"""
    end: float
    window: list[float]
    """[start, end) epoch s measured: the stage without its first seconds (settling) and its last"""
    measured: bool = True
    """false for a held group's first stage (the held connections are being opened)"""


class Group(Model):
    """One load generator run of a phase."""

    name: str
    description: str
    model: str
    target_field: str
    tls_share: float
    held: bool = False
    folder: str
    """the Locust run's folder, relative to the capacity folder"""
    start_at: float
    exit_code: int | None = None
    stages: list[Stage] = Field(default_factory=list)


class Phase(Model):
    """One lab of the sweep."""

    name: str
    description: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    key_type: str
    project: str
    folder: str
    """the folder its collectors wrote into, relative to the capacity folder"""
    started_at: float | None = None
    ended_at: float | None = None
    idle_window: list[float] | None = None
    groups: list[Group] = Field(default_factory=list)


class SweepDoc(Document):
    """``sweep.json``: what the sweep ran."""

    FILE: ClassVar[str] = "sweep.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    MISSING_FIX: ClassVar[str] = "pass a folder `bench capacity measure` wrote"

    schema_version: int
    status: Literal["running", "completed", "interrupted", "failed"]
    scenario: str
    """the scenario whose topology (and overrides) the sweep ran on"""
    variant: str | None = None
    sets: list[str] = Field(default_factory=list)
    plan: str
    stage_s: float
    started_at: float
    ended_at: float | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=dict)
    phases: list[Phase] = Field(default_factory=list)
    error: str | None = None


class Interval(Model):
    """A figure with its interval (the fit's confidence level)."""

    estimate: float
    low: float
    high: float


class Cost(Model):
    """The cost of one operation for one role."""

    operation: str
    doc: str
    unit: str
    """the unit of ``estimate``/``low``/``high``: µs (or ms) of CPU per operation, ms of CPU per second for ``held_kconn``, cores for ``idle``"""
    estimate: float
    low: float
    high: float


class FitStats(Model):
    """How well a linear fit fits."""

    steps: int
    df: int
    r2: float | None = None
    rmse: float
    max_abs_residual: float | None = None
    max_rel_residual_pct: float | None = None
    """the largest |residual| / measured among steps with at least a tenth of the largest value, %"""
    weighted: bool


class LinearModel(Model):
    """A fitted linear model as numbers: enough to predict again (bench/capacity/fit.py)."""

    names: list[str]
    coef: list[float]
    cov_classical: list[list[float]]
    cov_hc3: list[list[float]]
    df: int
    level: float
    dropped: list[str] = Field(default_factory=list)
    """operations left out: they never varied on their own in the steps (not measured)"""
    nonneg: bool = True
    fit: FitStats


class RoleCosts(Model):
    """Cores of one process role: the model and its costs."""

    role: str
    model: LinearModel
    costs: list[Cost]


class Residual(Model):
    """One step's measured cores of a role against the fit."""

    step: str
    role: str
    measured: float
    fitted: float
    residual: float


class Resource(Model):
    """One resource a prediction needs, against what there is."""

    name: str
    unit: str
    need: Interval
    have: float | None = None
    headroom: float | None = None
    """have / need (null: nothing needed or nothing to compare)"""
    headroom_low: float | None = None
    """have / the high end of the need"""
    detail: str


class Reference(Model):
    """A figure measured elsewhere, beside the model's answer for the same profile."""

    text: str
    cpu: str
    role: str
    cores: float
    model: Interval
    ratio: Interval


class Beyond(Model):
    """An operation a prediction asks for beyond the largest rate the sweep measured."""

    operation: str
    asked: float
    measured_max: float
    factor: float
    """asked / measured_max"""
    far: bool
    """factor > 3: the prediction is an extrapolation far past its data"""


class PredictionDoc(Model):
    """What one profile needs (bench/capacity/predict.py)."""

    profile: str
    scale: float
    machine: dict[str, Any]
    deployment: dict[str, Any]
    workload: dict[str, Any]
    operations: dict[str, float]
    cores: dict[str, Interval]
    total_cores: Interval
    memory_bytes: dict[str, Interval]
    total_memory_bytes: Interval
    processes: dict[str, int]
    """frontend and backend processes the file descriptors ask for; local_addresses: M needed"""
    resources: list[Resource]
    first_limit: str | None = None
    reference: Reference | None = None
    notes: list[str] = Field(default_factory=list)
    extrapolated: bool = False
    """some operation is asked for at more than 3x the largest rate the sweep measured it at (bench/capacity/predict.py FAR)"""
    beyond_measured: list[Beyond] = Field(default_factory=list)


class RoleCheck(Model):
    """One role of the validation run: predicted and measured cores."""

    role: str
    predicted: Interval
    """from the profile alone (before the run)"""
    predicted_at_measured_rates: Interval
    """from the rates HAProxy counted in the run (the model's error without the load generator's)"""
    measured: float
    error_pct: float | None = None
    """100 x (predicted - measured) / measured"""
    error_at_measured_rates_pct: float | None = None
    within_interval: bool


class Validation(Model):
    """The model against a mixed run it did not see."""

    run_dir: str
    scenario: str
    scale: float | None = None
    window: list[float]
    roles: list[RoleCheck]
    total: RoleCheck
    tolerance_pct: float
    within_tolerance: bool
    """|total error| <= tolerance_pct (from the profile)"""
    operations_planned: dict[str, float]
    operations_measured: dict[str, float]
    what_else_ran: dict[str, float | None]
    """cores of the load generator, the dummy servers, keepalived, the whole host, and what is left (other processes)"""


class CapacityDoc(Document):
    """``capacity.json``: the fitted capacity model of one sweep, its predictions and its validation."""

    FILE: ClassVar[str] = "capacity.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    MISSING_FIX: ClassVar[str] = "pass a folder `bench capacity measure` wrote, or its capacity.json"

    schema_version: int
    created_at: str
    sweep: str
    """the folder of the sweep it was fitted on"""
    scenario: str
    topology: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str | None] = Field(default_factory=dict)
    level: float
    costs: list[RoleCosts]
    memory: list[RoleCosts] = Field(default_factory=list)
    sockets: dict[str, LinearModel] = Field(default_factory=dict)
    """``hop`` (frontend -> backend) and ``server`` (backend -> server) sockets open, fitted on the steps"""
    residuals: list[Residual] = Field(default_factory=list)
    steps: list[dict[str, float | str | None]] = Field(default_factory=list)
    """the step table (bench/capacity/measure.py): one row per measured stage"""
    predictions: list[PredictionDoc] = Field(default_factory=list)
    validation: Validation | None = None
    notes: list[str] = Field(default_factory=list)
