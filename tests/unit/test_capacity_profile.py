"""bench.capacity.profile and predict: profiles read and checked, turned into operations, and what runs out first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.capacity.analyse import prediction_dict
from bench.capacity.fit import LinearFit
from bench.capacity.operations import IDLE
from bench.capacity.predict import CostModel, Estimate, Prediction, predict, sum_estimates
from bench.capacity.profile import Deployment, Machine, Profile, Workload, list_profiles, operations, profile_of_scenario, read_profile
from bench.errors import UserError
from bench.load.fit import held_interval_of
from bench.results.capacity import PredictionDoc
from bench.spec import load_scenario, scenario_topology


def exact(names: list[str], coef: list[float]) -> LinearFit:
    """A fit with known costs and no uncertainty."""
    k = len(names)
    return LinearFit(names, np.array(coef), np.zeros((k, k)), np.zeros((k, k)), 10, np.zeros(0), np.zeros(0), np.zeros(0))


def test_the_shipped_profiles_read() -> None:
    names = [p.name for p in list_profiles()]
    assert "seed-peak" in names
    p, _ = read_profile("seed-peak")
    assert p.workload.held_connections == 120_000 and p.reference is not None and p.reference.cores == 4.8


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("schema_version: 1\nname: x\nworkload: {connections_per_s: 10, tls_connections_per_s: 20}\n", "must not exceed connections_per_s"),
        ("schema_version: 1\nname: x\nworkload: {held_connections: -1}\n", "workload.held_connections"),
        ("schema_version: 1\nname: x\nworkload: {}\nmachine: {cores: 0}\n", "machine.cores"),
        ("schema_version: 1\nname: x\nworkload: {frobnicate: 1}\n", "unknown field"),
        ("schema_version: 9\nname: x\nworkload: {}\n", "newer than this lbbench"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_a_bad_profile_is_one_line_naming_the_field(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=expect):
        read_profile(str(path))


def test_unknown_profile_names_the_shipped_ones() -> None:
    with pytest.raises(UserError, match="no profile named 'nope'") as info:
        read_profile("nope")
    assert "seed-peak" in info.value.fix


def test_operations_of_the_seed_peak() -> None:
    p, _ = read_profile("seed-peak")
    ops = operations(p.workload, p.deployment)
    assert ops["request"] == pytest.approx(15000 * 2 + 120000 / 30)
    assert ops["tls_request"] == pytest.approx(600 * 2 + 40000 / 30)
    assert ops["handshake_full_ecdsa"] == 600 and ops["handshake_resumed"] == 0
    assert ops["tls_mb"] == pytest.approx(125.0)  # 1 Gbit/s
    assert ops["server_connection"] == ops["request"]
    half = p.scaled(0.5)
    assert operations(half.workload, half.deployment)["request"] == pytest.approx(ops["request"] / 2)
    assert half.workload.response_bytes == p.workload.response_bytes
    with pytest.raises(UserError, match="greater than 0"):
        p.scaled(0)


def test_the_seed_peak_scenario_as_a_profile() -> None:
    scenario, _ = load_scenario("seed-peak")
    topology, _ = scenario_topology(scenario)
    s = scenario.scaled(0.02)
    prof = profile_of_scenario(s, topology, held_interval_of(s.load, topology))
    w = prof.workload
    assert w.connections_per_s == pytest.approx(300) and w.tls_connections_per_s == pytest.approx(12)
    assert w.held_connections == 2400 and w.held_tls == 800 and w.held_request_interval == 30
    assert w.resumed_share == 1.0 and w.response_bytes > 1024
    assert prof.deployment.backend_processes == topology.lb.backend.processes


def test_what_runs_out_first_and_the_headroom() -> None:
    cpu = {"frontend": exact([IDLE, "request"], [0.01, 100e-6])}
    mem = {"frontend": exact(["base_a", "plain_connection", "tls_connection"], [10e6, 5e3, 30e3])}
    model = CostModel(cpu=cpu, memory=mem)
    machine = Machine(cores=4, memory_gb=8, fd_limit=20000, port_range=28232, max_cpu_utilisation=0.5)
    prof = Profile(name="t", workload=Workload(keepalive_requests_per_s=10000, held_connections=5000, held_tls=1000), deployment=Deployment())
    p = predict(model, prof, machine)
    assert p.cores["frontend"].value == pytest.approx(0.01 + 1.0)
    by = {r.name: r for r in p.resources}
    assert by["cpu"].headroom == pytest.approx(2.0 / 1.01)
    assert p.first_limit is not None and p.first_limit.name == "cpu"
    # memory: base + 4000 plain x 5 kB + 1000 TLS x 30 kB + buffers of requests in flight
    assert p.memory["frontend"].value == pytest.approx(10e6 + 4000 * 5e3 + 1000 * 30e3 + 10000 * 0.01 * 2 * 16384)
    # far more connections than one process holds: that runs out first
    many = prof.model_copy(update={"workload": prof.workload.model_copy(update={"held_connections": 50000})})
    p2 = predict(model, many, machine)
    assert p2.processes["frontend"] == 6 and p2.first_limit is not None and p2.first_limit.name.startswith("frontend")


def test_an_operation_the_sweep_did_not_measure_is_named() -> None:
    fit = exact([IDLE, "request"], [0.01, 1e-4])
    fit.dropped = ["handshake_full_rsa"]
    prof = Profile(name="t", workload=Workload(connections_per_s=100, tls_connections_per_s=100), deployment=Deployment(key_type="rsa-2048"))
    p = predict(CostModel(cpu={"frontend": fit}), prof, Machine(cores=2, memory_gb=1))
    assert any("handshake_full_rsa" in n for n in p.notes)


def test_estimates_add_end_to_end() -> None:
    s = sum_estimates([Estimate(1.0, 0.8, 1.3), Estimate(2.0, 1.5, 2.1)])
    assert (s.value, s.low, s.high) == pytest.approx((3.0, 2.3, 3.4))


def test_a_rate_far_beyond_the_measured_range_is_flagged() -> None:
    cpu = {"frontend": exact([IDLE, "request"], [0.01, 100e-6])}
    model = CostModel(cpu=cpu, measured_max={"request": 2000.0})
    machine = Machine(cores=4, memory_gb=8)

    def at(rate: float) -> Prediction:
        return predict(model, Profile(name="t", workload=Workload(keepalive_requests_per_s=rate), deployment=Deployment()), machine)

    inside, near, far = at(1500), at(5000), at(60000)
    assert not inside.beyond and not inside.extrapolated and not any("measured range" in n for n in inside.notes)
    assert [b["operation"] for b in near.beyond] == ["request"] and near.beyond[0]["factor"] == pytest.approx(2.5)
    assert not near.extrapolated and near.notes[0].startswith("beyond the measured range")
    assert far.extrapolated and far.beyond[0]["far"] and far.notes[0].startswith("EXTRAPOLATED")
    assert far.cores["frontend"].value == pytest.approx(0.01 + 6.0)  # still answered, and flagged
    # what capacity.json says, and the terminal's title
    doc = prediction_dict(far, 1.0)
    assert doc["extrapolated"] and doc["beyond_measured"][0]["measured_max"] == 2000.0
    PredictionDoc.model_validate(doc)


def test_a_negative_answer_is_counted_as_zero_and_said() -> None:
    fit = exact([IDLE, "request", "tls_request"], [0.01, 100e-6, -300e-6])  # a cost the steps could not pin down
    prof = Profile(name="t", workload=Workload(keepalive_requests_per_s=1000, keepalive_tls_share=1.0), deployment=Deployment())
    p = predict(CostModel(cpu={"frontend": fit}), prof, Machine(cores=2, memory_gb=1))
    assert p.cores["frontend"].value == 0 and p.cores["frontend"].low == 0
    assert any(n.startswith("frontend: the fit's answer is negative") for n in p.notes)
