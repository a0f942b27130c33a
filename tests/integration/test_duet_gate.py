"""`bench gate --run`: a short duet end to end, with a planted regression, two multi-process load generators at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.store import read_table

from .conftest import project_leftovers

pytestmark = pytest.mark.integration

BENCH = [sys.executable, "-m", "bench.cli"]
DATA = Path(__file__).parent / "data"


def test_duet_gate_catches_a_planted_regression(node_image: str, tmp_path: Path) -> None:
    out, verdict_file = tmp_path / "duet", tmp_path / "verdict.json"
    proc = subprocess.run(
        [
            *BENCH, "gate", "--run", str(DATA / "duet.yaml"), "--candidate-variant", "heavy",
            "--rate", "200", "--slice", "2s", "--warmup", "4s", "--budget", "24s", "--fixed",
            "--rule", "cost.lb_us_per_request: +5%", "--rule", "errors.total: <= 0",
            "--out", str(out), "--json", str(verdict_file),
        ],
        capture_output=True, check=False, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict = json.loads(verdict_file.read_text())
    cost, errors = verdict["rules"]
    assert cost["status"] == "fail" and cost["ci"][0] > 1.05 and cost["test"] == "paired t 12 slices"
    assert errors["status"] == "pass"
    assert verdict["duet"]["slices"] == 12 and "gate: FAIL (1 of 2 rules regressed)" in proc.stdout

    workers = {}
    for side in ("baseline", "candidate"):
        run_dir = out / side
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["cost"]["lb_us_per_request"] > 0
        # both labs were watched (a dead container or a moved VIP would make the side invalid) and stayed the lab
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed" and summary["integrity"]["ok"] is True
        assert "Address already in use" not in (run_dir / "locust" / "locust.log").read_text()
        # each side's two Locust processes sent its whole schedule, and only to its own lab
        workers[side] = set(read_table(run_dir, "pacing")["worker"])
        assert len(workers[side]) == 2
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        assert not any(e.get("name") == "processes changed" for e in events)
        # the whole schedule was due (a second Locust process that failed to start would halve it); what
        # the labs made of it depends on the machine: a lost process shows as ~50 %, a busy machine as 90 %
        pacing = summary["load"]["pacing"]
        assert pacing["due"] >= 0.95 * 200 * pacing["seconds"], pacing
        assert summary["load"]["achieved_pct"]["requests_per_s"] >= 75, summary["load"]["verdict"]
        project = json.loads((run_dir / "run.json").read_text())["lab"]["project"]
        assert project_leftovers(project) == ([], [])
    assert not workers["baseline"] & workers["candidate"]
