"""bench gate: rules, verdicts on recorded runs, a planted regression, JUnit, exit codes, interleaved runs."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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


def test_aa_repeats_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two folders of 3 repeats of the same scenario on a noisy machine: no regression."""
    code, out, _ = run_cli(capsys, "gate", "--baseline", str(RUNS / "base"), "--candidate", str(RUNS / "base2"), "--json", str(tmp_path / "v.json"))
    assert code == 0, out
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["verdict"] == "pass"
    assert [r["rule"] for r in verdict["rules"]] == list(g.DEFAULT_RULES)
    assert "gate: PASS" in out


def test_beyond_threshold_but_within_noise_passes() -> None:
    """The delayed runs are slower in p99 by more than 10 %, but 3 noisy repeats cannot tell: no alarm."""
    verdict = g.evaluate([str(RUNS / "base")], [str(RUNS / "delay")], [g.parse_rule("latency_ms.p99: +10%")])
    (rule,) = verdict["rules"]
    assert rule["status"] == "pass" and "beyond the threshold but within noise" in rule["message"]
    assert rule["test"] == "welch-t 3v3 runs"


def test_slowed_candidate_fails_with_junit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    code, out, _ = run_cli(
        capsys, "gate", "--baseline", str(RUNS / "base" / "smoke-base-1"), "--candidate", str(RUNS / "delay" / "smoke-delay-1"), "--junit", str(junit)
    )
    assert code == 1
    assert "gate: FAIL (2 of 3 rules regressed)" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert sorted(cases) == sorted(g.DEFAULT_RULES)
    failure = cases["requests.per_s: -5%"].find("failure")
    assert failure is not None and "beyond the threshold and significant" in failure.get("message", "")
    assert cases["errors.total: <= 0"].find("failure") is None


def plant_drop(src: Path, dest: Path, keep: float, seed: int = 5) -> Path:
    """A copy of a recorded run with only ``keep`` of its successful requests: its throughput scaled by ``keep``."""
    shutil.copytree(src, dest)
    rng = np.random.default_rng(seed)
    for part in (dest / "samples" / "requests").glob("*.parquet"):
        table = pq.read_table(part)
        ok = np.asarray(table.column("error").to_pylist()) == ""
        mask = ~ok | (rng.random(table.num_rows) < keep)
        pq.write_table(table.filter(mask), part)
    summary = json.loads((dest / "summary.json").read_text())
    summary["requests"]["per_s"] = round(summary["requests"]["per_s"] * keep, 1)
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def test_planted_20pct_drop_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = RUNS / "base2" / "smoke-base-4"
    planted = plant_drop(base, tmp_path / "planted", keep=0.8)
    verdict = g.evaluate([str(base)], [str(planted)], [g.parse_rule(t) for t in g.DEFAULT_RULES])
    rules = {r["metric"]: r for r in verdict["rules"]}
    assert verdict["verdict"] == "fail"
    assert rules["requests.per_s"]["status"] == "fail"
    assert rules["requests.per_s"]["change_pct"] == pytest.approx(-20, abs=0.2)
    assert rules["latency_ms.p99"]["status"] == "pass"  # thinning does not change latency
    # a 3 % drop is inside the 5 % threshold: no alarm even though it is real
    small = plant_drop(base, tmp_path / "small", keep=0.97)
    assert g.evaluate([str(base)], [str(small)], [g.parse_rule("requests.per_s: -5%")])["verdict"] == "pass"


# --------------------------------------------------------------------------- usage and data errors: exit 2, one line


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["gate", "--baseline", "B", "--candidate", "C", "--rule", "requests.per_s: 5%"], "needs a sign"),
        (["gate", "--baseline", "B", "--candidate", "C", "--rule", "request.per_s: -5%"], "figure 'request.per_s' is not in summary.json"),
        (["gate", "--baseline", "B", "--candidate", "/nonexistent"], "no such run directory"),
        (["gate", "--baseline", "B"], "needs --baseline RUN... and --candidate RUN..."),
        (["gate", "--baseline", "B", "--candidate", "C", "--rules", "/nonexistent.yaml"], "--rules /nonexistent.yaml: cannot read"),
        (["gate", "--baseline", "B", "--candidate", "C", "--alpha", "1.5"], "--alpha 1.5: must be between 0 and 1"),
        (["gate", "--run", "smoke", "--baseline", "B"], "use either --run SCENARIO or --baseline/--candidate"),
        (["gate", "--run", "smoke", "--repeat", "50", "--out", "OUT"], "--repeat 50: must be between 1 and 20"),
    ],
)
def test_gate_errors_exit_2(argv: list[str], expect: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    subst = {"B": str(RUNS / "base"), "C": str(RUNS / "base2"), "OUT": str(tmp_path / "out")}
    code, _, err = run_cli(capsys, *[subst.get(a, a) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and expect in lines[0]


def test_missing_candidate_run_status(tmp_path: Path) -> None:
    cand = tmp_path / "cand"
    shutil.copytree(RUNS / "delay" / "smoke-delay-1", cand)
    run = json.loads((cand / "run.json").read_text())
    run["status"] = "interrupted"
    (cand / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match="has status 'interrupted'; a gate needs completed runs"):
        g.evaluate([str(RUNS / "base")], [str(cand)], [g.parse_rule("errors.total: 0")])


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
            "gate", "--run", "smoke", "--repeat", "3", "--out", str(out), "--duration", "10s",
            "--baseline-variant", "A", "--candidate-variant", "B", "--candidate-set", "servers.count=1",
            "--rule", "errors.total: <= 0",
        ]
    )  # fmt: skip
    assert code == 0
    assert [c[1] for c in calls] == ["A", "B", "A", "B", "A", "B"]
    assert calls[1] == ("smoke", "B", ["servers.count=1"])
    assert sorted(p.name for p in (out / "candidate").iterdir()) == ["run-01", "run-02", "run-03"]
    assert "gate: PASS" in capsys.readouterr().out


def test_too_few_data_is_inconclusive_unless_strict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Single runs and a figure without per-second samples: a change beyond the threshold cannot be judged."""
    base, cand = str(RUNS / "base2" / "smoke-base-4"), str(RUNS / "base2" / "smoke-base-5")
    junit = tmp_path / "gate.xml"
    code, out, _ = run_cli(capsys, "gate", "--baseline", base, "--candidate", cand, "--rule", "cpu.lb_ms_per_request: +5%", "--junit", str(junit))
    assert code == 0 and "INCONCLUSIVE" in out and "too few data to tell" in out
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.find("skipped") is not None
    code, out, _ = run_cli(capsys, "gate", "--baseline", base, "--candidate", cand, "--rule", "cpu.lb_ms_per_request: +5%", "--strict")
    assert code == 1
