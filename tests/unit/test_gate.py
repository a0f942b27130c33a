"""bench gate: rules, verdicts on recorded runs, a planted regression, JUnit, exit codes, interleaved runs."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

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


def synthetic_runs(folder: Path, values: list[float], p99: float = 10.0, errors: int = 0) -> Path:
    for i, v in enumerate(values):
        run = folder / f"run-{i + 1}"
        run.mkdir(parents=True)
        run_json = {"schema_version": 1, "id": run.name, "status": "completed", "scenario": {"name": "synthetic"}, "machine": {"hostname": "h", "cpus": 2, "kernel": "k"}}
        (run / "run.json").write_text(json.dumps(run_json))
        summary = {"schema_version": 1, "requests": {"per_s": v}, "latency_ms": {"p99": p99 * (1 + 0.01 * i)}, "errors": {"total": errors}}
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
