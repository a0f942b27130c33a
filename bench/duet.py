"""Duet runs: the baseline lab and the candidate lab up at once, driven by one schedule, cut into paired slices.

On a shared, noisy machine two runs measured one after the other differ by
whatever the machine did in between (repeats of one configuration here varied by
up to 55 % in throughput). A duet (Bulej et al., ICPE 2020) measures both at the
same time instead:

1. Both labs come up side by side (two compose projects, two lab subnets),
   from the same images unless a side asks for another.
2. One open-model schedule at one fixed offered load drives both: each side has
   its own Locust, and both start their schedule at the same agreed moment
   (``start_at`` in the load settings), so the intended send times of the two
   sides are the same instants. Whatever disturbs the machine in a second
   disturbs both.
3. After a warm-up the time is cut into slices (:data:`SLICE_S` each). Every
   slice gives each side's figures from the same window (:mod:`bench.slices`):
   the load balancer's CPU per request (and per handshake, per MB), latency
   p50/p99 from the intended send time, errors. Slice i of the baseline and slice
   i of the candidate form a pair.
4. The caller looks at the pairs as they come (``look``) and stops the duet as
   soon as it has decided, or when the budget is spent.

The offered load is ``--rate`` or, by default (``auto``), 60 % of the highest
rate both labs held at once in a short find-max (:func:`probe`, dpbench's "safe
operating area"): steps growing by 1.5x from 50/s, 3 s each, both sides at once;
a step holds when neither side's load generator fell behind, errors stayed under
1 % and p99 under 100 ms (bench/load/findmax.py's criteria).

Fair sharing of the cores: both sides run the same containers with Docker's
default equal CPU shares (and their Locust processes in load-generator cgroups
of equal shares), so neither side is favoured by the scheduler; nothing is
pinned (pinning each side to its own core would make their disturbances
independent, which is what a duet avoids). The side that starts first is drawn
at random.

Every side is a complete run directory (run.json, samples, summary.json): `bench
report` and `bench compare` read them like any other run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import engine, images, paths
from .collect.collectors import Collectors
from .collect.integrity import LabWatch, headline
from .errors import Problems, RunInterrupted, UserError
from .load.fit import prepare_load
from .load.runner import LocustProcess, describe_load, open_start_gate, start_gate, start_locust, wait_at_gate
from .preflight import VALIDATE_SUBNETS, LabCheck, check_lab
from .results.document import write_document
from .results.duet import DUET_JSON as DUET_FILE
from .results.duet import DuetDoc
from .results.duet import read_duet as read_duet_doc
from .results.events import EventLog
from .results.layout import RunDir
from .results.run import RunDoc
from .spec import Scenario, Topology, load_scenario, load_topology, scenario_topology
from .topology.lab import Lab, free_subnet_pairs

if TYPE_CHECKING:
    from .run import Teardown

SIDES = ("baseline", "candidate")
#: Default length of one slice.
SLICE_S = 5.0
#: Default warm-up before the first slice (connections open, caches warm).
WARMUP_S = 10.0
#: Default budget of slice time.
BUDGET_S = 240.0
#: Seconds between starting the Locusts and the agreed start of the schedule (processes forked and connected):
#: the probe's, and a half-duet's Locust before its --start-at (it covers its start on a busy machine).
START_LEAD_S = 4.0
#: Seconds between the go and the agreed start once both sides' Locusts wait at their start gates (every process
#: up): each sees the go within 10 ms, its controller sends the schedule, its processes acknowledge it.
GO_LEAD_S = 1.0
#: Seconds a side's Locust may take to reach its start gate (its imports and forks; seconds on a busy machine).
READY_TIMEOUT_S = 60.0
#: How long after a slice ends its samples are on disk (collectors and Locust flush every second).
FLUSH_SLACK_S = 2.5
#: How long a side whose Locust exited waits for its lab watch to report a change before blaming Locust.
LOCUST_EXIT_GRACE_S = 2.0
#: Extra run time Locust gets beyond the planned end (it is stopped as soon as the duet ends).
RUN_TIME_MARGIN_S = 30.0
#: ``--rate auto``: a short find-max on both sides at once (steps of PROBE_STEP_S growing by PROBE_GROWTH
#: from PROBE_START, in the scenario's unit), then the duet runs at PROBE_FRACTION of the highest step both held.
PROBE_START = 50.0
PROBE_GROWTH = 1.5
PROBE_STEPS = 10
PROBE_STEP_S = 3.0
PROBE_SETTLE_S = 1.0
PROBE_FRACTION = 0.6
#: What a probe step must hold on both sides (the find-max criteria of bench/load/findmax.py).
PROBE_P99_MS = 100.0
PROBE_ERROR_PCT = 1.0


@dataclass
class SideSpec:
    """What one side runs: another scenario (name or file), a variant, ``--set`` overrides."""

    scenario: str | None = None
    variant: str | None = None
    sets: list[str] = field(default_factory=list)


@dataclass
class Side:
    """One side of a duet, validated (no container yet)."""

    name: str
    scenario: Scenario
    scenario_path: Path
    topology: Topology
    base_topology: Topology
    variant: str | None
    overrides: dict[str, Any]
    load_extra: dict[str, Any]
    fit: Any
    run_dir: Path
    run: dict[str, Any] = field(default_factory=dict)
    lab: Lab | None = None
    collectors: Collectors | None = None
    locust: LocustProcess | None = None
    events: EventLog | None = None
    lab_check: LabCheck | None = None  # what bench.preflight.check_lab found (the HAProxy build ...)
    watch: LabWatch | None = None
    gate: dict[str, Any] | None = None  # its Locust's start gate (bench.load.runner.start_gate)


@dataclass
class Design:
    """When the slices are: the agreed start, warm-up, slice length, how many at most, and the load."""

    slice_s: float
    warmup_s: float
    planned: int
    start_at: float | None = None
    rate: float | None = None  # None: found by the probe (--rate auto)
    sharing: str = ""  # how the two sides share the cores (stated in duet.json and the gate's notes)

    def edges(self, n: int) -> list[float]:
        """Edges (epoch seconds) of the first ``n`` slices."""
        assert self.start_at is not None
        first = self.start_at + self.warmup_s
        return [first + i * self.slice_s for i in range(n + 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice_s": self.slice_s, "warmup_s": self.warmup_s, "planned": self.planned,
            "start_at": self.start_at, "rate": self.rate, "sharing": self.sharing,
        }  # fmt: skip


def _constant_rate(scenario: Scenario, rate: float | None, where: str) -> Scenario:
    """The scenario with its rate model's target fixed (``rate``), or one clear line why it cannot be a duet."""
    load = scenario.load
    if not load.is_rate:
        raise UserError(
            f"{where}: scenario {scenario.name} uses the closed {load.model} model; a duet needs a fixed offered load",
            "use a rate model (model: open, connection-rate or handshake-rate), e.g. the `open` scenario",
        )
    if load.stages or load.find_max is not None:
        raise UserError(f"{where}: scenario {scenario.name} changes its target over time (stages/find_max)", "use a constant target; --rate sets it")
    if scenario.faults:
        raise UserError(f"{where}: scenario {scenario.name} injects faults", "gate on a scenario without faults (faults are for `bench run`)")
    update: dict[str, Any] = {}
    if rate is not None:
        update[load.target_field] = rate
    if load.processes == "auto":
        update["processes"] = 1  # two sides share the machine: one sending process each unless told otherwise
    if update:
        scenario = scenario.model_copy(update={"load": load.model_copy(update=update)})
    if not getattr(scenario.load, scenario.load.target_field):
        raise UserError(f"{where}: scenario {scenario.name} has no {load.target_field}", "give one with --rate")
    return scenario


