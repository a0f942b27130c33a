"""Run the capacity sweep: one lab per phase kept up across its groups, collectors sampling throughout.

For each phase of the plan (:mod:`.plan`): bring the lab up, start the collectors into
``phases/<phase>/`` (the idle window is measured first), then run each group's load
generator in turn (``phases/<phase>/groups/<group>/``, Locust with the group's stages,
its schedule starting at an agreed instant, settings ``start_at``), and tear the lab
down. ``sweep.json`` records every stage's measuring window as it goes, so an
interrupted sweep (Ctrl-C) keeps what it measured and can still be fitted.

Everything is checked before the first container starts: the scenario and its topology,
every phase's topology, every group's load against this machine (bench/load/fit.py).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__, engine, images
from ..errors import RunInterrupted, UserError
from ..load.fit import prepare_load
from ..load.runner import LocustProcess, open_start_gate, start_gate, start_locust, wait_at_gate
from ..results.capacity import SweepDoc
from ..results.document import write_document
from ..results.layout import RunDir
from ..spec import TARGET_FIELDS, Load, Scenario, Topology, deep_merge, load_scenario, load_topology
from ..topology.lab import Lab
from .plan import GO_LEAD_S, IDLE_S, LEAD_S, PLANS, READY_TIMEOUT_S, SETTLE_S, TAIL_S, Group, Phase

#: Extra seconds a group's Locust gets beyond its schedule to stop and write its files.
EXIT_GRACE = 25.0
#: Seconds after a group's last stage when the next group's Locust starts (behind its gate): past the last
#: measuring window (it ends TAIL_S before) and the collectors' next sample (every second).
NEXT_GROUP_AFTER_S = 1.0
SWEEP_JSON = "sweep.json"


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), for the record: costs are in its cores."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_record() -> dict[str, Any]:
    """The machine a sweep ran on."""
    return {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(), "cpu_model": cpu_model()}


def group_scenario(group: Group, topology_name: str, stage_s: float) -> Scenario:
    """The scenario a group runs: its load with one stage per target (a held group's first stage lasts until they are open)."""
    load = dict(group.load)
    model = load.get("model", "open")
    field = TARGET_FIELDS[model]
    durations = [group.stage_s or stage_s] * len(group.targets)
    if group.held and load.get("held"):
        held = load["held"]
        durations[0] = max(durations[0], held["connections"] / float(held.get("rate", 500.0)) + 3.0)
    load["stages"] = [{"duration": d, field: t} for d, t in zip(durations, group.targets, strict=True)]
    # at least 1 s past the last stage however Locust rounds --run-time (to whole seconds), counted from its gate
    duration = LEAD_S + sum(durations) + 1.5
    try:
        return Scenario(
            name=f"capacity-{group.name}",
            description=group.description,
            topology=topology_name,
            duration=duration,
            ramp_up=LEAD_S,
            load=Load.model_validate(load),
        )
    except Exception as exc:  # noqa: BLE001 - a plan bug (pydantic's error or ours): say which group
        raise UserError(f"capacity plan: group {group.name}: {exc}", "fix bench/capacity/plan.py") from None


def stage_windows(group: Group, scenario: Scenario, start_at: float) -> list[dict[str, Any]]:
    """Each stage of a group: its schedule and its measuring window (see :mod:`.plan`)."""
    out = []
    t = start_at
    for i, stage in enumerate(scenario.load.stages):
        end = t + stage.duration
        target = stage.target(scenario.load.target_field) or 0.0
        out.append(
            {
                "step": f"{group.name}@{target:g}",
                "target": target,
                "start": t,
                "end": end,
                "window": [t + SETTLE_S, end - TAIL_S],
                "measured": not (group.held and i == 0),
            }
        )
        t = end
    return out


def phase_topology(scenario: Scenario, phase: Phase, variant: str | None, sets: list[str]) -> Topology:
    """The topology of one phase: the scenario's, its overrides, the variant, the phase's overrides, then ``--set``."""
    topology, _ = load_topology(scenario.topology, variant, sets, deep_merge(scenario.overrides, phase.overrides), scenario.variants)
    return topology


class SweepRunner:
    """Runs one sweep into ``out`` (see the module docstring)."""

    def __init__(
        self,
        out: Path,
        scenario_name: str = "seed-peak",
        variant: str | None = None,
        sets: list[str] | None = None,
        plan: str = "full",
        stage_s: float = 10.0,
        log: Callable[[str], None] = print,
    ):
        if plan not in PLANS:
            raise UserError(f"--plan {plan}: no such sweep plan", f"use one of: {', '.join(PLANS)}")
        if not 4.0 <= stage_s <= 600.0:
            raise UserError(f"--stage-seconds {stage_s:g}: must be between 4 and 600", "for example --stage-seconds 10")
        self.out = Path(out)
        self.plan_name = plan
        self.plan = PLANS[plan]
        self.stage_s = stage_s
        self.log = log
        self.sets = list(sets or [])
        self.variant = variant
        self.scenario, _ = load_scenario(scenario_name)
        # every topology and every group's load checked before anything starts
        self.topologies = {p.name: phase_topology(self.scenario, p, variant, self.sets) for p in self.plan}
        self.prepared: dict[tuple[str, str], tuple[Scenario, dict[str, Any]]] = {}
        for phase in self.plan:
            topo = self.topologies[phase.name]
            for group in phase.groups:
                gs = group_scenario(group, self.scenario.topology, stage_s)
                gs, extra, _fit = prepare_load(gs, topo, log=lambda _m: None)
                self.prepared[(phase.name, group.name)] = (gs, extra)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise UserError(f"{self.out} already exists and is not empty", "choose another --out or remove it")
        self.doc: dict[str, Any] = {}

    def _write(self) -> None:
        write_document(SweepDoc, self.doc, self.out / SWEEP_JSON)

    def run(self) -> Path:
        """Run every phase; returns the capacity folder. Ctrl-C stops the sweep and keeps what was measured."""
        from ..run import SignalGuard

        engine.client()  # one clear line when no engine answers
        engine.compose_binary()
        flavours = {t.image for t in self.topologies.values()}
        refs = {f: images.ensure_images(f, log=self.log) for f in flavours}
        self.out.mkdir(parents=True, exist_ok=True)
        self.doc = {
            "schema_version": SweepDoc.SCHEMA_VERSION,
            "status": "running",
            "scenario": self.scenario.name,
            "variant": self.variant,
            "sets": self.sets,
            "plan": self.plan_name,
            "stage_s": self.stage_s,
            "started_at": time.time(),
            "ended_at": None,
            "versions": {"lbbench": __version__, "image": refs[next(iter(flavours))].node_tag},
            "machine": machine_record(),
            "phases": [],
            "error": None,
        }
        self._write()
        guard = SignalGuard()
        try:
            with guard:
                for phase in self.plan:
                    self._phase(phase, refs[self.topologies[phase.name].image].node_tag, guard)
            self.doc["status"] = "completed"
        except RunInterrupted as exc:
            self.doc["status"] = "interrupted"
            self.log(f"interrupted (signal {exc.signum}): the sweep stopped; what it measured is kept")
        except BaseException as exc:
            self.doc["status"] = "failed"
            self.doc["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.doc["ended_at"] = time.time()
            self._write()
        return self.out

    def _phase(self, phase: Phase, image: str, guard: Any) -> None:
        topology = self.topologies[phase.name]
        folder = self.out / "phases" / phase.name
        folder.mkdir(parents=True, exist_ok=True)
        lab = Lab(topology, image, None, log=self.log)
        record: dict[str, Any] = {
            "name": phase.name,
            "description": phase.description,
            "overrides": phase.overrides,
            "key_type": topology.tls.key_type,
            "project": lab.project,
            "folder": str(folder.relative_to(self.out)),
            "started_at": time.time(),
            "ended_at": None,
            "idle_window": None,
            "groups": [],
        }
        self.doc["phases"].append(record)
        self._write()
        collectors = None
        live: list[LocustProcess] = []  # every load generator of this phase still to stop (one at a time sends load)
        try:
            self.log(f"phase {phase.name}: {phase.description}")
            planned = lab.prepare()
            # the first group's Locust imports and forks while the lab comes up, and waits at its gate
            ahead: _Gated | None = self._start_group(phase, phase.groups[0], folder, lab, live)
            lab.up()
            if ahead is not None and lab.plan is not planned:  # the lab came up on other subnets (another VIP, CA)
                ahead.locust.stop()
                live.remove(ahead.locust)
                ahead = None
            from ..collect.collectors import Collectors

            lab.copy_public_configs(RunDir(folder).configs)
            collectors = Collectors(folder, lab, log=self.log)
            collectors.start()
            if ahead is not None:  # its imports stay out of the idle window
                self._ready(phase, ahead)
            t0 = time.time()
            time.sleep(IDLE_S)
            record["idle_window"] = [t0 + 0.5, time.time() - 0.2]
            self._write()
            for k, group in enumerate(phase.groups):
                g = ahead if ahead is not None else self._start_group(phase, group, folder, lab, live)
                ahead = None
                collectors.track_loadgen(g.locust.proc.pid)
                self._ready(phase, g)
                start_at = time.time() + GO_LEAD_S
                open_start_gate(g.gate, start_at)
                stages = stage_windows(group, g.scenario, start_at)
                grecord = {
                    "name": group.name,
                    "description": group.description,
                    "model": g.scenario.load.model,
                    "target_field": g.scenario.load.target_field,
                    "tls_share": group.tls_share,
                    "held": group.held,
                    "folder": str(g.folder.relative_to(self.out)),
                    "start_at": start_at,
                    "exit_code": None,
                    "stages": stages,
                }
                record["groups"].append(grecord)
                self._write()
                # the next group's Locust imports during this one's last seconds, past its last measuring window
                # (and the sample after it): nothing is measured then, and it waits at its gate until this one ended
                next_at = stages[-1]["end"] + NEXT_GROUP_AFTER_S
                deadline = time.monotonic() + g.scenario.duration + EXIT_GRACE
                while g.locust.wait(0.5) is None:
                    if ahead is None and k + 1 < len(phase.groups) and time.time() >= next_at:
                        ahead = self._start_group(phase, phase.groups[k + 1], folder, lab, live)
                    if time.monotonic() > deadline:
                        self.log(f"  {group.name}: locust did not stop on time; stopping it")
                        break
                grecord["exit_code"] = g.locust.stop()
                live.remove(g.locust)
                if grecord["exit_code"] != 0:
                    raise UserError(f"capacity sweep: the load generator of {phase.name}/{group.name} exited with status {grecord['exit_code']}", f"see {RunDir(g.folder).locust_log}")
                self._write()
        finally:
            with guard.shielded():
                try:
                    for locust in live:
                        locust.stop()
                    if collectors is not None:
                        collectors.stop()
                    if lab.started:
                        lab.save_logs(RunDir(folder).logs)
                finally:
                    lab.down()
                    record["ended_at"] = time.time()
                    self._write()

    def _start_group(self, phase: Phase, group: Group, folder: Path, lab: Lab, live: list[LocustProcess]) -> _Gated:
        """Start a group's Locust behind its start gate (it sends nothing before :meth:`_phase` opens it)."""
        scenario, extra = self.prepared[(phase.name, group.name)]
        gdir = folder / "groups" / group.name
        gdir.mkdir(parents=True, exist_ok=True)
        assert lab.plan is not None and lab.tls is not None
        host = f"{scenario.load.scheme}://{lab.plan.vip}"
        self.log(f"  {group.name}: {group.description}; {scenario.load.target_field} " + ", ".join(f"{t:g}" for t in group.targets))
        gate = start_gate(gdir)
        locust = start_locust(scenario, host, lab.tls.ca_pem, gdir, scenario.duration, extra={**extra, "start_gate": gate})
        live.append(locust)
        return _Gated(scenario, gdir, gate, locust)

    def _ready(self, phase: Phase, g: _Gated) -> None:
        """Wait until a group's load generator waits at its gate (a busy machine takes seconds to start Locust)."""
        problem = wait_at_gate(g.locust, g.gate, READY_TIMEOUT_S)
        if problem is not None:
            raise UserError(f"capacity sweep: the load generator of {phase.name}/{g.folder.name} did not start: {problem}", f"see {RunDir(g.folder).locust_log}")


@dataclass
class _Gated:
    """A group's Locust started behind its start gate."""

    scenario: Scenario
    folder: Path
    gate: dict[str, Any]
    locust: LocustProcess


def default_out(plan: str) -> Path:
    """``reports/capacity-<plan>-<time>``."""
    from .. import paths

    return paths.REPORTS / f"capacity-{plan}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def remove_if_empty(folder: Path) -> None:
    """Drop a capacity folder a sweep that never started left behind."""
    if folder.is_dir() and not any((folder / "phases").glob("*/samples")):
        shutil.rmtree(folder, ignore_errors=True)
