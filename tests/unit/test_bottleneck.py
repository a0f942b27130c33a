"""Every kind of limit the bottleneck names, on synthetic samples with a known answer."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from bench.analysis import bottleneck, haproxy

T0 = 1_800_000_000.0
WINDOW = (T0, T0 + 10.0)
RUN: dict[str, Any] = {
    "machine": {"cpus": 2},
    "scenario": {"load": {"processes": 1, "model": "keep-alive", "users": 200, "think_time": 0}},
    "topology": {
        "lb": {"frontend": {"nbthread": 1, "maxconn": 8000}, "backend": {"nbthread": 1, "processes": 2, "maxconn": 8000}},
        "servers": {"nbthread": 1, "count": 3, "maxconn": 2},
    },
}


def container(role: str, mean: float) -> dict[str, Any]:
    return {"role": role, "node": "lb-a", "mean_pct": None, "max_pct": None, "total_mean_pct": mean, "total_max_pct": mean}


def quiet_cpu(**extra: dict[str, Any]) -> dict[str, Any]:
    return {"host_mean_pct": 40.0, "host_per_core_pct": [40.0, 40.0], "by_container": {"lb-a-frontend": container("frontend", 20.0), **extra}}


def stat_rows(scur: float, slim: float, qcur: float, qtime: float) -> pd.DataFrame:
    """show stat of one backend process over 10 s: three servers at ``scur`` of ``slim``, ``qcur`` queued."""
    rows = []
    for i in range(11):
        t = T0 + i
        for srv in ("srv1", "srv2", "srv3"):
            rows.append({"t": t, "node": "lb-a", "service": "lb-a-backend1", "kind": "backend", "pxname": "servers", "svname": srv, "type": 2,
                         "scur": scur, "slim": slim, "qcur": 0.0, "stot": 100.0 * i, "qtime": None, "ctime": None, "rtime": None, "ttime": None})  # fmt: skip
        rows.append({"t": t, "node": "lb-a", "service": "lb-a-backend1", "kind": "backend", "pxname": "servers", "svname": "BACKEND", "type": 1,
                     "scur": 3 * scur, "slim": None, "qcur": qcur, "stot": 300.0 * i, "qtime": qtime, "ctime": 0.0, "rtime": 20.0, "ttime": qtime + 20.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_full_server_pool_is_named_with_its_numbers_and_knob() -> None:
    pool = haproxy.server_pool(stat_rows(2.0, 2.0, 100.0, 300.0), WINDOW)
    assert pool["lb-a-backend1"]["slots"] == 6 and pool["lb-a-backend1"]["busy_mean"] == 6 and pool["lb-a-backend1"]["queue_max"] == 100
    b = bottleneck.find_bottleneck(RUN, quiet_cpu(), {}, {}, pool, {}, latency_mean_ms=386.0)
    b = bottleneck.apply_load_verdict(b, {"model": "keep-alive"}, {}, RUN, 517.0, 386.0)
    assert b["component"] == "server-pool" and b["limit"] == "pool"
    assert "6 of 6 connections busy" in b["verdict"] and "100 queued" in b["verdict"]
    assert "78% of each request's time in the queue" in b["verdict"]
    assert "raise servers.maxconn (now 2) or servers.count (now 3)" in b["verdict"]
    # the client's users are all busy too, as a consequence: ranked after the pool
    assert [x["component"] for x in b["limits"] if x["reached"]] == ["server-pool", "client-pool"]
    assert "2 limits held at once" in b["verdict"]


def test_a_pool_with_room_and_no_queue_is_no_limit() -> None:
    pool = haproxy.server_pool(stat_rows(1.0, 100.0, 0.0, 0.0), WINDOW)
    b = bottleneck.find_bottleneck(RUN, quiet_cpu(), {}, {}, pool, {})
    assert b["component"] == "none" and not b["limits"]


def test_a_cpu_starved_process_is_measured_against_its_quota() -> None:
    run = {**RUN, "topology": {**RUN["topology"], "lb": {**RUN["topology"]["lb"], "frontend": {"nbthread": 1, "cpus": "1", "cpu_limit": 0.2}}}}
    assert bottleneck.capacities(run)["frontend"] == pytest.approx(0.2)
    b = bottleneck.find_bottleneck(run, quiet_cpu(**{"lb-a-frontend": container("frontend", 19.0)}), {}, {})
    assert b["component"] == "frontend" and b["limit"] == "cpu"
    assert "95% of the 0.2 core(s) it may use" in b["verdict"] and "cpu_limit 0.2" in b["verdict"]


def test_maxconn_and_the_fd_limit() -> None:
    limits = {"lb-a-frontend": {"node": "lb-a", "kind": "frontend", "maxconn": 500, "conns_max": 499, "conns_mean": 480, "ulimit_n": 20000, "maxsock": 1010}}
    small = {**RUN, "topology": {**RUN["topology"], "lb": {**RUN["topology"]["lb"], "frontend": {"nbthread": 1, "maxconn": 500}}}}
    b = bottleneck.find_bottleneck(small, quiet_cpu(), {}, {}, {}, limits)
    assert (b["component"], b["limit"]) == ("frontend", "maxconn") and "raise lb.frontend.maxconn (now 500)" in b["verdict"]
    lowered = {"lb-a-frontend": {**limits["lb-a-frontend"], "maxconn": 4990, "conns_max": 4990}}
    b = bottleneck.find_bottleneck(RUN, quiet_cpu(), {}, {}, {}, lowered)
    assert b["limit"] == "fd" and "lowered to 4990 by the file-descriptor limit" in b["verdict"]


def test_ports_are_named_with_the_pair() -> None:
    ports = {"max_utilisation_pct": 99.5, "max_in_use": 199, "range_size": 200, "exhausted_pairs": ["lb-a 127.0.0.1 -> 127.0.0.1:8001"]}
    b = bottleneck.find_bottleneck(RUN, quiet_cpu(), {}, ports)
    assert b["component"] == "ports" and "lb-a 127.0.0.1 -> 127.0.0.1:8001 held 199 of 200" in b["verdict"]
    assert "lb.local_addresses" in b["verdict"]


def test_the_clients_pool_is_the_limit_only_when_nothing_else_is() -> None:
    run = {**RUN, "scenario": {"load": {"processes": 1, "model": "keep-alive", "users": 2, "think_time": 0}}}
    b = bottleneck.apply_load_verdict(bottleneck.find_bottleneck(run, quiet_cpu(), {}, {}), {"model": "keep-alive"}, {}, run, 95.0, 20.5)
    assert (b["component"], b["limit"]) == ("client-pool", "users")
    assert "2 users, 1.9 of them waiting for a response" in b["verdict"] and "raise load.users (now 2)" in b["verdict"]
    # the same loop on a host at 90 %: more users would not have helped
    busy = {**quiet_cpu(), "host_mean_pct": 90.0}
    b = bottleneck.apply_load_verdict(bottleneck.find_bottleneck(run, busy, {}, {}), {"model": "keep-alive"}, {}, run, 95.0, 20.5)
    assert b["component"] == "contended" and "client's pool was full too" in b["verdict"]
    # think time leaves users idle: not the limit
    thinking = {**run, "scenario": {"load": {"processes": 1, "model": "keep-alive", "users": 20, "think_time": 1.0}}}
    b = bottleneck.apply_load_verdict(bottleneck.find_bottleneck(thinking, quiet_cpu(), {}, {}), {"model": "keep-alive"}, {}, thinking, 19.0, 20.5)
    assert b["component"] == "none"


def test_a_rate_model_whose_sends_wait_for_a_connection_is_pool_bound() -> None:
    run = {**RUN, "scenario": {"load": {"processes": 1, "model": "open", "users": 10}}}
    load = {"model": "open", "limited_by": "pool", "pacing": {"due": 1000, "waited": 300, "waited_pct": 30.0}}
    b = bottleneck.apply_load_verdict(bottleneck.find_bottleneck(run, quiet_cpu(), {}, {}), load, {}, run, 700.0, 14.0)
    assert b["component"] == "client-pool" and "300 of 1000 sends (30%) found every one of the 10 connections busy" in b["verdict"]


def test_the_load_generator_outranks_everything_and_contention_is_said() -> None:
    cpu = {"host_mean_pct": 92.0, "host_per_core_pct": [92.0, 92.0], "by_container": {"loadgen": container("loadgen", 99.0), "lb-a-frontend": container("frontend", 95.0)}}
    b = bottleneck.find_bottleneck(RUN, cpu, {}, {})
    assert b["component"] == "loadgen" and b["saturated"] == ["loadgen", "frontend"]
    assert "the figures measure the load generator" in b["verdict"] and "then frontend (cpu, lb-a-frontend)" in b["verdict"]
    assert "Contended: the host's cores were 92% busy" in b["verdict"]
    behind = bottleneck.apply_load_verdict(bottleneck.find_bottleneck(RUN, quiet_cpu(), {}, {}), {"limited_by": "loadgen", "verdict": "open: 60 of 100 req/s"}, {}, RUN)
    assert (behind["component"], behind["limit"]) == ("loadgen", "schedule") and "60 of 100 req/s" in behind["verdict"]


@pytest.mark.parametrize(("host", "component"), [(79.9, "none"), (80.0, "contended")])
def test_contended_from_80_percent(host: float, component: str) -> None:
    b = bottleneck.find_bottleneck(RUN, {**quiet_cpu(), "host_mean_pct": host}, {}, {})
    assert b["component"] == component
