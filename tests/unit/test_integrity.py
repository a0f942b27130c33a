"""The lab-integrity watch (bench/collect/integrity.py) and its summary section, without Docker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.analysis.integrity import integrity_summary, mark_invalid
from bench.collect.integrity import SETTLE_S, LabWatch, fault_windows, headline
from bench.results.events import EventLog

NODES = [SimpleNamespace(name="lb-a", services=["lb-a", "lb-a-keepalived", "lb-a-frontend", "lb-a-backend1"])]
SERVICES = [*NODES[0].services, "srv1", "srv2"]


def fake_lab() -> Any:
    return SimpleNamespace(project="lbbench-test", plan=SimpleNamespace(services=SERVICES, nodes=NODES))


class FakeStream:
    """Docker's event stream: yields the given events, then blocks until closed (or ends: ``then='end'``)."""

    def __init__(self, events: list[dict[str, Any]], then: str = "block"):
        self.events = events
        self.then = then
        self.closed = threading.Event()

    def __iter__(self):
        yield from self.events
        if self.then == "block":
            self.closed.wait(10)
        else:
            raise ConnectionError("stream broke")

    def close(self) -> None:
        self.closed.set()


class FakeClient:
    def __init__(self, events: list[dict[str, Any]] | None = None, alive: bool = True, statuses: dict[str, str] | None = None):
        self._events = events or []
        self.alive = alive
        self.statuses = statuses or {}
        self.streams: list[FakeStream] = []

    def ping(self) -> bool:
        if not self.alive:
            raise ConnectionError("engine gone")
        return True

    @property
    def containers(self) -> Any:
        statuses = self.statuses

        def list_(**_kw: Any) -> list[Any]:
            if not self.alive:
                raise ConnectionError("engine gone")
            # as docker-py's sparse list: the list's own fields in attrs (labels under "Labels"), status from "State"
            return [SimpleNamespace(attrs={"Labels": {"com.docker.compose.service": s}}, status=statuses.get(s, "running")) for s in SERVICES]

        return SimpleNamespace(list=list_)

    def events(self, **_kw: Any) -> FakeStream:
        if not self.alive:
            raise ConnectionError("engine gone")
        stream = FakeStream(self._events, then="block")
        self._events = []
        self.streams.append(stream)
        return stream


def docker_event(action: str, service: str, t: float, **attrs: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "time": int(t),
        "timeNano": int(t * 1e9),
        "Actor": {"Attributes": {"com.docker.compose.service": service, **attrs}},
    }


def watch_for(tmp_path: Path, client: FakeClient, lines: list[str] | None = None) -> LabWatch:
    log = lines if lines is not None else []
    return LabWatch(fake_lab(), EventLog(tmp_path / "events.jsonl"), log=log.append, client_factory=lambda: client, judge_after=60)


def integrity_events(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines() if '"integrity"' in line]


def test_an_unplanned_exit_is_a_problem_with_its_time(tmp_path: Path) -> None:
    t = time.time() + 0.5
    client = FakeClient([docker_event("die", "srv1", t, exitCode="137")])
    lines: list[str] = []
    w = watch_for(tmp_path, client, lines)
    w.start()
    w.t0 = t - 14.2
    time.sleep(0.2)
    problems = w.stop()
    assert [p.name for p in problems] == ["container-exited"]
    assert problems[0].subject == "srv1" and problems[0].t == pytest.approx(t)
    assert "srv1 exited (code 137) at +14.2 s" in problems[0].message
    assert integrity_events(tmp_path)[0]["name"] == "container-exited"
    assert any(line.startswith("LAB CHANGED: srv1 exited") for line in lines)


def test_a_planned_fault_explains_its_container_events(tmp_path: Path) -> None:
    t = time.time() + 0.5
    events = EventLog(tmp_path / "events.jsonl")
    # the injector writes the fault once done, after Docker already reported the kill
    client = FakeClient([docker_event("die", "srv1", t + 0.01, exitCode="137"), docker_event("start", "srv1", t + 3.0)])
    w = LabWatch(fake_lab(), events, log=lambda _m: None, client_factory=lambda: client, judge_after=60)
    w.start()
    time.sleep(0.2)
    events.write({"t": t, "done_at": t + 0.001, "kind": "fault", "name": "server-kill", "id": 1, "node": None, "services": ["srv1"]})
    events.write({"t": t + 2.9, "done_at": t + 3.1, "kind": "recovery", "name": "server-kill", "id": 1, "node": None, "services": ["srv1"]})
    assert w.stop() == []


def test_a_fault_on_one_service_does_not_excuse_another(tmp_path: Path) -> None:
    t = time.time() + 0.5
    events = EventLog(tmp_path / "events.jsonl")
    events.write({"t": t, "done_at": t, "kind": "fault", "name": "server-kill", "id": 1, "node": None, "services": ["srv1"]})
    client = FakeClient([docker_event("die", "srv2", t + 0.1, exitCode="0")])
    w = LabWatch(fake_lab(), events, log=lambda _m: None, client_factory=lambda: client, judge_after=60)
    w.start()
    time.sleep(0.2)
    assert [p.subject for p in w.stop()] == ["srv2"]


def test_containers_changing_together_are_one_problem(tmp_path: Path) -> None:
    t = time.time() + 0.5
    client = FakeClient([docker_event("pause", s, t + 0.01 * i) for i, s in enumerate(NODES[0].services)])
    w = watch_for(tmp_path, client)
    w.start()
    time.sleep(0.2)
    problems = w.stop()
    assert len(problems) == 1 and problems[0].name == "container-paused"
    assert "4 containers" in problems[0].message


