"""The checks before a run: every problem at once, nothing started.

``bench validate`` calls :func:`preflight` and prints what it checked; ``bench
run`` calls the same function before it creates its run directory or starts any
container of the lab, and runs the lab :func:`preflight` prepared. What is
checked, in order (a later check runs only when what it needs passed):

1. the scenario and its topology (every field, ``--variant``, ``--set``; the
   closest field name for a misspelt one), the fault cycle of ``--repeat``;
2. the fit: the load on this machine (``--scale``, processes, limits);
3. the engine, Compose and the images: the node image (built when missing),
   the user's HAProxy build (``lb.haproxy.image``: pulled when missing, its
   ``haproxy -vv``, TLS and Lua where the configs need them), the load-generator
   image with ``--workers``;
4. the user's files and the rendered configs (sections named, what lbbench
   needs), then every config with ``haproxy -c`` of the build that will run it
   and ``keepalived -t``.

Problems are gathered into one :class:`~bench.errors.Problems`; the only
containers started are the config checks' (labelled, removed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import engine, images
from .errors import Problems, UserError
from .inputs import check_output_dir
from .load.fit import Fit, prepare_load
from .spec import Scenario, Topology, Variant, load_scenario, load_topology, read_scenario_yaml, relname, scenario_file, scenario_topology
from .topology.lab import Lab

Problem = tuple[str, str | None]

#: Subnets a lab is rendered on when it is only validated (no network is created).
VALIDATE_SUBNETS = ("198.18.254.0/24", "198.18.255.0/24")


def _problems(exc: UserError) -> list[Problem]:
    return list(exc.problems) if isinstance(exc, Problems) else [(exc.problem, exc.fix)]


@dataclass
class LabCheck:
    """What :func:`check_lab` found out about a topology's lab."""

    topology: Topology
    node_image: images.ImageRef | None = None
    build: images.HAProxyBuild | None = None  # the HAProxy build that runs the LB processes
    lab: Lab | None = None  # prepared (configs rendered), configs checked
    configs_checked: int = 0
    problems: list[Problem] = field(default_factory=list)


def check_lab(
    topology: Topology,
    variant: str | None = None,
    log: Callable[[str], None] = print,
    subnets: tuple[str, str] | None = None,
    with_engine: bool = True,
    owner_kind: str = "run",
) -> LabCheck:
    """Engine, images, the user's HAProxy build and files, rendered configs and their checks; problems gathered, not raised.

    ``subnets`` renders on those instead of allocating free ones (validation
    only). The returned lab is prepared (its private files exist): start it with
    ``lab.up(validated=True)`` or drop it with ``lab.discard()``. ``owner_kind`` as :class:`~bench.topology.lab.Lab` takes it.
    """
    out = LabCheck(topology)
    engine_ok = with_engine
    if with_engine:
        try:
            engine.client()
            engine.compose_binary()
        except UserError as exc:
            out.problems += _problems(exc)
            engine_ok = False
    if engine_ok:
        try:
            out.node_image = images.ensure_images(topology.image, log=log)
        except UserError as exc:
            out.problems += _problems(exc)
    node_tag = out.node_image.node_tag if out.node_image else f"lbbench/node:{topology.image}-unbuilt"
    lab = Lab(topology, node_tag, variant, log=log, owner_kind=owner_kind)
    try:
        _check_prepared(lab, out, engine_ok, subnets, log)
    except BaseException:
        lab.discard()  # Ctrl-C or a bug: never leave the private files (TLS key) behind
        raise
    return out


def _check_prepared(lab: Lab, out: LabCheck, engine_ok: bool, subnets: tuple[str, str] | None, log: Callable[[str], None]) -> None:
    if engine_ok and out.node_image:
        try:
            out.build = images.haproxy_build(lab.haproxy_image, log=log)
        except UserError as exc:
            out.problems += _problems(exc)
    try:
        lab.prepare(subnets or (None if engine_ok else VALIDATE_SUBNETS))
    except UserError as exc:
        out.problems += _problems(exc)
        lab.discard()
        return
    out.lab = lab
    if out.build is not None:
        lb_configs = {f: (lab.files.configs / f).read_text() for f in lab.config_files() if f.startswith("lb-") and f.endswith(".cfg")}
        out.problems += images.build_problems(out.build, lb_configs)
    if engine_ok and out.build is not None and not out.problems:
        out.problems += lab.check_configs()
        out.configs_checked = len(lab.config_files())


