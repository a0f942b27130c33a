"""`bench capacity measure --plan quick`: a tiny sweep on a real lab, measured, fitted and predicted (about a minute).

The quick plan (bench/capacity/plan.py) runs one lab: held TLS connections, keep-alive
HTTPS at two rates, new plain connections at two rates. Too few steps to fit every
cost, so this checks the measurement the fit rests on, against the rates the load
generator was asked for (achieved within 25 %: the machine is shared), the roles' CPU,
the memory samples and the sockets; the fitting itself is unit-tested on synthetic data.
The seed peak predicted from it must come with an interval and be flagged as an
extrapolation far beyond the rates measured (15k connections/s from at most ~150/s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.capacity.main import measure
from bench.results.store import read_table

from .conftest import project_leftovers

pytestmark = pytest.mark.integration


def test_a_quick_sweep_measures_each_operation_on_a_real_lab(tmp_path: Path) -> None:
    folder, doc = measure(out=tmp_path / "cap", scenario="seed-peak", plan="quick", stage_s=4.0, validate=None, log=lambda _m: None)
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["status"] == "completed"
    for phase in sweep["phases"]:
        assert project_leftovers(phase["project"]) == ([], [])
        assert all(g["exit_code"] == 0 for g in phase["groups"])
    steps = pd.DataFrame(doc["steps"]).set_index("step")
    assert (steps["error_pct"] == 0).all(), steps["error_pct"]
    assert (steps["excluded"] == "").all()
    idle = steps.loc["base:idle"]
    assert idle["request"] < 5 and idle["cpu_frontend"] < 0.1
    for rate in (100, 300):
        ka = steps.loc[f"base:keepalive-tls@{rate}"]
        assert ka["request"] == pytest.approx(rate, rel=0.25)
        assert ka["tls_request"] == ka["request"] and ka["connection"] < 0.1 * rate
        assert ka["cpu_frontend"] > idle["cpu_frontend"] and ka["cpu_backend"] > idle["cpu_backend"]
        assert ka["server_connection"] == pytest.approx(ka["request"], rel=0.1)  # http-server-close
    for rate in (50, 150):
        conn = steps.loc[f"base:connections-plain@{rate}"]
        assert conn["connection"] == pytest.approx(rate, rel=0.25) and conn["tls_request"] == 0
    assert steps.loc["base:keepalive-tls@300", "cpu_frontend"] > steps.loc["base:keepalive-tls@100", "cpu_frontend"]
    held = steps.loc["base:held-tls@20"]
    assert held["client_conns"] >= 200 and held["tls_conns"] >= 200
    assert held["mem_frontend"] > 1e6
    mem = read_table(folder / "phases" / "base", "memory")
    assert set(mem["role"]) >= {"frontend", "backend", "server", "keepalived"}
    assert (folder / "report.html").exists() and (folder / "capacity.json").exists()
    # the full seed peak from a tiny sweep: answered with an interval, and flagged as far past the measured rates
    peak = doc["predictions"][0]
    assert peak["profile"] == "seed-peak"
    total = peak["total_cores"]
    assert 0 <= total["low"] <= total["estimate"] < total["high"] and total["estimate"] > 0
    assert peak["extrapolated"] and peak["notes"][0].startswith("EXTRAPOLATED")
    conn = next(b for b in peak["beyond_measured"] if b["operation"] == "connection")
    assert conn["far"] and conn["measured_max"] == pytest.approx(150, rel=0.25) and conn["asked"] == 15000