def test_the_engine_going_away_is_one_problem_and_leads_the_headline(tmp_path: Path) -> None:
    client = FakeClient()
    w = watch_for(tmp_path, client)
    w.start()
    time.sleep(0.1)
    client.alive = False
    client.streams[0].close()  # the stream ends as the engine stops
    time.sleep(0.3)
    w.sources_lost(time.time(), {"haproxy srv1": "ConnectionRefusedError", "cpu srv1": "FileNotFoundError"})
    problems = w.stop()
    assert [p.name for p in problems] == ["engine-lost", "collector-lost"]
    assert w.engine_lost_seen
    assert headline([p.event() for p in problems]).startswith("the Docker engine went away")


def test_a_container_not_running_at_the_start_is_a_problem(tmp_path: Path) -> None:
    w = watch_for(tmp_path, FakeClient(statuses={"srv2": "exited"}))
    w.start()
    assert [(p.name, p.subject) for p in w.stop()] == [("container-exited", "srv2")]


def test_vip_moves_count_only_outside_vip_faults(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.jsonl")
    w = LabWatch(fake_lab(), events, log=lambda _m: None, client_factory=FakeClient, judge_after=60)
    w.start()
    t = time.time()
    events.write({"t": t + 1, "done_at": t + 1, "kind": "fault", "name": "crash", "id": 1, "node": "lb-a", "services": NODES[0].services})
    events.write({"t": t + 20, "done_at": t + 21, "kind": "recovery", "name": "crash", "id": 1, "node": "lb-a", "services": NODES[0].services})
    w.vip_sample(t, ["lb-a"])
    w.vip_sample(t + 4, ["lb-b"])  # the crash moved it
    w.vip_sample(t + 23, ["lb-a"])  # failback after the recovery, within the settle time
    w.vip_sample(t + 60, ["lb-b"])  # nobody asked for this one
    problems = w.stop()
    assert [p.name for p in problems] == ["vip-moved"]
    assert problems[0].t == t + 60 and "from lb-a to lb-b" in problems[0].message


def test_lost_sources_of_one_tick_are_one_problem_and_faulted_ones_are_planned(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.jsonl")
    t = time.time()
    events.write({"t": t, "done_at": t, "kind": "fault", "name": "backend-kill", "id": 1, "node": "lb-a", "services": ["lb-a-backend1"]})
    w = LabWatch(fake_lab(), events, log=lambda _m: None, client_factory=FakeClient, judge_after=60)
    w.start()
    w.sources_lost(t + 0.5, {"haproxy lb-a-backend1": "ConnectionRefusedError", "cpu lb-a-backend1": "FileNotFoundError"})
    w.sources_lost(t + 0.6, {f"haproxy srv{i}": "ConnectionRefusedError" for i in (1, 2)} | {"cpu host": "OSError"})
    problems = w.stop()
    assert len(problems) == 1
    assert problems[0].name == "collector-lost" and "3 source(s)" in problems[0].message


def test_fault_windows_pair_faults_with_recoveries() -> None:
    evs = [
        {"t": 10.0, "done_at": 10.1, "kind": "fault", "name": "freeze", "id": 1, "node": "lb-a", "services": ["lb-a"]},
        {"t": 15.0, "done_at": 15.4, "kind": "recovery", "name": "freeze", "id": 1, "node": "lb-a", "services": ["lb-a"]},
        {"t": 20.0, "done_at": 20.0, "kind": "fault", "name": "server-kill", "id": 2, "node": None, "services": ["srv1"]},
        {"t": 1.0, "kind": "phase", "name": "load"},
    ]
    w = fault_windows(evs, {"lb-a": NODES[0].services})
    assert [(x.kind, x.start, x.end) for x in w] == [("freeze", 10.0, 15.4), ("server-kill", 20.0, None)]
    assert w[0].moves_vip and not w[1].moves_vip
    assert "lb-a-frontend" in w[0].services  # a node-wide fault covers every container of the node
    assert w[0].covers("lb-a-frontend", 19.0) and not w[0].covers("lb-a-frontend", 15.4 + SETTLE_S + 0.1)
    assert w[1].covers("srv1", 1e12) and not w[1].covers("srv2", 21.0)


def test_summary_marks_what_reaches_past_the_change_invalid() -> None:
    events = [
        {"t": 100.0, "kind": "phase", "name": "load"},
        {"t": 114.2, "kind": "integrity", "name": "container-exited", "subject": "srv1", "message": "srv1 exited (code 137) at +14.2 s"},
    ]
    integ = integrity_summary(events, 100.0)
    assert integ["ok"] is False and integ["invalid_from_s"] == pytest.approx(14.2)
    assert integ["problems"][0]["message"].startswith("srv1 exited") and integ["headline"].startswith("srv1 exited")
    summary = {
        "window": {"start": 102.0, "end": 129.0},
        "bottleneck": {"component": "none", "verdict": "x", "evidence": []},
        "checks": [{"name": "requests", "ok": True, "note": "n"}],
        "failover": {"events": [{"injected_at": 105.0, "window_s": 5.0}, {"injected_at": 112.0, "window_s": 5.0}]},
    }
    mark_invalid(summary, integ)
    assert summary["bottleneck"]["valid"] is False and summary["checks"][0]["valid"] is False
    assert [e["valid"] for e in summary["failover"]["events"]] == [True, False]
    clean = integrity_summary(events[:1], 100.0)
    assert clean == {"ok": True, "problems": [], "invalid_from": None, "invalid_from_s": None, "headline": None}
    summary2 = {"window": {"end": 129.0}, "bottleneck": {"evidence": []}, "checks": [{"name": "r", "note": ""}]}
    mark_invalid(summary2, clean)
    assert summary2["bottleneck"]["valid"] is True and summary2["checks"][0]["valid"] is True
