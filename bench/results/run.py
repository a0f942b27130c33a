"""``run.json``: what ran (the resolved scenario and topology, versions, machine, lab, load window).

Written by :mod:`bench.run` at every step of a run (``status`` says how far it got)
and read by the analysis, compare and gate. reports/README.md ("Layout") documents
every field; a unit test holds the two together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from .document import Document, Model, Number, read_document
from .layout import RUN_JSON, RunDir

RunStatus = Literal["starting", "running", "completed", "interrupted", "failed", "invalid"]


class Versions(Model):
    """Versions of everything that took part (``unknown`` where a tool did not say)."""

    lbbench: str
    git_sha: str | None = None
    python: str | None = None
    locust: str | None = None
    docker_engine: str | None = None
    compose: str | None = None
    image: str | None = None
    base_image: str | None = None
    haproxy_image: str | None = None
    """the image whose haproxy ran the LB processes (lb.haproxy.image, or the node image)"""
    haproxy: str | None = None
    keepalived: str | None = None


class Machine(Model):
    """The machine the run ran on."""

    hostname: str | None = None
    """the host name (`bench compare`/`gate` flag baseline and candidate from different machines)"""
    cpus: int | None = None
    kernel: str | None = None


class DuetSide(Model):
    """This run is one side of a duet (`bench gate --run`, `bench compare --run`)."""

    side: str
    """baseline or candidate"""
    folder: str
    """the duet folder (its duet.json and gate.json)"""


class LabInfo(Model):
    """The run's lab: its compose project, VIP, subnets and services (filled in as the lab comes up)."""

    project: str
    vip: str | None = None
    client_subnet: str | None = None
    server_subnet: str | None = None
    services: list[str] | None = None
    haproxy_running: dict[str, str] | None = None
    """service -> the version its own `show info` reported once the lab was up"""


class HAProxyBuildInfo(Model):
    """The HAProxy build of the LB processes: `haproxy -vv` of its image, parsed (bench.images.HAProxyBuild)."""

    image: str
    image_id: str
    version: str
    version_line: str
    target: str | None = None
    options: str | None = None
    features: list[str] | None = None
    tls_library: str | None = None
    lua: str | None = None
    vv: str
    """the whole `haproxy -vv` output"""


class LoadWindow(Model):
    """When the load ran (epoch seconds); ``end`` is null while it runs."""

    start: float
    end: float | None = None


class FitLimit(Model):
    """One resource the load needs: what it needs of it, what the machine has."""

    name: str
    need: Number
    have: Number
    detail: str
    fits: bool


class LoadFit(Model):
    """What bench/load/fit.py checked before the run."""

    scale: Number | None
    max_scale: Number | None
    processes: int
    limits: list[FitLimit]
    binding: str | None


class LoadWorkers(Model):
    """``--workers``: the Locust worker containers."""

    count: int
    processes: int
    image: str | None


class LiveViewInfo(Model):
    """How the run was watched (bench/live): the view's mode and its thread's CPU."""

    mode: str
    """panel, lines or quiet"""
    cpu_s: Number


class Integrity(Model):
    """The lab changed under the run (bench/collect/integrity.py): what, and the one line that says it."""

    problems: list[dict[str, Any]]
    """the ``integrity`` events of events.jsonl"""
    headline: str | None = None


class RunDoc(Document):
    """``run.json`` of a run directory."""

    FILE: ClassVar[str] = RUN_JSON
    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    id: str
    status: RunStatus
    scenario: dict[str, Any] = Field(default_factory=dict)
    """the resolved scenario as bench.spec.Scenario dumps it (its own schema: `bench schema scenario`)"""
    scenario_file: str | None = None
    topology: dict[str, Any] = Field(default_factory=dict)
    """the resolved topology without its variants (bench.spec.Topology; `bench schema topology`)"""
    variant: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    """everything applied on top of the topology file: the scenario's overrides, the variant's, --set"""
    config_diff: str | None = None
    versions: Versions | None = None
    machine: Machine | None = None
    lab: LabInfo | None = None
    load_window: LoadWindow | None = None
    load_pid: int | None = None
    scale: Number | None = None
    load_fit: LoadFit | None = None
    load_workers: LoadWorkers | None = None
    duet: DuetSide | None = None
    live_view: LiveViewInfo | None = None
    integrity: Integrity | None = None
    haproxy_build: HAProxyBuildInfo | None = None
    started_at: str | None = None
    ended_at: str | None = None


def read_run(run_dir: Path) -> RunDoc:
    """``run.json`` of ``run_dir``, migrated to the current version (one line when it cannot be read)."""
    return read_document(RunDoc, RunDir(run_dir).run_json)
