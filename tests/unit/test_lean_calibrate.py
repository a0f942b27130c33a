"""`bench calibrate`'s arithmetic and the lean fields of the scenario spec (no Docker, no timing)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from bench.calibrate import Measurement, group_cpu_seconds, parse_wrk, render_table, summarise
from bench.errors import UserError
from bench.spec import Load

WRK = """Running 5s test @ https://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  300.00us   9.00ms   90.00%
  248142 requests in 5.01s, 8.99MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  49572.62
Transfer/sec:      1.79MB
"""


def test_parse_wrk() -> None:
    assert parse_wrk(WRK) == (248142, 5.01, 7)
    assert parse_wrk("  10 requests in 500.00ms, 1KB read\n") == (10, 0.5, 0)
    with pytest.raises(UserError):
        parse_wrk("wrk: cannot connect")


def m(client: str, r: int, requests: int, cpu: float, **haproxy: float) -> Measurement:
    return Measurement(client, r, 5.0, requests, 0, cpu, dict(haproxy))


def test_summary_is_median_of_round_pairs() -> None:
    ms = [
        m("wrk-ka", 1, 100_000, 1.0),
        m("lean-ka", 1, 60_000, 1.0),
        m("wrk-ka", 2, 100_000, 2.0),  # 50k per core
        m("lean-ka", 2, 40_000, 1.0),  # 0.8 of it
        m("wrk-ka", 3, 90_000, 1.0),
        m("lean-ka", 3, 45_000, 1.0),
        m("lean-resume", 1, 1000, 1.0, SslFrontendSessionReuse_pct=99.0),
    ]
    s = summarise(ms)
    ratio = s["ratios"]["lean/wrk keep-alive"]
    assert ratio["pairs"] == pytest.approx([0.6, 0.8, 0.5])
    assert ratio["median"] == pytest.approx(0.6) and ratio["min"] == pytest.approx(0.5) and ratio["max"] == pytest.approx(0.8)
    assert ratio["q1"] == pytest.approx(0.55) and ratio["q3"] == pytest.approx(0.7) and ratio["n"] == 3
    assert ratio["target"] == 0.9
    assert s["clients"]["wrk-ka"]["per_core"]["median"] == pytest.approx(90_000)
    assert s["lean_resume_reuse_pct"] == 99.0
    assert "fasthttp/wrk keep-alive" not in s["ratios"]
    result = {
        "summary": s,
        "settings": {"connections": 50},
        "haproxy": "2.6",
        "machine": {"cpus": 2, "loadavg_before": (1.0, 1.0, 1.0), "loadavg_after": (2.0, 2.0, 2.0)},
    }
    text = render_table(result)
    assert "lean/wrk keep-alive" in text and "0.60" in text and "99%" in text


def test_baseline_clients_show_their_tls_reuse_like_this_checkouts() -> None:
    """base-resume is lean-resume from the --baseline checkout: its TLS reuse is shown too (base-ka's is not)."""

    def m(client: str, reuse: float) -> Measurement:
        return Measurement(client, 1, 1.0, 1000, 0, 1.0, {"SslFrontendSessionReuse_pct": reuse})

    s = summarise([m("lean-resume", 97.0), m("base-resume", 96.0), m("base-ka", 55.0)])
    text = render_table({"summary": s, "settings": {"connections": 50}, "haproxy": "2.6", "machine": {"cpus": 2, "loadavg_before": (1.0,) * 3, "loadavg_after": (1.0,) * 3}})
    assert "97%" in text and "96%" in text and "55%" not in text


def test_group_cpu_counts_this_process_group() -> None:
    sum(i * i for i in range(300_000))  # burn a little CPU
    assert group_cpu_seconds(os.getpgrp()) > 0
    assert group_cpu_seconds(2**22 + 12345) == 0


def test_load_lean_fields() -> None:
    load = Load(engine="lean", requests_per_connection=1, resumption=False, timeout="2s", connect_timeout="500ms")
    assert (load.requests_per_connection, load.resumption, load.timeout, load.connect_timeout) == (1, False, 2.0, 0.5)
    assert Load().engine == "fasthttp" and Load().requests_per_connection == 0 and Load().resumption
    with pytest.raises(ValidationError, match="only the lean engine"):
        Load(requests_per_connection=5)
    with pytest.raises(ValidationError):
        Load(engine="lean", requests_per_connection=-1)
    with pytest.raises(ValidationError):
        Load(engine="lean", timeout=0)


def test_rate_model_clients_are_valid_loads() -> None:
    """The rate models' calibrate clients are loads `bench run` accepts, on the lean engine, TLS only."""
    from bench.calibrate import ALL_CLIENTS, BASELINE_CLIENTS, CLIENTS, RATE_CLIENTS

    assert set(ALL_CLIENTS) == set(CLIENTS) | set(RATE_CLIENTS) | set(BASELINE_CLIENTS)
    for name, (listener, settings) in RATE_CLIENTS.items():
        load = Load(engine="lean", users=50, path="/", **settings)
        assert load.is_rate and load.engine == "lean", name
        assert listener in ("full", "resume")
        # calibrate listens on one TLS port: every new connection of a model must be a TLS one
        if load.model == "connection-rate":
            assert load.handshakes_per_s == load.connections_per_s


def test_rounds_alternate_the_order_of_clients() -> None:
    from bench.calibrate import round_order, time_wait_sockets

    clients = ["wrk-ka", "lean-ka", "wrk-close", "lean-close"]
    assert round_order(clients, 1) == clients
    assert round_order(clients, 2) == clients[::-1]
    assert round_order(clients, 3) == clients
    assert time_wait_sockets() >= -1


def test_baseline_clients_and_their_ratios(tmp_path) -> None:
    """base-* clients need --baseline (a checkout), refused before anything starts; their ratios are summarised."""
    from bench.calibrate import BASELINE_CLIENTS, run_calibrate

    assert "base-ka" in BASELINE_CLIENTS and "base-handshake" in BASELINE_CLIENTS
    with pytest.raises(UserError, match="need --baseline"):
        run_calibrate(clients=["wrk-ka", "base-ka"])
    with pytest.raises(UserError, match="not an lbbench checkout"):
        run_calibrate(baseline=tmp_path)
    s = summarise([m("wrk-ka", 1, 100_000, 1.0), m("base-ka", 1, 70_000, 1.0), m("lean-ka", 1, 84_000, 1.0)])
    assert s["ratios"]["lean/base keep-alive"]["median"] == pytest.approx(1.2)
    assert s["ratios"]["base/wrk keep-alive"]["median"] == pytest.approx(0.7)
    assert s["ratios"]["lean/base keep-alive"]["target"] is None
