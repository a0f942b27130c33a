"""Failover under load, for real: faults on the keepalived pair while Locust drives HTTPS through the VIP."""

from __future__ import annotations

import json

import pytest

from bench.analysis.failover import FIGURES
from bench.load.capture import ERROR_KINDS
from bench.run import run_scenario

pytestmark = pytest.mark.integration

EVENT_FIELDS = {
    "kind",
    "injected_at",
    "vip_moved_after_s",
    "gap_s",
    "first_success_after_s",
    "errors",
    "recovered_after_s",
    "expected_vip_move_s",
}


@pytest.fixture(scope="module")
def faults_run(node_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """One run, both faults on the master in turn: a crash at 6 s (back at 15 s: the failback), then
    HAProxy killed at 22 s (back at 31 s). The tests only read it: one lab instead of one per fault.

    lb-a owns the VIP (priority 255), so it is the master again before the second fault (it took the
    VIP back 2 s after its recovery in the first such run: 5 s of margin)."""
    tmp = tmp_path_factory.mktemp("failover")
    path = tmp / "failover-two-faults.yaml"
    path.write_text(
        """
extends: failover
name: test-failover-two-faults
duration: 33s
ramp_up: 2s
faults:
  - {kind: crash, at: 6s, target: master, recover_after: 9s}
  - {kind: haproxy-kill, at: 22s, target: master, recover_after: 9s}
"""
    )
    out = run_scenario(str(path), out=tmp / "run", log=lambda _m: None)
    run, summary = json.loads((out / "run.json").read_text()), json.loads((out / "summary.json").read_text())
    # The load generator rode out both vanished targets: the run completed normally, and the planned
    # faults (containers dying, the VIP moving) did not count as the lab changing.
    assert run["status"] == "completed"
    assert summary["integrity"]["ok"] is True, summary["integrity"]
    assert [e["kind"] for e in summary["failover"]["events"]] == ["crash", "haproxy-kill"]
    return run, summary


def _event(summary: dict, kind: str) -> dict:
    return next(e for e in summary["failover"]["events"] if e["kind"] == kind)


def test_master_crash_moves_the_vip_and_traffic_recovers(faults_run: tuple[dict, dict]) -> None:
    _, summary = faults_run
    ev = _event(summary, "crash")
    assert set(ev) >= EVENT_FIELDS
    assert ev["kind"] == "crash" and ev["node"] == "lb-a"
    # The VIP moved to the backup, within a bounded time (generous: the machine is shared).
    assert ev["vip_moved_after_s"] is not None and 0 < ev["vip_moved_after_s"] < 10
    # Traffic came back through lb-b before the failback.
    assert ev["first_success_after_s"] is not None and ev["first_success_after_s"] < 9
    assert ev["gap_s"] > 0 and not ev["censored"]
    # Requests in flight to the dead node fail; every error is counted once, under a known kind.
    assert ev["errors"]["total"] > 0
    assert sum(ev["errors"]["by_kind"].values()) == ev["errors"]["total"]
    assert set(ev["errors"]["by_kind"]) <= set(ERROR_KINDS)
    for fig in FIGURES:
        assert fig in summary["failover"]["by_kind"]["crash"]
    # The keepalived log says who took over.
    assert ev["vip_moved_source"] == "keepalived log"


def test_haproxy_only_failure_demotes_the_node(faults_run: tuple[dict, dict]) -> None:
    _, summary = faults_run
    ev = _event(summary, "haproxy-kill")
    assert set(ev) >= EVENT_FIELDS
    # keepalived stayed alive on the master (lb-a again after the failback), yet its track_script demoted it: the other took the VIP.
    assert ev["vip_moved_after_s"] is not None and ev["vip_moved_after_s"] < 10
    assert ev["first_success_after_s"] is not None
