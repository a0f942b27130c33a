"""Requests in flight when the load ends are counted, on real traffic: users whose every request the dummy
servers answer only after 30 s (`?delay_ms=30000`, longer than the run and Locust's 5 s stop timeout), so
each user has exactly one request in flight at the end, dropped when Locust kills it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.results.store import read_table

from .conftest import project_leftovers

pytestmark = pytest.mark.integration

HUNG = "/?size=128&delay_ms=30000"


@pytest.mark.parametrize(
    ("engine", "extra", "processes"),
    [
        # the lean engine's users, two processes, beside held connections whose requests are answered at once
        ("lean", ", held: {connections: 4, interval: 0.3s, path: '/?size=128'}", 2),
        # Locust's FastHttpUser: no request of the run finishes
        ("fasthttp", "", 1),
    ],
)
def test_requests_in_flight_at_the_end_are_counted_exactly(node_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str, extra: str, processes: int) -> None:
    users = 4
    scenario = tmp_path / "hung.yaml"
    scenario.write_text(
        f"extends: smoke\nname: test-unfinished-{engine}\nduration: 4s\nramp_up: 1s\n"
        "overrides: {lb: {nodes: 1}}\n"
        f"load: {{engine: {engine}, users: {users}, spawn_rate: 100, processes: {processes}, timeout: 60s, path: '{HUNG}'{extra}}}\n"
        "thresholds: {latency_ms.p99: '< 1000'}\n"
    )
    out = tmp_path / "run"
    code = main(["run", str(scenario), "--out", str(out)])
    err = capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed", err
    assert project_leftovers(run["lab"]["project"]) == ([], [])
    req = read_table(out, "requests")
    unf = read_table(out, "unfinished")
    mine = unf[~unf["name"].astype(str).str.startswith("held ")]
    # every user had exactly one request in flight, and none of those finished
    assert len(mine) == users, unf
    assert not req["name"].astype(str).isin(set(mine["name"].astype(str))).any()
    assert mine["worker"].nunique() == processes
    waited = (mine["dropped_t"] - mine["t"]).to_numpy()
    duration = run["load_window"]["end"] - run["load_window"]["start"]
    assert (waited >= duration - 2.0).all(), (waited, duration)  # sent at the start, dropped at the end
    s = json.loads((out / "summary.json").read_text())
    u = s["unfinished"]
    assert u["total"] == len(unf) and u["large"] is True
    assert sum(w["count"] for w in u["by_worker"].values()) == len(unf)
    assert u["oldest_s"] >= duration - 2.0
    line = f"{len(unf)} requests unfinished at the load's end, oldest waiting {u['oldest_s']:.1f} s"
    assert line in err and line in s["bottleneck"]["verdict"]
    # the p99 leaves them out: it cannot pass (lean: the held requests' p99 is a few ms, over 1 % unfinished)
    result = s["thresholds"]["results"][0]
    assert result["status"] == ("undecided" if engine == "lean" else "no_data"), result
    assert s["thresholds"]["status"] == "inconclusive" and code == 98
    if engine == "lean":
        assert len(req) > 0 and (req["name"].astype(str).str.startswith("held ")).all()
        assert set(mine["phase"].astype(str)) == {"response"}
    else:
        assert len(req) == 0 and u["by_phase"] == {}
