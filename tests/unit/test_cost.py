"""bench.analysis.cost: CPU of the HAProxy containers per request, handshake and MB, over exactly the same seconds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis.cost import cost_intervals, cost_summary, cumulative_at


def cpu_rows(t: np.ndarray, per_s: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Cumulative CPU seconds of containers (name, role) growing at ``per_s`` cores, two cores each (half on each)."""
    rows = []
    for (name, role), rate in per_s.items():
        for core in (0, 1):
            rows += [{"t": x, "container": name, "role": role, "node": "lb-a", "cpu": core, "usage_s": rate / 2 * (x - t[0])} for x in t]
    return pd.DataFrame(rows)


def stat_rows(t: np.ndarray, req_per_s: float, full_per_s: float = 0.0, resumed_per_s: float = 0.0, bytes_per_s: float = 0.0) -> pd.DataFrame:
    base = {"node": "lb-a", "service": "lb-a-frontend", "kind": "frontend", "svname": "FRONTEND", "type": 0, "status": "OPEN"}
    rows = [
        {**base, "t": x, "pxname": "clients", "req_tot": req_per_s * (x - t[0]), "ssl_sess": full_per_s * (x - t[0]),
         "ssl_reused_sess": resumed_per_s * (x - t[0]), "bin": bytes_per_s / 2 * (x - t[0]), "bout": bytes_per_s / 2 * (x - t[0])}
        for x in t
    ]  # fmt: skip
    # keepalived's health check frontend is no client traffic
    rows += [{**base, "t": x, "pxname": "monitor", "req_tot": 5.0 * (x - t[0]), "ssl_sess": 0.0, "ssl_reused_sess": 0.0, "bin": 0.0, "bout": 0.0} for x in t]
    return pd.DataFrame(rows)


def test_cumulative_counters_survive_restarts_and_refuse_to_extrapolate() -> None:
    rows = pd.DataFrame({"k": ["a"] * 4, "t": [0.0, 1.0, 2.0, 3.0], "v": [10.0, 20.0, 5.0, 15.0]})  # restart after t=1
    assert cumulative_at(rows, ["k"], "v", [0.0, 1.5, 3.0]).tolist() == [0.0, 12.5, 25.0]
    assert math.isnan(cumulative_at(rows, ["k"], "v", [3.5])[0])
    assert np.isnan(cumulative_at(pd.DataFrame(), ["k"], "v", [1.0])).all()


def test_cost_per_request_and_role_over_intervals_between_samples() -> None:
    t = 1000.0 + np.arange(0, 21, dtype=float) + 0.37  # 1 Hz samples, not aligned with the intervals
    cpu = cpu_rows(t, {("lb-a-frontend", "frontend"): 0.3, ("lb-a-backend1", "backend"): 0.1, ("loadgen", "loadgen"): 0.9})
    stat = stat_rows(t, req_per_s=800.0, bytes_per_s=2e6)
    out = cost_intervals(cpu, stat, [1002.0, 1007.0, 1012.0])
    # 0.4 cores of HAProxy for 800 requests/s = 500 µs per request; the load generator does not count
    assert out["lb_us_per_request"].tolist() == pytest.approx([500.0, 500.0])
    assert out["frontend_us_per_request"].tolist() == pytest.approx([375.0, 375.0])
    assert out["requests"].tolist() == pytest.approx([4000.0, 4000.0])  # the monitor frontend left out
    assert out["lb_ms_per_mb"].tolist() == pytest.approx([200.0, 200.0])
    assert out["lb_us_per_full_handshake"].isna().all()  # no handshakes: no cost per handshake


def test_cost_summary_over_the_steady_window() -> None:
    t = 1000.0 + np.arange(0, 11, dtype=float)
    cpu = cpu_rows(t, {("lb-a-frontend", "frontend"): 0.6})
    stat = stat_rows(t, req_per_s=1000.0, full_per_s=200.0, resumed_per_s=400.0)
    s = cost_summary(cpu, stat, (1001.0, 1009.0))
    assert s["window_s"] == 8.0 and s["lb_cpu_s"] == pytest.approx(4.8)
    assert s["lb_us_per_request"] == pytest.approx(600.0)
    assert s["lb_us_per_full_handshake"] == pytest.approx(3000.0)
    assert s["lb_us_per_resumed_handshake"] == pytest.approx(1500.0)
    assert s["by_role"] == {"frontend": {"cpu_s": pytest.approx(4.8), "us_per_request": pytest.approx(600.0)}}
    assert cost_summary(cpu, stat, (1005.0, 1005.0))["lb_us_per_request"] is None
