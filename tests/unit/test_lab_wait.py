"""The wait for a starting lab asks the engine for one sparse list per look, and inspects only the LB nodes, once.

Docker is not needed: the lab is rendered for real (configs, TLS, compose file); the engine
answers the container list as told and counts what it was asked.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import engine, paths
from bench.errors import UserError
from bench.spec import load_topology
from bench.topology import render
from bench.topology.lab import Lab


class Engine:
    """Answers ``api.containers`` with the lab's services in ``states`` and counts every call."""

    def __init__(self, lab: Lab, states: dict[str, str]):
        self.lab = lab
        self.states = states
        self.lists = 0
        self.inspected: list[str] = []
        self.api = SimpleNamespace(containers=self._list)
        self.containers = SimpleNamespace(get=self._get, list=lambda **_kw: [])

    def _list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:  # noqa: A002 - docker-py's name
        assert all and filters == {"label": f"{render.LABEL_RUN}={self.lab.project}"}
        self.lists += 1
        return [{"Id": f"id-{service}", "State": state, "Labels": {"com.docker.compose.service": service}} for service, state in self.states.items()]

    def _get(self, cid: str) -> Any:
        self.inspected.append(cid)
        # pid 0: no namespace to watch or read, so the wait goes on until its timeout
        return SimpleNamespace(id=cid, status="running", attrs={"State": {"Pid": 0}}, logs=lambda tail: b"haproxy: cannot bind\nexit")


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    topo, _ = load_topology("split", None, [])
    out = Lab(topo, "lbbench/node:test", log=lambda _m: None, ready_timeout=1.2)
    out.prepare(("198.18.10.0/24", "198.18.11.0/24"))
    return out


def test_the_wait_lists_sparsely_and_inspects_only_the_lb_nodes_once(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lab.plan is not None
    fake = Engine(lab, dict.fromkeys(lab.plan.services, "running"))
    monkeypatch.setattr(engine, "client", lambda: fake)
    with pytest.raises(UserError, match="lab not ready after"):
        lab.wait_ready()  # no stats socket ever answers here
    assert sorted(fake.inspected) == sorted(f"id-{node.name}" for node in lab.plan.nodes), "each LB node inspected once, nothing else"
    assert 2 <= fake.lists <= 4, "one list every CONTAINERS_EVERY_S (0.5 s) over the 1.2 s wait"


def test_a_container_that_exited_while_starting_is_named_with_its_log(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lab.plan is not None
    states = dict.fromkeys(lab.plan.services, "running")
    victim = lab.plan.servers[0].name
    states[victim] = "exited"
    monkeypatch.setattr(engine, "client", lambda: Engine(lab, states))
    with pytest.raises(UserError, match=rf"container {victim} exited while starting: haproxy: cannot bind \| exit"):
        lab.wait_ready()
