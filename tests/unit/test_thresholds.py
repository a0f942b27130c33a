"""Scenario thresholds (SLOs): parsing with "did you mean", evaluation against summary.json, verdicts, JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import thresholds as th
from bench.errors import UserError
from bench.spec import load_scenario

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"


def _summary(**over):
    s = json.loads((GOLDEN / "smoke" / "summary.json").read_text())
    s.update(over)
    return s


def test_parse_the_issue_example() -> None:
    parsed = th.parse_thresholds({"latency_ms.p99": "< 50", "errors.pct": "< 0.1", "load.achieved_pct.requests_per_s": ">= 99"})
    assert [(t.metric, t.op, t.limit) for t in parsed] == [("latency_ms.p99", "<", 50.0), ("errors.pct", "<", 0.1), ("load.achieved_pct.requests_per_s", ">=", 99.0)]


def test_several_expressions_on_one_metric_and_wildcard_names() -> None:
    parsed = th.parse_thresholds({"requests.per_s": [">= 500", "< 1e5"], "cpu.by_container.lb-a-frontend.total_mean_pct": "<= 80"})
    assert [t.text for t in parsed] == ["requests.per_s >= 500", "requests.per_s < 100000", "cpu.by_container.lb-a-frontend.total_mean_pct <= 80"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"latency_ms.p95": "< 50"}, ["unknown metric 'latency_ms.p95'", "did you mean latency_ms.p9"]),
        ({"latency.p99": "< 50"}, ["did you mean latency_ms.p99"]),
        ({"error.pct": "< 1"}, ["did you mean errors.pct"]),
        ({"latency_ms.p99": "50"}, ['did you mean "<= 50" or ">= 50"']),
        ({"latency_ms.p99": "< 50ms"}, ['did you mean "< 50"']),
        ({"latency_ms.p99": "=< 50"}, ['did you mean "<= 50"']),
        ({"latency_ms.p99": "less than 50"}, ["cannot read 'less than 50'"]),
        ({"latency_ms.p99": []}, ["an empty list"]),
        ({"latency_ms.p99": True}, ["expected an expression"]),
    ],
)
def test_bad_thresholds_say_what_and_suggest(raw, words) -> None:
    with pytest.raises(ValueError) as err:  # noqa: PT011 - the words of the message are checked below
        th.parse_thresholds(raw)
    for w in words:
        assert w in str(err.value)


def test_scenario_file_with_a_bad_threshold_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("extends: smoke\nthresholds:\n  latency_ms.p95: '< 50'\n")
    with pytest.raises(UserError) as err:
        load_scenario(str(path))
    text = str(err.value)
    assert "\n" not in text and "thresholds" in text and "did you mean" in text


def test_scenario_thresholds_load_and_reach_run_json_shape(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("extends: smoke\nthresholds:\n  latency_ms.p99: '< 50'\n  errors.pct: ['< 0.1']\n")
    scenario, _ = load_scenario(str(path))
    assert scenario.model_dump(mode="json")["thresholds"] == {"latency_ms.p99": "< 50", "errors.pct": ["< 0.1"]}


def test_every_numeric_field_of_the_golden_summaries_can_be_named() -> None:
    # guards the catalogue against drift: a numeric summary field a threshold cannot name is a gap
    from bench.compare import numeric_keys

    for run in ("smoke", "lean-new-conn"):
        s = json.loads((GOLDEN / run / "summary.json").read_text())
        keys = [k for k in numeric_keys(s) if not k.startswith(("window.start", "window.end", "schema_version", "ports.by_source", "ports.first_exhaustion_at", "load.", "thresholds."))]
        missing = [k for k in keys if not th.is_known_metric(k)]
        assert not missing, missing


def test_evaluate_pass_fail_and_no_data() -> None:
    s = _summary()  # p99 47.744, errors.pct 0.0, keep-alive (no load.achieved_pct)
    ok = th.evaluate(th.parse_thresholds({"latency_ms.p99": "< 50", "errors.pct": "< 0.1"}), s)
    assert ok["status"] in ("pass", "inconclusive")
    assert [r["status"] for r in ok["results"]] == ["pass", "pass"]
    bad = th.evaluate(th.parse_thresholds({"latency_ms.p99": "< 40", "errors.pct": "< 0.1"}), s)
    assert bad["status"] == "fail" and bad["failed"] == 1 and bad["results"][0]["value"] == pytest.approx(47.744)
    assert th.exit_status(bad) == th.EXIT_THRESHOLDS_FAILED
    nodata = th.evaluate(th.parse_thresholds({"load.achieved_pct.requests_per_s": ">= 99"}), s)
    assert nodata["results"][0]["status"] == "no_data" and nodata["status"] == "inconclusive"
    assert th.exit_status(nodata) == th.EXIT_THRESHOLDS_INCONCLUSIVE
    assert th.evaluate([], s)["status"] == "none" and th.exit_status(th.evaluate([], s)) == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bottleneck": {"component": "loadgen", "verdict": "the load generator was saturated"}}, "bottleneck loadgen"),
        ({"bottleneck": {"component": "contended", "verdict": "other work took the cores"}}, "bottleneck contended"),
        ({"run": {"status": "interrupted"}}, "did not complete"),
        ({"integrity": {"ok": False, "problems": [{"message": "lb-a-frontend died"}]}}, "lb-a-frontend died"),
    ],
)
def test_a_pass_on_a_run_that_cannot_vouch_for_it_is_inconclusive(change, reason) -> None:
    s = _summary(**change)
    s.setdefault("bottleneck", {"component": "none"})
    if "bottleneck" not in change:
        s["bottleneck"] = {"component": "none", "verdict": ""}
    out = th.evaluate(th.parse_thresholds({"latency_ms.p99": "< 50"}), s)
    assert out["status"] == "inconclusive" and any(reason in r for r in out["untrustworthy"])
    # a failure stays a failure
    assert th.evaluate(th.parse_thresholds({"latency_ms.p99": "< 1"}), s)["status"] == "fail"


def test_a_pass_on_a_clean_run_passes() -> None:
    s = _summary(bottleneck={"component": "none", "verdict": "nothing saturated"})
    out = th.evaluate(th.parse_thresholds({"latency_ms.p99": "< 50"}), s)
    assert out["status"] == "pass" and out["untrustworthy"] == []
    assert th.verdict_line(out).startswith("thresholds: PASS (1 of 1 passed)")


def test_junit_has_one_case_per_threshold() -> None:
    s = _summary(bottleneck={"component": "none", "verdict": ""})
    out = th.evaluate(th.parse_thresholds({"latency_ms.p99": ["< 50", "< 10"], "load.achieved_pct.requests_per_s": ">= 99"}), s)
    root = ET.fromstring(th.junit_xml([("run-1", out)]))
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("skipped") == "1"
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["latency_ms.p99 < 50", "latency_ms.p99 < 10", "load.achieved_pct.requests_per_s >= 99"]


@pytest.mark.parametrize(("status", "code"), [("fail", 99), ("inconclusive", 98), ("pass", 0), ("none", 0)])
def test_bench_run_exit_status_and_junit_follow_the_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str, code: int) -> None:
    import shutil

    from bench import cli, matrix

    run_dir = tmp_path / "run"
    shutil.copytree(GOLDEN / "smoke", run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    result = {"metric": "latency_ms.p99", "op": "<", "limit": 50.0, "threshold": "latency_ms.p99 < 50", "value": 47.7, "status": "fail" if status == "fail" else "pass", "message": "m"}
    results = [] if status == "none" else [result]
    s["thresholds"] = {
        "status": status, "passed": int(status != "fail" and bool(results)), "failed": int(status == "fail"), "no_data": 0,
        "untrustworthy": ["x"] if status == "inconclusive" else [], "results": results,
    }  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(s))
    monkeypatch.setattr(matrix, "run_command", lambda *a, **k: (run_dir, False))
    junit = tmp_path / "slo.xml"
    assert cli.main(["run", "smoke", "--quiet", "--junit", str(junit)]) == code
    root = ET.parse(junit).getroot()
    assert root.get("failures") == ("1" if status == "fail" else "0")