def prepare_side(name: str, default_scenario: str, spec: SideSpec, out: Path, rate: float | None, seconds: float, warmup_s: float, log: Callable[[str], None]) -> Side:
    """Validate one side (scenario, topology, load fit) without starting anything.

    ``rate`` None (auto): the load is checked at the probe's highest step, which the duet may reach.
    """
    scenario, scenario_path = load_scenario(spec.scenario or default_scenario, None)
    scenario = _constant_rate(scenario, rate if rate is not None else probe_targets()[-1], f"the {name}")
    scenario = scenario.model_copy(update={"duration": seconds, "ramp_up": warmup_s})
    variant = spec.variant or scenario.variant
    topology, overrides = scenario_topology(scenario, variant, list(spec.sets))
    scenario, load_extra, fit = prepare_load(scenario, topology, log=log)
    base_topology, _ = load_topology(scenario.topology)
    # images, the user's HAProxy build, files and certificate, every config checked: the lab checks of `bench run`
    checked = check_lab(topology, variant, log=log, subnets=VALIDATE_SUBNETS)
    if checked.lab is not None:
        checked.lab.discard()  # rendered on other subnets; run_duet prepares each side's lab afresh
    side = Side(name, scenario, scenario_path, topology, base_topology, variant, overrides, load_extra, fit, out / name)
    side.lab_check = checked
    return side


