"""bench gate: rules, verdicts on recorded runs, a planted regression, JUnit, exit codes, interleaved runs."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bench import gate as g
from bench.cli import main
from bench.errors import UserError

from ..conftest import GOLDEN

RUNS = GOLDEN / "compare" / "runs"


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("text", "kind", "threshold", "op"),
    [
        ("requests.per_s: -5%", "relative", -0.05, "-"),
        ("latency_ms.p99: +10%", "relative", 0.10, "+"),
        ("latency_ms.p99:+2.5 %", "relative", 0.025, "+"),
        ("errors.total: 0", "absolute", 0.0, "<="),
        ("errors.total: <= 0", "absolute", 0.0, "<="),
        ("tls.resumption_pct: >= 90", "absolute", 90.0, ">="),
        ("ports.max_utilisation_pct: < 80.5", "absolute", 80.5, "<"),
        ("failover.gap_s.p95: +20%", "relative", 0.20, "+"),
    ],
)
def test_rules_parse(text: str, kind: str, threshold: float, op: str) -> None:
    rule = g.parse_rule(text)
    assert (rule.kind, rule.threshold, rule.op) == (kind, pytest.approx(threshold), op)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("requests.per_s -5%", "expected METRIC: LIMIT"),
        ("requests.per_s:", "expected METRIC: LIMIT"),
        ("requests.per_s: 5%", "a relative limit needs a sign saying which way is a regression"),
        ("requests.per_s: +5", "a signed number without % is ambiguous"),
        ("errors.total: -1", "a signed number without % is ambiguous"),
        ("requests.per_s: -100%", "a drop of 100% or more can never happen"),
        ("requests.per_s: lots", "cannot read the limit 'lots'"),
        ("requests.per_s: == 3", "cannot read the limit '== 3'"),
    ],
)
def test_bad_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("+", r"\+")) as exc:
        g.parse_rule(text)
    assert exc.value.fix  # every rule error says how to write it


def test_rules_file(tmp_path: Path) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text("schema_version: 1\nalpha: 0.01\nrules:\n  requests.per_s: -5%\n  errors.total: 0\n  latency_ms.p99: +10%\n")
    rules, alpha = g.load_rules_file(str(f))
    assert alpha == 0.01
    assert [r.text for r in rules] == ["requests.per_s: -5%", "errors.total: 0", "latency_ms.p99: +10%"]
    f.write_text("rules:\n  - requests.per_s: -5%\n  - 'errors.total: <= 0'\n")
    assert [r.op for r in g.load_rules_file(str(f))[0]] == ["-", "<="]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rules: {requests.per_s: 5%}", "needs a sign"),
        ("rule: {requests.per_s: -5%}", "unknown key 'rule'"),
        ("rules: {}", "no rules"),
        ("alpha: 2\nrules: {errors.total: 0}", "alpha must be a number between 0 and 1"),
        ("schema_version: 9\nrules: {errors.total: 0}", "schema_version 9 is newer"),
        ("rules: [requests.per_s: -5%", "not valid YAML"),
        ("- just a list", "expected a mapping"),
    ],
)
def test_bad_rules_files(content: str, message: str, tmp_path: Path) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(content)
    with pytest.raises(UserError, match=message) as exc:
        g.load_rules_file(str(f))
    assert str(f) in str(exc.value)


# --------------------------------------------------------------------------- verdicts on recorded runs


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_aa_on_noisy_repeats_never_fails_and_says_what_would_decide(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two folders of 3 repeats of one scenario on a busy machine (throughput 737-3060 req/s): no alarm, and no false comfort."""
    code, out, _ = run_cli(capsys, "gate", "--baseline", str(RUNS / "base"), "--candidate", str(RUNS / "base2"), "--json", str(tmp_path / "v.json"))
    assert code == g.EXIT_INCONCLUSIVE == 3, out
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["verdict"] == "inconclusive" and verdict["failed"] == 0
    assert [r["rule"] for r in verdict["rules"]] == list(g.DEFAULT_RULES)
    rps = verdict["rules"][0]
    assert rps["test"] == "welch t 3v3 runs" and rps["more"] > 10 and rps["ci"][0] < 0.95 < 1.05 < rps["ci"][1]
    assert "more runs per side would decide it" in rps["message"]
    assert "gate: INCONCLUSIVE" in out


