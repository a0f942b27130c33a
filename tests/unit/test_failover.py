"""Failover figures from request and VRRP samples (synthetic, exactly known timelines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.failover import expected_window, failover_summary, master_down_interval
from bench.results.store import empty_frame

TOPO = {"keepalived": {"advert_int": 1.0, "priority_backup": 100}}


def timeline(outage: tuple[float, float], rate: float = 100.0, end: float = 30.0) -> pd.DataFrame:
    """Requests every 1/rate s, 2 ms each; those starting inside the outage fail as timeouts after 1 s."""
    t = np.arange(0.0, end, 1.0 / rate)
    failed = (t >= outage[0]) & (t < outage[1])
    return pd.DataFrame(
        {
            "t": t,
            "latency_ms": np.where(failed, 1000.0, 2.0),
            "bytes": 0,
            "status": np.where(failed, 0, 200),
            "error": np.where(failed, "timeout", ""),
            "name": "GET /",
            "worker": "w",
            "conn_new": None,
        }
    )


def test_gap_first_success_errors_and_recovery() -> None:
    req = timeline((10.0, 13.5))
    vrrp_events = pd.DataFrame({"t": [13.2], "node": ["lb-b"], "state": ["MASTER"]})
    events = [{"t": 10.0, "kind": "fault", "name": "crash", "id": 1, "target": "master", "node": "lb-a"}]
    out = failover_summary(events, req, vrrp_events, empty_frame("vrrp"), TOPO, load_end=30.0)
    ev = out["events"][0]
    # last success before: started 9.99, done 9.992; first after: started 13.5, done 13.502
    assert ev["gap_s"] == pytest.approx(3.502, abs=0.003)
    assert ev["first_success_after_s"] == pytest.approx(3.502, abs=0.003)
    assert ev["vip_moved_after_s"] == pytest.approx(3.2)
    assert ev["vip_moved_source"] == "keepalived log"
    assert ev["errors"]["by_kind"] == {"timeout": 350}
    assert ev["recovered_after_s"] == pytest.approx(3.502, abs=0.02)
    assert ev["censored"] is False
    assert ev["expected_vip_move_s"] == [pytest.approx(2.609, abs=0.001), pytest.approx(3.609, abs=0.001)]
    assert out["by_kind"]["crash"]["gap_s"]["n"] == 1
    assert out["gap_s"]["max"] == ev["gap_s"]


def test_no_success_after_fault_is_censored() -> None:
    req = timeline((10.0, 99.0), end=20.0)
    events = [{"t": 10.0, "kind": "fault", "name": "freeze", "id": 1, "node": "lb-a"}]
    ev = failover_summary(events, req, empty_frame("vrrp_events"), empty_frame("vrrp"), TOPO, load_end=20.0)["events"][0]
    assert ev["censored"] is True
    assert ev["gap_s"] == pytest.approx(10.0)
    assert ev["first_success_after_s"] is None and ev["recovered_after_s"] is None
    assert ev["vip_moved_after_s"] is None


def test_vrrp_samples_are_the_fallback_and_other_node_only() -> None:
    req = timeline((5.0, 6.0), end=15.0)
    vrrp = pd.DataFrame({"t": [4.0, 5.0, 6.0, 7.0, 7.0], "node": ["lb-a", "lb-a", "lb-a", "lb-a", "lb-b"], "holds_vip": [True, True, True, False, True]})
    events = [{"t": 5.0, "kind": "fault", "name": "link-down", "id": 1, "node": "lb-a"}]
    ev = failover_summary(events, req, empty_frame("vrrp_events"), vrrp, TOPO, load_end=15.0)["events"][0]
    assert ev["vip_moved_after_s"] == pytest.approx(2.0)
    assert ev["vip_moved_source"] == "vrrp samples"


def test_distributions_over_repeats_and_windows() -> None:
    parts = [timeline((10.0, 12.0), end=20.0), timeline((10.0, 14.0), end=20.0).assign(t=lambda d: d["t"] + 20.0)]
    req = pd.concat(parts, ignore_index=True)
    events = [
        {"t": 10.0, "kind": "fault", "name": "crash", "id": 1, "node": "lb-a"},
        {"t": 30.0, "kind": "fault", "name": "crash", "id": 2, "node": "lb-a"},
        {"t": 31.0, "kind": "recovery", "name": "crash", "id": 2, "node": "lb-a"},
    ]
    out = failover_summary(events, req, empty_frame("vrrp_events"), empty_frame("vrrp"), TOPO, load_end=40.0)
    gaps = [e["gap_s"] for e in out["events"]]
    assert gaps == [pytest.approx(2.002, abs=0.003), pytest.approx(4.002, abs=0.003)]
    dist = out["by_kind"]["crash"]["gap_s"]
    assert dist["n"] == 2 and dist["min"] == gaps[0] and dist["max"] == gaps[1]
    assert out["by_kind"]["crash"]["vip_moved_after_s"] is None


def test_no_faults() -> None:
    out = failover_summary([], timeline((0, 0)), empty_frame("vrrp_events"), empty_frame("vrrp"), TOPO, 30.0)
    assert out["events"] == [] and out["gap_s"] is None


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [("crash", 2.609, 3.609), ("freeze", 2.609, 3.609), ("keepalived-stop", 0.0, 0.709), ("backend-kill", None, None)],
)
def test_expected_windows(kind: str, low: float | None, high: float | None) -> None:
    window = expected_window(kind, TOPO)
    if low is None:
        assert window is None
    else:
        assert window == [pytest.approx(low, abs=0.001), pytest.approx(high, abs=0.001)]


def test_master_down_interval_scales_with_advert_int() -> None:
    assert master_down_interval(1.0, 100) == pytest.approx(3.609375)
    assert master_down_interval(0.2, 100) == pytest.approx(0.721875)