def plan_duet(
    scenario: str,
    baseline: SideSpec,
    candidate: SideSpec,
    out: Path | None = None,
    rate: float | None = None,
    slice_s: float = SLICE_S,
    warmup_s: float = WARMUP_S,
    budget_s: float = BUDGET_S,
    log: Callable[[str], None] = print,
    side: str | None = None,
    start_at: float | None = None,
) -> tuple[list[Side], Design, Path]:
    """Everything checked before any container starts: both sides, the slice design, the output folder.

    ``side`` (``baseline`` or ``candidate``) runs only that side (half of a duet
    whose other half runs on another machine, :func:`join_halves`); ``start_at``
    (epoch seconds) is then the instant both machines start their schedules.
    """
    if side is not None and side not in SIDES:
        raise UserError(f"--side {side!r}: expected baseline or candidate", "for example --side candidate")
    if (side is None) != (start_at is None):
        raise UserError("--side and --start-at go together (half of a duet on each machine)", "give both, or neither")
    if side is not None and rate is None:
        raise UserError("--side needs --rate: both halves must offer the same load", "for example --rate 400 on both machines")
    if start_at is not None and start_at < time.time() + 60:
        raise UserError(
            f"--start-at {dt.datetime.fromtimestamp(start_at).isoformat(timespec='seconds')}: less than a minute from now",
            "give both machines an instant at least a minute ahead (their labs come up first)",
        )
    if not 1.0 <= slice_s <= 60.0:
        raise UserError(f"--slice {slice_s:g}s: must be between 1s and 60s", "use for example --slice 5s")
    if warmup_s < 0 or warmup_s > 300:
        raise UserError(f"--warmup {warmup_s:g}s: must be between 0s and 300s", "use for example --warmup 10s")
    if rate is not None and not rate > 0:
        raise UserError(f"--rate {rate:g}: must be above 0", "for example --rate 400")
    planned = int(budget_s // slice_s)
    if planned < 6:
        raise UserError(f"--budget {budget_s:g}s holds only {planned} slices of {slice_s:g}s", "give at least 6 slices, e.g. --budget 2m")
    if budget_s > 3600:
        raise UserError(f"--budget {budget_s:g}s: at most 1h", "use for example --budget 10m")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = Path(out) if out else paths.REPORTS / f"gate-{Path(scenario).stem}-{stamp}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} already exists and is not empty", "choose another --out or remove it")
    seconds = START_LEAD_S + warmup_s + budget_s + RUN_TIME_MARGIN_S
    sides = [prepare_side(n, scenario, s, target, rate, seconds, warmup_s, log) for n, s in zip(SIDES, (baseline, candidate), strict=True)]
    # the lab checks of both sides (images, the user's config, build and files, haproxy -c) at once
    found: dict[tuple[str, str | None], list[str]] = {}
    for each in sides:  # not `side`: that is the half to run
        for problem in each.lab_check.problems if each.lab_check is not None else []:
            found.setdefault(problem, []).append(each.name)
    if found:
        raise Problems([(f"{' and '.join(names)}: {p}", f) for (p, f), names in found.items()], "the duet")
    b, c = (s.scenario.load for s in sides)
    if b.target_field != c.target_field:
        raise UserError(
            f"the sides use different load models ({b.model} vs {c.model})",
            "a duet compares the load balancers at the same load: give both sides the same load model",
        )
    if side is not None:
        sides = [s for s in sides if s.name == side]
        sharing = f"half of a duet: only the {side} runs on this machine"
    else:
        sharing = core_sharing([s.topology for s in sides])
    return sides, Design(slice_s, warmup_s, planned, start_at=start_at, rate=rate, sharing=sharing), target


def core_sharing(topologies: list[Topology]) -> str:
    """How the two sides share the machine's cores, in one line (both sides run alike; nothing of ours pins)."""
    pinned = sorted(
        {f"{name} {proc.cpus}" for t in topologies for name, proc in (("frontend", t.lb.frontend), ("backend", t.lb.backend)) if proc.cpus}
    )
    if pinned:
        return "the HAProxy processes pinned as each side's topology says (" + "; ".join(pinned) + "); everything else shares the cores with equal CPU weights"
    return "nothing pinned: every container with Docker's default (equal) CPU shares, each side's load generator in a cgroup of equal shares"


