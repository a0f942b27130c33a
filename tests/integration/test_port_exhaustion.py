"""The port-exhaustion experiment as a matrix: one localhost address runs out of ephemeral ports, four do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.matrix import run_matrix

pytestmark = pytest.mark.integration


def test_one_localhost_address_runs_out_four_do_not(node_image: str, tmp_path: Path) -> None:
    # 15 s: m1's ports were seen exhausted 6.0 s and 11.0 s after the load started in two runs (the later on a
    # busier machine: slower spawn, and pairs are sampled every 5 s until a quarter of the range is used).
    parent = run_matrix("port-exhaustion", "m1,m4", duration="15s", out=tmp_path / "matrix", log=lambda _m: None)
    matrix = json.loads((parent / "matrix.json").read_text())
    assert [r["variant"] for r in matrix["runs"]] == ["m1", "m4"]
    assert all(r["status"] == "completed" for r in matrix["runs"])
    m1 = json.loads((parent / "m1" / "summary.json").read_text())
    m4 = json.loads((parent / "m4" / "summary.json").read_text())
    # m1: the frontend's single source address reaches the 500-port limit towards a backend; HAProxy answers 503.
    assert m1["ports"]["exhausted"] is True
    assert m1["ports"]["first_exhaustion_at"] is not None
    assert any("127.0.0.1 -> 127.0.0.1:800" in p for p in m1["ports"]["exhausted_pairs"])
    assert m1["errors"]["by_kind"].get("http_5xx", 0) > 0
    # and the bottleneck verdict names the ports, with the pair and the knob
    assert (m1["bottleneck"]["component"], m1["bottleneck"]["limit"]) == ("ports", "ports"), m1["bottleneck"]["verdict"]
    assert "127.0.0.1 -> 127.0.0.1:800" in m1["bottleneck"]["verdict"] and "lb.local_addresses" in m1["bottleneck"]["verdict"]
    # m4: the same load spread over four source addresses stays below the limit, without such errors.
    assert m4["ports"]["exhausted"] is False
    assert m4["ports"]["max_utilisation_pct"] < 99
    assert m4["errors"]["by_kind"].get("http_5xx", 0) == 0
    assert m4["bottleneck"]["component"] != "ports"
    # each run records its variant and what it changed in the rendered configs
    run_m1 = json.loads((parent / "m1" / "run.json").read_text())
    assert run_m1["variant"] == "m1" and run_m1["overrides"]["lb"]["local_addresses"] == 1
    assert "-    server be1-2 127.0.0.2:8001" in run_m1["config_diff"]