@dataclass
class Checked:
    """Everything a run needs, checked (see :func:`preflight`)."""

    scenario: Scenario
    scenario_path: Path
    variant: str | None
    topology: Topology
    overrides: dict[str, Any]
    base_topology: Topology
    load_extra: dict[str, Any]
    load_fit: Fit
    lab_check: LabCheck
    worker_image: str | None = None

    @property
    def lab(self) -> Lab:
        assert self.lab_check.lab is not None
        return self.lab_check.lab


def preflight(
    name: str,
    duration: str | None = None,
    variant: str | None = None,
    sets: list[str] | None = None,
    extra_variants: dict[str, Variant] | None = None,
    repeat: int = 1,
    scale: float | None = None,
    workers: int = 0,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    for_run: bool = True,
    with_engine: bool = True,
    render_to: Path | None = None,
) -> Checked:
    """Check everything ``bench run`` needs, gathering every problem; raise :class:`~bench.errors.Problems` if any.

    With ``for_run`` the lab is prepared on free subnets and kept (the caller
    starts it with ``lab.up(validated=True)`` or discards it); otherwise it is
    rendered on fixed subnets and its private files are removed before returning.
    Without ``with_engine`` nothing needing Docker is checked (images, ``haproxy -c``).
    ``render_to`` receives a copy of the rendered configs (public parts), even when problems were found.
    """
    problems: list[Problem] = []
    scenario, scenario_path = load_scenario_or_problems(name, duration, problems)
    if out is not None:
        try:
            check_output_dir(out)
        except UserError as exc:
            problems += _problems(exc)
    topology = overrides = base_topology = None
    if scenario is not None:
        if extra_variants:
            scenario = scenario.model_copy(update={"variants": {**scenario.variants, **extra_variants}})
        try:
            scenario = scenario.with_repeats(repeat)
        except UserError as exc:
            problems += _problems(exc)
        variant = variant or scenario.variant
        try:
            topology, overrides = scenario_topology(scenario, variant, sets)
            base_topology, _ = load_topology(scenario.topology)
        except UserError as exc:
            problems += _problems(exc)
            if variant and "no variant named" in exc.problem:
                known = scenario
                _without_variant(lambda: scenario_topology(known, None, sets), problems)
    elif scenario_path is not None:
        topology = _topology_of_raw(scenario_path, variant, sets, problems)
    load_extra: dict[str, Any] = {}
    load_fit: Fit | None = None
    if scenario is not None and topology is not None:
        try:
            scenario, load_extra, load_fit = prepare_load(scenario, topology, scale=scale, workers=workers, log=log)
        except UserError as exc:
            problems += _problems(exc)
    lab_check: LabCheck | None = None
    worker_image = None
    if topology is not None:
        lab_check = check_lab(topology, variant, log=log, subnets=None if for_run else VALIDATE_SUBNETS, with_engine=with_engine)
        problems += lab_check.problems
    try:
        if topology is not None and lab_check is not None and workers and lab_check.node_image is not None:
            from .load.workers import ensure_image as ensure_worker_image

            try:
                worker_image = ensure_worker_image(topology.image, log=log)
            except UserError as exc:
                problems += _problems(exc)
        if render_to is not None and lab_check is not None and lab_check.lab is not None:
            lab_check.lab.copy_public_configs(render_to)
    finally:
        if lab_check is not None and lab_check.lab is not None and (problems or not for_run or sys.exc_info()[0]):
            lab_check.lab.discard()
    if problems:
        raise Problems(_unique(problems), f"scenario {name}" + (f" (variant {variant})" if variant else ""))
    assert scenario is not None and scenario_path is not None and topology is not None and lab_check is not None
    assert overrides is not None and base_topology is not None and load_fit is not None
    return Checked(scenario, scenario_path, variant, topology, overrides, base_topology, load_extra, load_fit, lab_check, worker_image)


