"""Planted limits, each named by the bottleneck verdict, and the latency decomposition of a known answer.

Each test plants one kind of limit in a short, low-rate run (one lab each) and
checks that the verdict names it with its knob. The port limit is planted in
test_port_exhaustion.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import run_scenario

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, name: str, body: str, extends: str = "smoke") -> dict:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"extends: {extends}\nname: test-{name}\n{body}")
    out = run_scenario(str(path), out=tmp_path / name, log=lambda _m: None)
    return json.loads((out / "summary.json").read_text())


def _reached(summary: dict) -> list[tuple[str, str]]:
    return [(x["component"], x["limit"]) for x in summary["bottleneck"]["limits"] if x["reached"]]


def test_known_answer_50ms_servers_decompose_and_the_clients_pool_is_the_limit(node_image: str, tmp_path: Path) -> None:
    # the shipped scenario, shorter: two users in a closed loop against servers that answer after 50 ms, every request traced
    s = _run(tmp_path, "known-answer", "duration: 8s\nramp_up: 2s\n", extends="latency")
    dec = s["decomposition"]
    assert dec["requests"] >= 100 and dec["requests"] == dec["traced"], dec  # every traced request found at every hop
    assert dec["requested_delay_ms"] == 50.0
    # the servers waited at least what was asked (their own clock), the client saw at least that
    assert dec["served_delay_ms"]["p50"] >= 50.0 and s["latency_ms"]["p50"] >= 50.0
    # the hops' medians add up to the client's median (each request's hops add up to its latency exactly)
    assert abs(dec["sum_p50_diff_ms"]) < 1.0, dec
    assert dec["termination"]["frontend"] == {"--": dec["requests"]}
    assert dec["dropped_logs"] == 0
    # nothing else limited two users: their pool did (or the shared host, which then says the pool was full too)
    assert ("client-pool", "users") in _reached(s)
    assert s["bottleneck"]["component"] in ("client-pool", "contended")
    assert "raise load.users (now 2)" in s["bottleneck"]["verdict"] or "client's pool was full" in s["bottleneck"]["verdict"]


def test_a_small_server_pool_is_named_with_its_queue(node_image: str, tmp_path: Path) -> None:
    # 1 connection per server and backend process (3 servers x 2 processes = 6), 30 users, 20 ms responses
    s = _run(
        tmp_path,
        "pool",
        """duration: 6s
ramp_up: 2s
overrides: {lb: {nodes: 1}, servers: {maxconn: 1}}
load: {engine: lean, model: keep-alive, users: 30, spawn_rate: 30, path: "/?size=128&delay_ms=20", trace_every: 10}
""",
    )
    b = s["bottleneck"]
    assert (b["component"], b["limit"]) == ("server-pool", "pool"), b["verdict"]
    assert "raise servers.maxconn (now 1)" in b["verdict"] and "queued" in b["verdict"]
    # the clients wait because of it: ranked after it
    assert _reached(s)[0] == ("server-pool", "pool")
    # the queue shows in the decomposition too
    assert s["decomposition"]["hops_ms"]["queue"]["p50"] > 0


def test_a_cpu_starved_frontend_is_named(node_image: str, tmp_path: Path) -> None:
    # the frontend may use a twentieth of one core
    s = _run(
        tmp_path,
        "starved",
        """duration: 6s
ramp_up: 2s
overrides: {lb: {nodes: 1, frontend: {cpus: "0", cpu_limit: 0.05}}}
load: {engine: lean, model: keep-alive, users: 10, spawn_rate: 10, path: "/?size=128"}
""",
    )
    b = s["bottleneck"]
    assert (b["component"], b["limit"]) == ("frontend", "cpu"), b["verdict"]
    assert "of the 0.05 core(s) it may use" in b["verdict"] and "cpu_limit 0.05" in b["verdict"]