def test_single_runs_are_never_judged_on_within_run_noise(capsys: pytest.CaptureFixture[str]) -> None:
    """One run per side: 3060 vs 1569 req/s is not "significant"; the noise between runs is unknown."""
    code, out, _ = run_cli(capsys, "gate", "--baseline", str(RUNS / "base" / "smoke-base-1"), "--candidate", str(RUNS / "delay" / "smoke-delay-1"))
    assert code == 3
    assert "one run per side: run-to-run noise unknown" in out


def synthetic_runs(folder: Path, values: list[float], p99: float = 10.0, errors: int = 0, unfinished: dict[int, dict[str, Any] | None] | None = None) -> Path:
    """Runs with these requests.per_s; ``unfinished`` maps a run's index to its summary's ``unfinished`` section."""
    for i, v in enumerate(values):
        run = folder / f"run-{i + 1}"
        run.mkdir(parents=True)
        run_json = {"schema_version": 1, "id": run.name, "status": "completed", "scenario": {"name": "synthetic"}, "machine": {"hostname": "h", "cpus": 2, "kernel": "k"}}
        (run / "run.json").write_text(json.dumps(run_json))
        summary: dict[str, Any] = {"schema_version": 1, "requests": {"per_s": v}, "latency_ms": {"p99": p99 * (1 + 0.01 * i)}, "errors": {"total": errors}}
        if unfinished is not None and i in unfinished:
            summary["unfinished"] = unfinished[i]
        (run / "summary.json").write_text(json.dumps(summary))
    return folder


def test_slowed_candidate_fails_with_junit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = synthetic_runs(tmp_path / "base", [1000.0, 1010.0, 990.0, 1005.0, 995.0])
    cand = synthetic_runs(tmp_path / "cand", [800.0, 812.0, 790.0, 805.0, 797.0], errors=2)
    junit = tmp_path / "gate.xml"
    code, out, _ = run_cli(capsys, "gate", "--baseline", str(base), "--candidate", str(cand), "--junit", str(junit))
    assert code == 1
    assert "gate: FAIL (2 of 3 rules regressed)" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert sorted(cases) == sorted(g.DEFAULT_RULES)
    failure = cases["requests.per_s: -5%"].find("failure")
    assert failure is not None and "wholly beyond the -5% limit" in failure.get("message", "")
    assert cases["errors.total: <= 0"].find("failure") is not None
    assert cases["latency_ms.p99: +10%"].find("failure") is None


def test_a_real_change_inside_the_threshold_passes(tmp_path: Path) -> None:
    base = synthetic_runs(tmp_path / "base", [1000.0, 1010.0, 990.0, 1005.0, 995.0])
    cand = synthetic_runs(tmp_path / "cand", [970.0, 981.0, 960.0, 975.0, 966.0])  # -3 %: real, but within -5 %
    verdict = g.evaluate([str(base)], [str(cand)], [g.parse_rule("requests.per_s: -5%")])
    assert verdict["verdict"] == "pass" and "wholly within the -5% limit" in verdict["rules"][0]["message"]


def test_different_machines_are_flagged(tmp_path: Path) -> None:
    base = synthetic_runs(tmp_path / "base", [1000.0, 1010.0, 990.0])
    cand = synthetic_runs(tmp_path / "cand", [1000.0, 1010.0, 990.0])
    for run in cand.iterdir():
        record = json.loads((run / "run.json").read_text())
        record["machine"] = {"hostname": "ci-runner-7", "cpus": 4, "kernel": "k"}
        (run / "run.json").write_text(json.dumps(record))
    verdict = g.evaluate([str(base)], [str(cand)], [g.parse_rule("requests.per_s: -5%")])
    notes = " ".join(verdict["notes"])
    assert "differ in machine (ci-runner-7 vs h)" in notes and "differ in cores (4 vs 2)" in notes and "kernel" not in notes