def load_scenario_or_problems(name: str, duration: str | None, problems: list[Problem]) -> tuple[Scenario | None, Path | None]:
    """The scenario, or None with its problems added (the path is still returned when the file was found)."""
    try:
        scenario, path = load_scenario(name, duration)
        return scenario, path
    except UserError as exc:
        problems += _problems(exc)
    return None, scenario_file(name)


def _topology_of_raw(path: Path, variant: str | None, sets: list[str] | None, problems: list[Problem]) -> Topology | None:
    """A broken scenario's topology (its ``topology``, ``overrides`` and variants as far as they read), for its own problems."""
    try:
        raw = read_scenario_yaml(path)
    except UserError:
        return None
    name = raw.get("topology", "split")
    base = raw.get("overrides") if isinstance(raw.get("overrides"), dict) else {}
    declared: dict[str, Variant] = {}
    for key, body in (raw.get("variants") or {}).items() if isinstance(raw.get("variants"), dict) else ():
        try:
            declared[str(key)] = Variant.model_validate(body or {})
        except ValueError:
            continue
    if not isinstance(name, str):
        return None
    try:
        topology, _ = load_topology(name, variant or raw.get("variant"), sets, base, declared)
    except UserError as exc:
        problems += _problems(exc)
        if "no variant named" in exc.problem:
            _without_variant(lambda: load_topology(name, None, sets, base, declared), problems)
        return None
    return topology


def _without_variant(load: Callable[[], Any], problems: list[Problem]) -> None:
    """After an unknown variant: the topology without it, for the other problems (of ``--set`` ...)."""
    try:
        load()
    except UserError as exc:
        problems += _problems(exc)


def _unique(problems: list[Problem]) -> list[Problem]:
    out: list[Problem] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out


def describe(checked: Checked) -> list[str]:
    """What :func:`preflight` checked, one line each (``bench validate`` prints them)."""
    from .load.runner import describe_load

    topo, check = checked.topology, checked.lab_check
    cfg = topo.lb.haproxy
    fit = checked.load_fit
    scaled = f", scale {fit.scale:g} of at most {fit.max_scale:g}" if fit.scale is not None and fit.max_scale is not None else ""
    lines = [
        (
            f"scenario {checked.scenario.name} ({relname(checked.scenario_path)}), variant {checked.variant or 'base'}, "
            f"topology {topo.name}: layout {topo.lb.layout}, {topo.lb.nodes} node(s)"
        ),
        f"load: {describe_load(checked.scenario)}, {checked.scenario.duration:g}s; fits this machine ({fit.processes} load process(es){scaled})",
    ]
    if check.build is not None:
        b = check.build
        lines.append(
            f"HAProxy build: {b.version} from {b.image} ({b.image_id[7:19]}), target {b.target or '?'}, "
            f"{b.openssl or 'no TLS library'}, {b.lua or 'no Lua'}"
        )
    parts = []
    for role in ("all", "frontend", "backend", "monolith"):
        r = getattr(cfg, role)
        parts += [f"{len(v)} line(s) in {role}.{section}" for section, v in r.lines.items()]
        parts += [f"sections for {role}"] if r.sections.strip() else []
        parts += [f"template for {role}: {relname(Path(r.template))}"] if r.template else []
    if cfg.files:
        parts.append(f"file(s) {', '.join(Path(f).name for f in cfg.files)}")
    if cfg.image:
        parts.append(f"HAProxy image {cfg.image}")
    if topo.tls.own_certificate:
        parts.append(f"own certificate for {check.lab.server_name if check.lab else topo.tls.server_name}")
    if parts:
        lines.append("your configuration: " + ", ".join(parts))
    if check.configs_checked:
        remembered = " (the same configs passed before: not checked again)" if check.lab is not None and check.lab.check_remembered else ""
        lines.append(f"{check.configs_checked} rendered configs accepted by haproxy -c / keepalived -t{remembered}")
    else:
        lines.append("rendered configs: what lbbench needs is there; haproxy -c / keepalived -t not run (--offline)")
    return lines
