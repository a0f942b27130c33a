"""`bench up` / `bench down` / `bench status`: labs by hand."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .collect.cpu import remove_loadgen_cgroups
from .errors import Problems, UserError
from .faults import FaultInjector, Injection
from .inputs import check_project
from .results.events import EventLog, read_events
from .results.layout import EVENTS_JSONL, LabDir
from .spec import load_topology
from .topology import lab as labmod
from .topology import owner
from .topology.lab import Lab, LabFiles


def lab_up(topology: str = "split", variant: str | None = None, sets: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring a lab up and leave it running; returns what `bench status` shows about it."""
    from .preflight import check_lab

    topo, overrides = load_topology(topology, variant, sets)
    checked = check_lab(topo, variant, log=log, owner_kind="up")  # images, the user's HAProxy build and files, every config checked
    if checked.problems:
        if checked.lab is not None:
            checked.lab.discard()
        raise Problems(checked.problems, f"topology {topo.name}")
    lab = checked.lab
    assert lab is not None
    try:
        lab.up(validated=True)
    except BaseException:
        lab.down()
        raise
    info = labmod.read_state(lab.project)
    info["overrides"] = overrides
    return info


def lab_down(project: str | None, force: bool = False) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """Tear down one lab, or every lbbench leftover when ``project`` is None.

    A lab of a live run (bench/topology/owner.py) is left alone unless ``force``:
    naming it is an error, ``--all`` skips it. Returns (containers, networks, skipped project -> owner).
    """
    if project is None:
        return labmod.down_all(force=force)
    check_project(project)
    root = LabFiles.for_project(project).root
    who = owner.live_run_owner(root)
    if who is not None and not force:
        raise UserError(
            f"lab {project} belongs to a live run ({owner.describe(who)})",
            "stop that run (Ctrl-C tears its lab down), or pass --force",
        )
    counts = labmod.remove_by_label(f"{labmod.render.LABEL_RUN}={project}")
    remove_loadgen_cgroups(project)
    shutil.rmtree(root, ignore_errors=True)
    return counts[0], counts[1], {}


def lab_fault(kind: str, target: str = "master", project: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Inject one fault into a running lab by hand; returns the injection (to recover with :func:`lab_recover`)."""
    project = _one_project(project)
    lab, info = Lab.attach(project, log=log)
    injector = FaultInjector(lab, EventLog(Path(info["events"])), log=log)
    _restore_ids(injector, project)
    inj = injector.inject(kind, target)
    pending = _pending(project)
    pending[str(inj.id)] = {"id": inj.id, "kind": inj.kind, "target": inj.target, "node": inj.node, "services": inj.services, "t": inj.t, "extra": inj.extra}
    _save_pending(project, pending)
    return pending[str(inj.id)]


def lab_recover(fault_id: int | None = None, project: str | None = None, log: Callable[[str], None] = print) -> list[int]:
    """Recover one injected fault (or all of them) of a running lab."""
    project = _one_project(project)
    lab, info = Lab.attach(project, log=log)
    injector = FaultInjector(lab, EventLog(Path(info["events"])), log=log)
    pending = _pending(project)
    if fault_id is not None and str(fault_id) not in pending:
        raise UserError(f"no unrecovered fault {fault_id} in {project}", f"pending: {', '.join(pending) or 'none'}")
    done = []
    for key in [str(fault_id)] if fault_id is not None else sorted(pending, key=int):
        p = pending[key]
        injector.recover(Injection(p["id"], p["kind"], p["target"], p["node"], p["services"], p["t"], p.get("extra") or {}))
        del pending[key]
        done.append(int(key))
    _save_pending(project, pending)
    return done


def _one_project(project: str | None) -> str:
    if project is not None:
        return check_project(project)
    running = [p for p in labmod.list_labs() if LabDir(LabFiles.for_project(p).root).lab_json.exists()]
    if len(running) != 1:
        raise UserError(
            f"{len(running)} labs are up ({', '.join(sorted(running)) or 'none'}): which one?",
            "pass --lab PROJECT (`bench status` lists them)",
        )
    return running[0]


def _pending_path(project: str) -> Path:
    return LabDir(LabFiles.for_project(project).root).faults_json


def _pending(project: str) -> dict[str, Any]:
    path = _pending_path(project)
    return json.loads(path.read_text()) if path.exists() else {}


def _save_pending(project: str, pending: dict[str, Any]) -> None:
    _pending_path(project).write_text(json.dumps(pending, indent=2) + "\n")


def _restore_ids(injector: FaultInjector, project: str) -> None:
    """Fault ids keep counting across `bench fault` calls on one lab."""
    events = Path(labmod.read_state(project)["events"])
    ids = [int(e["id"]) for e in read_events(events) if "id" in e] if events.name == EVENTS_JSONL else []
    injector._next_id = max(ids, default=0) + 1


def lab_status() -> dict[str, dict[str, Any]]:
    """Every lab: containers, VIP, VIP holder and who owns it (``owner``, ``owner_state``: live-run | by-hand | leftover)."""
    out: dict[str, dict[str, Any]] = {}
    for project, containers in labmod.list_labs().items():
        info: dict[str, Any] = {"containers": containers}
        root = LabFiles.for_project(project).root
        state = LabDir(root).lab_json
        if state.exists():
            try:
                lab, saved = Lab.attach(project, log=lambda _m: None)
            except (UserError, ValidationError, ValueError, KeyError) as exc:
                # another lbbench version's lab (a field this one does not know): list it, without its VIP holder
                info["state_error"] = str(exc).splitlines()[0]
            else:
                info.update(saved)
                info["vip_holder"] = ", ".join(lab.vip_holders()) or None
        who = owner.read_owner(root)
        info["owner"] = who
        info["owner_state"] = owner_state(who)
        out[project] = info
    return out


def owner_state(who: dict[str, Any] | None) -> str:
    """``live-run`` (its process runs: leave it), ``by-hand`` (`bench up`), ``leftover`` (its process is gone) or ``unknown`` (no owner recorded)."""
    if who is None:
        return "unknown"
    if who.get("kind") == "up":
        return "by-hand"
    return "live-run" if owner.alive(who) else "leftover"