def _write_duet(out: Path, doc: dict[str, Any]) -> None:
    write_document(DuetDoc, doc, Path(out) / DUET_FILE)


def read_duet(out: Path) -> dict[str, Any]:
    """The ``duet.json`` of a duet folder as a dict (one clear line when it is not one)."""
    return read_duet_doc(out).model_dump(mode="json")


def run_duet(
    sides: list[Side],
    design: Design,
    out: Path,
    look: Callable[[int], bool],
    looks: list[int],
    log: Callable[[str], None] = print,
    seed: int | None = None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run both sides at once; after ``looks[k]`` slices call ``look(n)``, stop when it returns True.

    ``history`` (a list the ``look`` callback appends to) is kept in duet.json as ``looks``.

    Returns the duet document (also written to ``out/duet.json``): the design,
    the slices measured, both run directories, the order the sides started in,
    and the status (``completed`` or ``interrupted``).
    """
    from .report import build_report
    from .run import SignalGuard, _now, record_lab, run_record

    client = engine.client()
    engine.compose_binary()
    refs = {s.name: images.ensure_images(s.topology.image, log=log) for s in sides}
    rng = random.Random(seed)
    order = list(sides)
    rng.shuffle(order)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "schema_version": DuetDoc.SCHEMA_VERSION,
        "status": "starting",
        "design": design.to_dict(),
        "sides": {s.name: str(s.run_dir.relative_to(out)) for s in sides},
        "start_order": [s.name for s in order],
        "slices": 0,
        "looks": history if history is not None else [],
        "started_at": _now(),
    }
    _write_duet(out, doc)
    for s in sides:
        s.run_dir.mkdir(parents=True)
        s.lab = Lab(s.topology, refs[s.name].node_tag, s.variant, log=log)
        build = s.lab_check.build if s.lab_check is not None else None
        run_id = f"{s.scenario.name}-{s.variant or 'base'}-{s.name}-{stamp}"
        s.run = run_record(run_id, s.scenario, s.scenario_path, s.topology, s.variant, s.overrides, refs[s.name], s.fit, client, lab=s.lab, build=build)
        s.run["duet"] = {"side": s.name, "folder": str(out)}
        write_document(RunDoc, s.run, RunDir(s.run_dir).run_json)
    guard = SignalGuard()
    load_started = False
    n_done = 0
    downs: list[Teardown] = []  # each lab's logs and `compose down`, going on while the reports are built
    try:
        with guard:
            try:
                with ThreadPoolExecutor(max_workers=2) as pool:
                    for s in order:
                        assert s.lab is not None
                        build = s.lab_check.build if s.lab_check is not None else None
                        s.run["versions"].update(images.versions(refs[s.name].node_tag))
                        if build is not None:
                            s.run["versions"]["haproxy"] = build.version_line  # the LB's build, not the node image's
                        s.run["lab"] = {"project": s.lab.project}
                        write_document(RunDoc, s.run, RunDir(s.run_dir).run_json)
                    planned = _prepare_labs(order)
                    if design.rate is not None and design.start_at is None:
                        # each side's Locust imports and forks while the labs come up, and waits at its gate
                        for s in order:
                            s.scenario = _with_target(s.scenario, design.rate)
                            _start_gated(s)
                    # both labs come up at once (each retries on subnets another lab took meanwhile)
                    for fut in [pool.submit(s.lab.up) for s in order if s.lab is not None]:
                        fut.result()
                for s in order:
                    assert s.lab is not None
                    if s.locust is not None and s.lab.plan is not planned[s.name]:
                        # its lab came up on other subnets (another VIP and CA): that Locust never passed its gate
                        s.locust.stop()
                        s.locust = s.gate = None
                    record_lab(s.run, s.lab, s.run_dir, s.base_topology, s.topology)
                    s.events = EventLog(RunDir(s.run_dir).events)
                    s.lab.write_state(events=str(RunDir(s.run_dir).events), run_dir=str(s.run_dir))
                    # a container that dies or a VIP that moves on either side makes the duet not comparable
                    s.watch = LabWatch(s.lab, s.events, log=functools.partial(_side_log, log, s.name), advert_int=s.topology.keepalived.advert_int)
                    s.watch.start()
                    s.collectors = Collectors(s.run_dir, s.lab, log=log)
                    s.collectors.watch = s.watch
                    s.collectors.start()
                    if s.locust is not None:
                        s.collectors.track_loadgen(s.locust.proc.pid)
                if design.rate is None:
                    doc["probe"] = probe(sides, out, log)
                    design.rate = float(doc["probe"]["rate"])
                for s in sides:
                    s.scenario = _with_target(s.scenario, design.rate)
                    s.run["scenario"] = s.scenario.model_dump(mode="json")
                if design.start_at is not None:
                    log(f"waiting for the agreed start at {dt.datetime.fromtimestamp(design.start_at).isoformat(timespec='seconds')}")
                    while time.time() < design.start_at - START_LEAD_S:
                        time.sleep(0.5)
                for s in order:
                    assert s.lab is not None and s.lab.plan is not None and s.collectors is not None
                    log(f"{s.name}: {describe_load(s.scenario)} against {s.scenario.load.scheme}://{s.lab.plan.vip}")
                    if s.locust is None:  # not started ahead: the probe set the rate, a half-duet's start is far, or new subnets
                        _start_gated(s)
                        assert s.locust is not None
                        s.collectors.track_loadgen(s.locust.proc.pid)
                if design.start_at is None:
                    # the agreed start comes once both sides' Locusts are up (a lead fixed in advance was too
                    # short on a busy machine or wasted seconds on a quiet one)
                    for s in order:
                        assert s.locust is not None and s.gate is not None
                        problem = wait_at_gate(s.locust, s.gate, READY_TIMEOUT_S)
                        if problem is not None:
                            raise UserError(f"{s.name}: the load generator did not start: {problem}", f"see {RunDir(s.run_dir).locust_log}")
                    design.start_at = time.time() + GO_LEAD_S
                doc["design"] = design.to_dict()
                for s in sides:
                    if s.watch is not None:
                        s.watch.t0 = design.start_at
                # the go: both schedules start at the agreed instant (a half-duet's Locust passes its gate once up)
                for s in order:
                    assert s.locust is not None and s.gate is not None
                    open_start_gate(s.gate, design.start_at)
                    s.locust.started_at = time.time()
                for s in order:
                    assert s.locust is not None
                    s.run["load_window"] = {"start": s.locust.started_at, "end": None}
                    s.run["load_pid"] = s.locust.proc.pid
                    s.run["status"] = "running"
                    write_document(RunDoc, s.run, RunDir(s.run_dir).run_json)
                    assert s.events is not None  # made with the lab, above
                    s.events.phase("load", t=s.locust.started_at)
                    s.events.phase("steady", t=design.start_at + design.warmup_s)
                load_started = True
                doc["status"] = "running"
                _write_duet(out, doc)
                log(
                    f"duet: slices of {design.slice_s:g}s after {design.warmup_s:g}s of warm-up, "
                    f"looks at {', '.join(str(n) for n in looks)} slices (at most {design.planned})"
                )
                for n in looks:
                    due = design.start_at + design.warmup_s + n * design.slice_s + FLUSH_SLACK_S
                    changed = _changed(sides)
                    while time.time() < due and not changed:
                        _check_locusts(sides)
                        time.sleep(min(0.5, max(due - time.time(), 0.0)))
                        changed = _changed(sides)
                    if changed:
                        # no slice after a lab changed is the lab's: stop now, not at the next look
                        log(f"duet: stopping: the lab of the {' and '.join(changed)} changed (see above); the duet is not comparable")
                        break
                    n_done = n
                    doc["slices"] = n
                    stop = look(n)
                    _write_duet(out, doc)
                    if stop:
                        break
                for s in sides:
                    s.run["status"] = "completed"
                doc["status"] = "completed"
            except RunInterrupted as exc:
                log(f"interrupted (signal {exc.signum}): stopping both sides; slices so far are kept")
                doc["status"] = "interrupted"
                for s in sides:
                    s.run["status"] = "interrupted"
            finally:
                with guard.shielded():
                    downs = _teardown(sides, log)
    except BaseException:
        try:
            if not load_started:
                _join(downs, raise_error=False)  # their logs go into the folder removed here
                shutil.rmtree(out, ignore_errors=True)
            else:
                doc["status"] = doc["status"] if doc["status"] == "interrupted" else "failed"
                _finish(sides, doc, out, n_done, _now(), build_report, log)
        finally:
            _join(downs, raise_error=False)
        raise
    try:
        _finish(sides, doc, out, n_done, _now(), build_report, log)
    except BaseException:
        _join(downs, raise_error=False)
        raise
    _join(downs)
    return doc


def _load_extra(s: Side, start_at: float | None = None) -> dict[str, Any]:
    """A side's settings for its load processes: the fit's, the agreed start (else its gate's), the name a user's certificate carries."""
    extra = {**s.load_extra} if start_at is None else {**s.load_extra, "start_at": start_at}
    if s.lab is not None and s.lab.server_name:  # SNI and the name the clients check (bench/load/leanclient.py)
        extra["server_name"] = s.lab.server_name
    return extra


def _prepare_labs(sides: list[Side]) -> dict[str, Any]:
    """Render both labs on subnets of their own (Locust started ahead needs each VIP and CA); returns each plan.

    Both sides take different free pairs (drawn at random, like a lone lab's); another lab may still
    take one before it starts, and that side's lab then comes up on others (a new plan)."""
    taken: set[str] = set()
    plans: dict[str, Any] = {}
    for s in sides:
        assert s.lab is not None
        pairs = [(str(c), str(v)) for c, v in free_subnet_pairs() if str(c) not in taken]
        if not pairs:
            raise UserError("no free /23 left in 198.18.0.0/16 for the duet's labs", "remove leftover labs with `bench down --all` or unused Docker networks")
        plans[s.name] = s.lab.prepare(random.choice(pairs))
        taken.add(s.lab.plan.client_subnet if s.lab.plan is not None else "")
    return plans


def _start_gated(s: Side) -> None:
    """Start a side's Locust behind a start gate (its lab prepared; the gate opens at the go, with the agreed instant)."""
    assert s.lab is not None and s.lab.plan is not None and s.lab.tls is not None
    s.gate = start_gate(s.run_dir)
    host = f"{s.scenario.load.scheme}://{s.lab.plan.vip}"
    s.locust = start_locust(s.scenario, host, s.lab.tls.ca_pem, s.run_dir, s.scenario.duration, extra={**_load_extra(s), "start_gate": s.gate})


def _changed(sides: list[Side]) -> list[str]:
    """The sides whose lab changed under the duet (a container died, the VIP moved...): their watch saw it."""
    return [s.name for s in sides if s.watch is not None and s.watch.problems]


def _check_locusts(sides: list[Side], grace_s: float = LOCUST_EXIT_GRACE_S) -> None:
    """Raise if a side's Locust exited before the duet's end, unless its lab changed (then the lab change is the news).

    A Locust that exits because its lab went away (a container removed, the network gone) exits within
    moments of the change; the watch hears of it from Docker's events a little later, so a side whose
    Locust exited waits up to ``grace_s`` for its watch before the exit is reported as the cause.
    """
    for s in sides:
        assert s.locust is not None
        if s.locust.proc.poll() is None:
            continue
        until = time.monotonic() + grace_s
        while not _changed(sides) and time.monotonic() < until:
            time.sleep(0.1)
        if _changed(sides):
            return
        raise UserError(f"{s.name}: locust exited early ({s.locust.log_tail()})", f"see {RunDir(s.run_dir).locust_log}")


def _side_log(log: Callable[[str], None], side: str, message: str) -> None:
    log(f"{side}: {message}")


def _teardown(sides: list[Side], log: Callable[[str], None]) -> list[Teardown]:
    """Stop both Locusts at once, then the collectors and watches; then each lab's logs and `compose down`
    begin in the background, both labs at once (the reports need neither): :func:`_join` waits for them."""
    for s in sides:
        if s.locust is not None and s.locust.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.locust.proc.pid, signal.SIGTERM)
    for s in sides:
        if s.locust is not None:
            code = s.locust.stop()
            if s.run.get("load_window"):  # (none: stopped at its gate, before the go)
                s.run["load_window"]["end"] = time.time()
                if s.events is not None:
                    s.events.phase("end", t=s.run["load_window"]["end"])
            if code not in (0, -15, None):
                log(f"{s.name}: locust exited with status {code}: {s.locust.log_tail()}")
        if s.collectors is not None:
            s.collectors.stop()
        if s.watch is not None:  # after the last sample, before the teardown
            problems = [p.event() for p in s.watch.stop()]
            if problems:
                s.run["integrity"] = {"problems": problems, "headline": headline(problems)}
                if s.run.get("status") in ("completed", "running"):
                    s.run["status"] = "invalid"
    from .run import Teardown

    downs = [Teardown(s.lab, None, RunDir(s.run_dir)) for s in sides if s.lab is not None]
    for down in downs:
        down.go()
    return downs


def _join(downs: list[Teardown], raise_error: bool = True) -> None:
    """Wait until every lab of the duet is down (always all of them); then raise the first failure, if asked."""
    for down in downs:
        down.join(raise_error=False)
    failed = [down for down in downs if down.error is not None]
    if failed and raise_error:
        failed[0].join()  # raises its one line (the thread has ended: nothing more is waited for)


def _finish(sides: list[Side], doc: dict[str, Any], out: Path, n: int, ended: str, build_report: Callable[[Path], Any], log: Callable[[str], None]) -> None:
    for s in sides:
        if s.run.get("status") == "running":
            s.run["status"] = "failed"
        s.run["ended_at"] = ended
        if s.run:
            write_document(RunDoc, s.run, RunDir(s.run_dir).run_json)
    if doc.get("status") != "interrupted" and any(s.run.get("status") == "invalid" for s in sides):
        doc["status"] = "invalid"
    doc["slices"] = n
    doc["ended_at"] = ended
    _write_duet(out, doc)
    for s in sides:
        if RunDir(s.run_dir).run_json.exists():
            try:
                build_report(s.run_dir)
            except Exception as exc:  # noqa: BLE001 - the slices are what the gate needs
                log(f"{s.name}: could not build the report: {exc}")


def probe_targets() -> list[float]:
    """The probe's step targets (per side, in the scenario's unit).

    >>> [round(t) for t in probe_targets()][:4]
    [50, 75, 112, 169]
    """
    return [PROBE_START * PROBE_GROWTH**k for k in range(PROBE_STEPS)]


def _with_target(scenario: Scenario, target: float | None, stages: list[Any] | None = None) -> Scenario:
    load = scenario.load
    return scenario.model_copy(update={"load": load.model_copy(update={load.target_field: target, "stages": stages or []})})


def probe(sides: list[Side], out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """``--rate auto``: a short find-max on both labs at once; returns the steps, the highest both held, and the rate.

    Both sides get the same stepped schedule at the same instant (their Locusts
    write into ``out/probe/<side>``, not into the run directories, so the runs'
    summaries cover only the duet's own load). A step holds when it holds on both
    sides (:func:`bench.load.findmax.judge`).
    """
    from .load.findmax import Bounds, judge
    from .spec import Stage

    targets = probe_targets()
    field = sides[0].scenario.load.target_field
    stages = [Stage.model_validate({"duration": PROBE_STEP_S, field: t}) for t in targets]
    start_at = time.time() + START_LEAD_S
    length = PROBE_STEP_S * len(targets)
    locusts = []
    try:
        for s in sides:
            assert s.lab is not None and s.lab.plan is not None and s.lab.tls is not None and s.collectors is not None
            folder = out / "probe" / s.name
            folder.mkdir(parents=True, exist_ok=True)
            scenario = _with_target(s.scenario, None, stages).model_copy(update={"duration": START_LEAD_S + length + 2.0})
            host = f"{scenario.load.scheme}://{s.lab.plan.vip}"
            loc = start_locust(scenario, host, s.lab.tls.ca_pem, folder, scenario.duration, extra=_load_extra(s, start_at))
            s.collectors.track_loadgen(loc.proc.pid)
            locusts.append(loc)
        log(f"probe (--rate auto): {len(targets)} steps of {PROBE_STEP_S:g}s from {targets[0]:g} to {targets[-1]:.0f} {field}, both sides at once")
        while time.time() < start_at + length + FLUSH_SLACK_S:
            time.sleep(0.25)
    finally:
        for loc in locusts:
            loc.stop()
    bounds = Bounds(p99_ms=PROBE_P99_MS, error_pct=PROBE_ERROR_PCT)
    steps = []
    best = None
    by_side: dict[str, float | None] = {s.name: None for s in sides}
    failed: set[str] = set()
    for k, target in enumerate(targets):
        window = (start_at + k * PROBE_STEP_S + PROBE_SETTLE_S, start_at + (k + 1) * PROBE_STEP_S)
        verdicts = {}
        for s in sides:
            verdicts[s.name] = judge(_probe_step(out / "probe" / s.name, target, window), bounds)
            if verdicts[s.name][0] == "pass" and s.name not in failed:
                by_side[s.name] = target
            elif verdicts[s.name][0] != "pass":
                failed.add(s.name)
        held = all(v == "pass" for v, _ in verdicts.values())
        steps.append({"target": target, "held": held, **{n: f"{v}: {why}" for n, (v, why) in verdicts.items()}})
        if held and len(failed) == 0:
            best = target
        if len(failed) == len(sides):
            break
    if best is None:
        raise UserError(
            f"the probe found no rate both labs held, not even {targets[0]:g} {field} ({steps[0]['baseline']}; {steps[0]['candidate']})",
            "give the load with --rate, or free the machine",
        )
    rate = round(PROBE_FRACTION * best, 1)
    log(f"probe: both labs held {best:.0f} {field}; the duet runs at {PROBE_FRACTION:.0%} of it: {rate:g} {field}")
    return {"steps": steps, "max_held": best, "max_held_by_side": by_side, "fraction": PROBE_FRACTION, "rate": rate}


def _probe_step(folder: Path, target: float, window: tuple[float, float]) -> Any:
    """One probe step of one side, from its Locust's pacing and request samples."""
    import numpy as np

    from .load.findmax import StepResult
    from .results.store import read_table

    a, b = window
    r = StepResult(target=target, seconds=b - a)
    pacing = read_table(folder, "pacing", ("t", "due", "sent", "late", "dropped", "waited"))
    if not pacing.empty:
        rows = pacing[(pacing["t"] >= math.floor(a)) & (pacing["t"] < b)]
        r.seconds = float(rows["t"].nunique()) or r.seconds
        for col in ("due", "sent", "late", "dropped", "waited"):
            setattr(r, col, int(rows[col].sum()))
    req = read_table(folder, "requests", ("intended_t", "error", "latency_corrected_ms"))
    if not req.empty:
        inside = req[(req["intended_t"] >= math.floor(a)) & (req["intended_t"] < b)]
        ok = inside[inside["error"] == ""]
        r.done = len(inside)
        r.errors = int(len(inside) - len(ok))
        r.histogram.add_many(np.asarray(ok["latency_corrected_ms"], dtype=float))
    return r


def join_halves(folders: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """Two half-duet folders (``--side``, one per machine) as one duet: the document and each side's run directory.

    Their designs must agree (the same start instant, warm-up, slice length and
    rate); the slices are those both halves measured.
    """
    docs = [read_duet(f) for f in folders]
    sides: dict[str, Path] = {}
    for f, d in zip(folders, docs, strict=True):
        for name, rel in d["sides"].items():
            if name in sides:
                raise UserError(f"{f}: a second {name} (the halves must be one baseline and one candidate)", "pass the baseline's folder and the candidate's")
            sides[name] = Path(f) / rel
    if set(sides) != set(SIDES):
        raise UserError(f"the folders hold {', '.join(sorted(sides))}, not one baseline and one candidate", "pass the baseline's folder and the candidate's")
    keys = ("start_at", "warmup_s", "slice_s", "rate")
    first = docs[0]["design"]
    for f, d in zip(folders[1:], docs[1:], strict=True):
        differ = [k for k in keys if d["design"].get(k) != first.get(k)]
        if differ:
            raise UserError(
                f"{f}: its {differ[0]} ({d['design'].get(differ[0])}) is not the other half's ({first.get(differ[0])})",
                "run both halves with the same --start-at, --warmup, --slice and --rate",
            )
    joined = {
        **docs[0],
        "sides": {name: str(path.resolve()) for name, path in sides.items()},
        "slices": min(int(d.get("slices") or 0) for d in docs),
        "status": "invalid" if any(d["status"] == "invalid" for d in docs) else "completed" if all(d["status"] == "completed" for d in docs) else "interrupted",
        "design": {**first, "sharing": "two machines, one side each (" + ", ".join(str(f) for f in folders) + ")"},
        "looks": [],
    }
    return joined, sides


def planned_looks(planned: int, first: int, every: int) -> list[int]:
    """Slice counts at which a sequential duet looks: ``first``, then every ``every``, the last at ``planned``.

    >>> planned_looks(48, 12, 12)
    [12, 24, 36, 48]
    >>> planned_looks(50, 12, 12)
    [12, 24, 36, 50]
    """
    first = min(max(first, 1), planned)
    out = list(range(first, planned + 1, max(every, 1)))
    if out[-1] != planned:
        if planned - out[-1] < max(every, 1) / 2 and len(out) > 1:
            out[-1] = planned
        else:
            out.append(planned)
    return out


def slices_between(design: dict[str, Any], n: int) -> list[float]:
    """Slice edges from a duet document's design."""
    start = float(design["start_at"]) + float(design["warmup_s"])
    return [start + i * float(design["slice_s"]) for i in range(n + 1)]


__all__ = [
    "BUDGET_S", "DUET_FILE", "SLICE_S", "WARMUP_S", "Design", "Side", "SideSpec",
    "plan_duet", "planned_looks", "read_duet", "run_duet", "slices_between",
]  # fmt: skip
