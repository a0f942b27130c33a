"""Failover under load, for real: faults on the keepalived pair while Locust drives HTTPS through the VIP."""

from __future__ import annotations

import json
from pathlib import Path

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


def _scenario(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"failover-{kind}.yaml"
    path.write_text(
        f"""
extends: failover
name: test-failover-{kind}
duration: 18s
ramp_up: 2s
faults:
  - {{kind: {kind}, at: 6s, target: master, recover_after: 9s}}
"""
    )
    return str(path)


def _run(tmp_path: Path, kind: str) -> tuple[dict, dict]:
    out = run_scenario(_scenario(tmp_path, kind), out=tmp_path / kind, log=lambda _m: None)
    return json.loads((out / "run.json").read_text()), json.loads((out / "summary.json").read_text())


def test_master_crash_moves_the_vip_and_traffic_recovers(node_image: str, tmp_path: Path) -> None:
    run, summary = _run(tmp_path, "crash")
    # The load generator rode out the vanished target: the run completed normally,
    # and the planned crash (containers dying, the VIP moving) did not count as the lab changing.
    assert run["status"] == "completed"
    assert summary["integrity"]["ok"] is True, summary["integrity"]
    events = summary["failover"]["events"]
    assert len(events) == 1
    ev = events[0]
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


def test_haproxy_only_failure_demotes_the_node(node_image: str, tmp_path: Path) -> None:
    run, summary = _run(tmp_path, "haproxy-kill")
    assert run["status"] == "completed"
    ev = summary["failover"]["events"][0]
    assert ev["kind"] == "haproxy-kill"
    # keepalived stayed alive on lb-a, yet its track_script demoted it: lb-b took the VIP.
    assert ev["vip_moved_after_s"] is not None and ev["vip_moved_after_s"] < 10
    assert ev["first_success_after_s"] is not None