# --------------------------------------------------------------------------- usage and data errors: exit 2, one line


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["gate", "--baseline", "B", "--candidate", "C", "--rule", "requests.per_s: 5%"], "needs a sign"),
        (["gate", "--baseline", "B", "--candidate", "C", "--rule", "request.per_s: -5%"], "figure 'request.per_s' is not in summary.json"),
        (["gate", "--baseline", "B", "--candidate", "/nonexistent"], "no such run directory"),
        (["gate", "--baseline", "B"], "needs --baseline RUN... and --candidate RUN..."),
        (["gate", "--run", "smoke", "--rate", "100", "--interleaved"], "--rate applies to a duet only"),
        (["gate", "--run", "smoke", "--repeat", "3"], "--repeat applies to --interleaved runs only"),
        (["gate", "--run", "smoke", "--out", "OUT"], "uses the closed keep-alive model; a duet needs a fixed offered load"),
        (["gate", "--run", "open", "--budget", "20s", "--out", "OUT"], "--budget 20s holds only 4 slices"),
        (["gate", "--run", "open", "--slice", "0.5s", "--out", "OUT"], "--slice 0.5s: must be between 1s and 60s"),
        (["gate", "--run", "open", "--rule", "requests.per_s: -5%", "--out", "OUT"], "is not measured per slice in a duet"),
        (["gate", "--run", "open", "--rate", "400", "--candidate-set", "lb.frontend.nbthread=0", "--out", "OUT"], "nbthread"),
        (["gate", "--duet", "B"], "no duet.json (not a duet folder)"),
        (["gate", "--baseline", "B", "--candidate", "C", "--rules", "/nonexistent.yaml"], "--rules /nonexistent.yaml: no such gate file"),
        (["gate", "--baseline", "B", "--candidate", "C", "--alpha", "1.5"], "--alpha: 1.5: must be less than 1"),
        (["gate", "--run", "smoke", "--baseline", "B"], "use one of --run SCENARIO, --baseline/--candidate or --duet DIR"),
        (["gate", "--run", "smoke", "--interleaved", "--repeat", "50", "--out", "OUT"], "--repeat: 50: must be at most 20"),
    ],
)
def test_gate_errors_exit_2(argv: list[str], expect: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    subst = {"B": str(RUNS / "base"), "C": str(RUNS / "base2"), "OUT": str(tmp_path / "out")}
    code, _, err = run_cli(capsys, *[subst.get(a, a) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and expect in lines[0]
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_missing_candidate_run_status(tmp_path: Path) -> None:
    cand = tmp_path / "cand"
    shutil.copytree(RUNS / "delay" / "smoke-delay-1", cand)
    run = json.loads((cand / "run.json").read_text())
    run["status"] = "interrupted"
    (cand / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match="has status 'interrupted'; a gate needs completed runs"):
        g.evaluate([str(RUNS / "base")], [str(cand)], [g.parse_rule("errors.total: 0")])


@pytest.mark.parametrize("how", ["status", "summary"])
def test_a_run_whose_lab_changed_is_not_comparable(how: str, tmp_path: Path) -> None:
    """Issue 12's integrity: status invalid (run.json) or integrity.ok false (summary.json) keeps a run out of a gate."""
    base = synthetic_runs(tmp_path / "base", [100.0, 101.0, 99.0])
    cand = synthetic_runs(tmp_path / "cand", [100.0, 100.5, 99.5])
    bad = cand / "run-2"
    if how == "status":
        run = json.loads((bad / "run.json").read_text())
        (bad / "run.json").write_text(json.dumps({**run, "status": "invalid", "integrity": {"problems": [], "headline": "lb-a-frontend died at +12.0 s"}}))
    else:
        summary = json.loads((bad / "summary.json").read_text())
        (bad / "summary.json").write_text(json.dumps({**summary, "integrity": {"ok": False, "headline": "lb-a-frontend died at +12.0 s"}}))
    with pytest.raises(UserError, match=r"candidate run .*run-2 is not comparable: its lab changed during the run \(lb-a-frontend died at \+12.0 s\)"):
        g.evaluate([str(base)], [str(cand)], [g.parse_rule("requests.per_s: -5%")])


# --------------------------------------------------------------------------- requests left unfinished (summary.json unfinished)


def hung(total: int, oldest_s: float, bounds: dict[str, tuple[float | None, float | None]], large: bool = True) -> dict[str, Any]:
    """An ``unfinished`` section (bench/analysis/unfinished.py) with these figures' ranges."""
    return {
        "total": total, "steady": total, "steady_pct": 0.4, "oldest_s": oldest_s, "large": large, "by_phase": {"response": total},
        "by_worker": {"lg:1": {"count": total, "oldest_s": oldest_s}}, "bounds": {k: {"low": lo, "high": hi} for k, (lo, hi) in bounds.items()},
    }  # fmt: skip


#: 4 requests hung in a run whose p99 is 10 ms and errors 0: p99 unbounded, up to 4 errors, the rate up a little
HUNG = hung(4, 8.9, {"latency_ms.p99": (9.5, None), "errors.total": (0, 4), "requests.per_s": (1001.0, 1001.4)})
SAME = [1000.0, 1010.0, 990.0, 1005.0, 995.0]


def test_a_candidate_whose_requests_hang_does_not_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The false pass: on the finished requests alone every default rule passes; with 4 hung the p99 and error rules cannot tell."""
    base = synthetic_runs(tmp_path / "base", SAME)
    cand = synthetic_runs(tmp_path / "cand", [1001.0, 1011.0, 991.0, 1006.0, 996.0], unfinished={0: HUNG})
    junit = tmp_path / "gate.xml"
    code, out, _ = run_cli(capsys, "gate", "--baseline", str(base), "--candidate", str(cand), "--junit", str(junit), "--json", str(tmp_path / "v.json"))
    assert code == g.EXIT_INCONCLUSIVE == 3, out
    verdict = json.loads((tmp_path / "v.json").read_text())
    status = {r["rule"]: r["status"] for r in verdict["rules"]}
    # the rate's range only rises (they could have succeeded): a drop limit holds over all of it
    assert status == {"requests.per_s: -5%": "pass", "latency_ms.p99: +10%": "inconclusive", "errors.total: <= 0": "inconclusive"}
    p99 = next(r for r in verdict["rules"] if r["rule"] == "latency_ms.p99: +10%")
    assert p99["message"].startswith("latency_ms.p99 10.20 -> 10.20 (+0.0%")
    assert (
        f"PASS on the finished requests only: the candidate's run-1 ({cand / 'run-1'}): 4 requests unfinished at the load's end, oldest waiting 8.9 s, "
        "latency_ms.p99 could be 9.50 to unbounded; had they finished the rule could fail: undecided"
    ) in p99["message"]
    assert "INCONCLUSIVE: errors.total = 0 (worst candidate run); limit <= 0; PASS on the finished requests only: the candidate's run-1" in out
    assert "errors.total could be 0 to 4" in out and "gate: INCONCLUSIVE (2 of 3 rules undecided; exit 3)" in out
    assert any(n.startswith(f"the candidate's run run-1 ({cand / 'run-1'}): 4 requests unfinished at the load's end, oldest waiting 8.9 s (large") for n in verdict["notes"])
    # JUnit as a run's undecided thresholds: skipped, not passed
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("0", "2")
    # --strict: what cannot be told fails
    assert run_cli(capsys, "gate", "--baseline", str(base), "--candidate", str(cand), "--strict")[0] == g.EXIT_REGRESSION


def test_runs_without_unfinished_requests_give_todays_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """unfinished 0 (a normal run) and null (recorded before the count) judge and print exactly as runs without the section."""
    zero = {"total": 0, "steady": 0, "steady_pct": 0.0, "oldest_s": None, "large": False, "by_phase": {}, "by_worker": {}, "bounds": {}}
    outputs = []
    for name, section in (("none", None), ("zero", zero), ("null", None)):
        marks = None if name == "none" else dict.fromkeys(range(5), section)
        base = synthetic_runs(tmp_path / name / "base", SAME, unfinished=marks)
        cand = synthetic_runs(tmp_path / name / "cand", [800.0, 812.0, 790.0, 805.0, 797.0], errors=2, unfinished=marks)
        code, out, _ = run_cli(capsys, "gate", "--baseline", str(base), "--candidate", str(cand))
        outputs.append((code, out.replace(str(tmp_path / name), "DIR")))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][0] == 1 and "gate: FAIL (2 of 3 rules regressed)" in outputs[0][1] and "unfinished" not in outputs[0][1]


@pytest.mark.parametrize(
    ("rule", "base_unf", "cand_unf", "cand_values", "expect"),
    [
        # a sure fail stays a fail: the rate's range rises only 0.1 %, the errors' least is the 2 already counted
        ("requests.per_s: -5%", None, hung(4, 8.9, {"requests.per_s": (800.0, 801.0)}), [800.0, 812.0, 790.0, 805.0, 797.0], "fail"),
        ("errors.total: <= 0", None, hung(4, 8.9, {"errors.total": (2, 6)}), SAME, "fail"),
        # ... and a slower candidate whose hung requests had waited longer than its p99 (they could only raise it)
        ("latency_ms.p99: +10%", None, hung(4, 8.9, {"latency_ms.p99": (13.0, None)}), SAME, "fail"),
        # a fail the baseline's hung requests could undo: its p99 could be anything above
        ("latency_ms.p99: +10%", hung(4, 8.9, {"latency_ms.p99": (10.0, None)}), None, SAME, "inconclusive"),
        # a fail the candidate's could undo: had its 400 hung requests succeeded, the rate would be within -5 %
        ("requests.per_s: -5%", None, hung(400, 8.9, {"requests.per_s": (800.0, 1000.0)}), [800.0, 812.0, 790.0, 805.0, 797.0], "inconclusive"),
        # hung requests that cannot move the rule's figure change nothing
        ("requests.per_s: -5%", None, hung(4, 8.9, {"latency_ms.p99": (10.0, None)}), SAME, "pass"),
    ],
)
def test_unfinished_requests_decide_only_what_they_cannot_flip(
    rule: str, base_unf: dict[str, Any] | None, cand_unf: dict[str, Any] | None, cand_values: list[float], expect: str, tmp_path: Path
) -> None:
    p99 = 13.0 if rule.startswith("latency") else 10.0  # +30 %: a sure fail on the finished requests
    errors = 2 if rule.startswith("errors") else 0
    base = synthetic_runs(tmp_path / "base", SAME, unfinished=dict.fromkeys(range(5), base_unf) if base_unf else None)
    cand = synthetic_runs(tmp_path / "cand", cand_values, p99=p99, errors=errors, unfinished=dict.fromkeys(range(5), cand_unf) if cand_unf else None)
    verdict = g.evaluate([str(base)], [str(cand)], [g.parse_rule(rule)])
    assert verdict["rules"][0]["status"] == expect, verdict["rules"][0]["message"]
    side = "baseline" if base_unf else "candidate"
    assert (f"the {side}'s run-1" in verdict["rules"][0]["message"]) == (expect == "inconclusive")


def test_compare_names_the_runs_that_left_requests_unfinished(tmp_path: Path) -> None:
    from bench.compare import compare

    base = synthetic_runs(tmp_path / "base", SAME[:3])
    cand = synthetic_runs(tmp_path / "cand", SAME[:3], unfinished={1: HUNG})
    doc = compare([str(base), str(cand)], fmt="markdown", output=str(tmp_path / "c.md"), plots=False)
    hung_notes = [n for n in doc["notes"] if "unfinished" in n]
    assert hung_notes == [
        (
            f"run run-2 ({cand / 'run-2'}): 4 requests unfinished at the load's end, oldest waiting 8.9 s (large: they could move its latency "
            "and error figures anywhere); sent and never answered, they are in none of its figures (the range each figure could take had they "
            "finished: unfinished.bounds in its summary.json)"
        )
    ]
    assert "- " + hung_notes[0] in (tmp_path / "c.md").read_text()
    clean = compare([str(base), str(synthetic_runs(tmp_path / "cand2", SAME[:3]))], fmt="json", output=str(tmp_path / "c.json"), plots=False)
    assert not [n for n in clean["notes"] if "unfinished" in n]


# --------------------------------------------------------------------------- --run: interleaved A B A B


def test_run_interleaves_and_gates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[str, str | None, list[str]]] = []
    sources = {"baseline": sorted((RUNS / "base").iterdir()), "candidate": sorted((RUNS / "delay").iterdir())}

    def fake_run(name, duration=None, out=None, variant=None, sets=None, log=print):
        side = Path(out).parent.name
        calls.append((name, variant, list(sets or [])))
        shutil.copytree(sources[side][len([c for c in calls if c[1] == variant]) - 1], out)
        return Path(out)

    import bench.run

    monkeypatch.setattr(bench.run, "run_scenario", fake_run)
    out = tmp_path / "gate"
    code = main(
        [
            "gate", "--run", "smoke", "--interleaved", "--repeat", "3", "--out", str(out), "--duration", "10s",
            "--baseline-variant", "rsa", "--candidate-variant", "monolith", "--candidate-set", "servers.count=1",
            "--rule", "errors.total: <= 0",
        ]
    )  # fmt: skip
    assert code == 0
    # every round runs each side once, in an order of its own
    rounds = [sorted(c[1] for c in calls[i : i + 2]) for i in range(0, 6, 2)]
    assert rounds == [["monolith", "rsa"]] * 3
    assert ("smoke", "monolith", ["servers.count=1"]) in calls
    assert sorted(p.name for p in (out / "candidate").iterdir()) == ["run-01", "run-02", "run-03"]
    assert "gate: PASS" in capsys.readouterr().out


def test_inconclusive_has_its_own_exit_unless_strict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Single runs: a change beyond the threshold cannot be judged: exit 3, a <skipped> JUnit case; --strict makes it exit 1."""
    base, cand = str(RUNS / "base2" / "smoke-base-4"), str(RUNS / "base2" / "smoke-base-5")
    junit = tmp_path / "gate.xml"
    code, out, _ = run_cli(capsys, "gate", "--baseline", base, "--candidate", cand, "--rule", "requests.per_s: -5%", "--junit", str(junit))
    assert code == 3 and "INCONCLUSIVE" in out and "run-to-run noise unknown" in out
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.find("skipped") is not None
    code, out, _ = run_cli(capsys, "gate", "--baseline", base, "--candidate", cand, "--rule", "requests.per_s: -5%", "--strict")
    assert code == 1


def test_the_same_runs_on_both_sides_are_a_verdict_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    runs = str(GOLDEN / "compare" / "runs" / "base")
    code = main(["gate", "--baseline", runs, "--candidate", runs])
    out, err = capsys.readouterr()
    assert code in (0, 3), (code, err)  # identical groups never fail; 3 v 3 this noisy may not decide
    assert "gate: " in out and "Traceback" not in err
