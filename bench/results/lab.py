"""``lab.json``: what `bench status`, `bench fault` and `bench down` need of a running lab.

Written by :meth:`bench.topology.lab.Lab.write_state` into the lab's private state
folder (``LBBENCH_STATE/<project>/lab.json``), never into a run directory.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .document import Document
from .layout import LAB_JSON


class LabState(Document):
    """``lab.json`` of a running lab."""

    FILE: ClassVar[str] = LAB_JSON
    SCHEMA_VERSION: ClassVar[int] = 1
    MISSING_FIX: ClassVar[str] = "`bench status` lists running labs"

    schema_version: int = 1
    project: str
    topology: str
    topology_spec: dict[str, Any]
    """the topology the lab runs, as bench.spec.Topology dumps it (to attach to the lab again)"""
    variant: str | None = None
    vip: str
    ca: str
    """the CA certificate a client trusts to talk to the VIP"""
    client_subnet: str
    server_subnet: str
    nodes: list[str]
    image: str
    haproxy_image: str | None = None
    """the image whose haproxy runs the LB processes (lb.haproxy.image, or the node image)"""
    server_name: str | None = None
    """the name a user's own certificate carries (clients send it as SNI); null with the run's own CA"""
    events: str
    """where `bench fault` writes its events: the run's events.jsonl while `bench run` runs, else the state folder's"""
    run_dir: str | None = None
    """the run directory while `bench run` runs the lab"""
