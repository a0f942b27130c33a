"""`bench up` / `bench down` / `bench status`: labs by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import engine, images
from .spec import load_topology
from .topology import lab as labmod
from .topology.lab import Lab, LabFiles


def lab_up(topology: str = "split", variant: str | None = None, sets: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring a lab up and leave it running; returns what `bench status` shows about it."""
    topo, overrides = load_topology(topology, variant, sets)
    engine.client()
    ref = images.ensure_images(topo.image, log=log)
    lab = Lab(topo, ref.node_tag, variant, log=log)
    try:
        lab.prepare()
        lab.up()
    except BaseException:
        lab.down()
        raise
    assert lab.plan is not None and lab.tls is not None
    info = {
        "project": lab.project,
        "topology": topo.name,
        "variant": variant,
        "overrides": overrides,
        "vip": lab.plan.vip,
        "ca": str(lab.files.configs / "tls" / "ca.pem"),
        "client_subnet": lab.plan.client_subnet,
        "server_subnet": lab.plan.server_subnet,
        "nodes": [n.name for n in lab.plan.nodes],
        "image": ref.node_tag,
    }
    (lab.files.root / "lab.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def lab_down(project: str | None) -> tuple[int, int]:
    """Tear down one lab, or every lbbench leftover when ``project`` is None."""
    if project is None:
        return labmod.down_all()
    counts = labmod.remove_by_label(f"{labmod.render.LABEL_RUN}={project}")
    import shutil

    shutil.rmtree(LabFiles.for_project(project).root, ignore_errors=True)
    return counts


def vip_holder(project: str, vip: str) -> str | None:
    """Which LB node of ``project`` currently holds ``vip`` (None when nobody does)."""
    label = f"{labmod.render.LABEL_RUN}={project}"
    for c in engine.client().containers.list(filters={"label": label}):
        if c.labels.get(labmod.render.LABEL_ROLE) != "keepalived":
            continue
        code, out = c.exec_run(["ip", "-o", "-4", "addr", "show"])
        if code == 0 and f" {vip}/" in out.decode(errors="replace"):
            return c.labels.get(labmod.render.LABEL_NODE)
    return None


def lab_status() -> dict[str, dict[str, Any]]:
    """Every lab: containers, VIP and VIP holder."""
    out: dict[str, dict[str, Any]] = {}
    for project, containers in labmod.list_labs().items():
        info: dict[str, Any] = {"containers": containers}
        state = LabFiles.for_project(project).root / "lab.json"
        if state.exists():
            info.update(json.loads(state.read_text()))
            info["vip_holder"] = vip_holder(project, info["vip"])
        out[project] = info
    return out
