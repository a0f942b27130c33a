"""The duet gate without Docker: per-slice figures from a synthetic duet folder, and the sequential procedure's error rates.

The rates are measured through the gate's own code (:class:`bench.gate.sequential.Sequential`
with the default duet rules) on synthetic slices whose noise imitates this
machine: a disturbance common to both sides in each slice, independent noise on
each side, and now and then a stall that hits one side far harder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import stats
from bench.cli import main
from bench.duet import planned_looks
from bench.gate.rules import DUET_RULES, parse_rule
from bench.gate.sequential import LAB_SPREAD, Sequential, judge_duet_folder, judge_slices
from bench.results.store import ChunkWriter
from bench.results.tables import TABLES

from .cores import map_on_cores

RULES = [parse_rule(t) for t in DUET_RULES]
PLANNED = 48
LOOKS = planned_looks(PLANNED, 12, 6)


def synthetic_slices(rng: np.random.Generator, n: int, cost_effect: float = 1.0, p99_effect: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sides' per-slice figures: cost ~450 µs/request, p50 ~2 ms, p99 ~15 ms, with this machine's kind of noise."""
    common = np.exp(rng.normal(0, 0.10, n))  # the machine's load in that slice, on both sides
    stall = rng.random(n) < 0.1  # a stall: latency 10-100x on both sides, unequally
    frames = []
    for ce, pe in ((1.0, 1.0), (cost_effect, p99_effect)):  # baseline, candidate
        cost = 450 * ce * common * np.exp(rng.normal(0, 0.03, n))
        lat = common * np.exp(rng.normal(0, 0.05, n)) * np.where(stall, np.exp(rng.uniform(2.3, 4.6, n)), 1.0)
        frames.append(
            pd.DataFrame(
                {
                    "slice": np.arange(n),
                    "cost.lb_us_per_request": cost,
                    "cost.lb_us_per_full_handshake": np.full(n, np.nan),
                    "latency_ms.p50": 2.0 * lat,
                    "latency_ms.p99": 15.0 * pe * lat * np.exp(rng.normal(0, 0.05, n)),
                    "errors.total": np.zeros(n),
                    "errors.pct": np.zeros(n),
                    "requests.total": np.full(n, 2000.0),
                    "load.due": np.full(n, 2000.0),
                    "load.late": np.zeros(n),
                    "load.dropped": np.zeros(n),
                }
            )
        )
    return frames[0], frames[1]


def gate_once(slices: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[str, dict[str, str]]:
    base, cand = slices
    seq = Sequential(RULES, LOOKS, PLANNED, stats.ALPHA, defaults=True)
    for n in LOOKS:
        if seq.look(n, base.iloc[:n], cand.iloc[:n]):
            break
    return seq.history[-1]["verdict"], {o.metric: o.status for o in seq.outcomes}


def rates(trials: int, seed: int, **effects: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    rng = np.random.default_rng(seed)
    duets = [synthetic_slices(rng, PLANNED, **effects) for _ in range(trials)]  # drawn first, in order: the same duets on any number of cores
    results = map_on_cores(gate_once, duets)
    verdicts = [v for v, _ in results]
    overall = {s: verdicts.count(s) / trials for s in (stats.FAIL, stats.PASS, stats.INCONCLUSIVE)}
    per_rule: dict[str, dict[str, float]] = {}
    for _, rules in results:
        for metric, status in rules.items():
            per_rule.setdefault(metric, dict.fromkeys((stats.FAIL, stats.PASS, stats.INCONCLUSIVE), 0.0))[status] += 1 / trials
    return overall, per_rule


def test_aa_duets_almost_never_fail(capsys: pytest.CaptureFixture[str]) -> None:
    overall, per_rule = rates(300, 1)
    with capsys.disabled():
        print(f"\nduet A/A, default rules, sequential: {overall}")
        for metric, r in per_rule.items():
            print(f"    {metric}: {r}")
    assert overall[stats.FAIL] <= 0.01


def test_a_planted_5pct_cost_is_caught(capsys: pytest.CaptureFixture[str]) -> None:
    _, per_rule = rates(300, 2, cost_effect=1.05)
    with capsys.disabled():
        print(f"\nduet, planted +5% cost: {per_rule['cost.lb_us_per_request']}")
    assert per_rule["cost.lb_us_per_request"][stats.FAIL] >= 0.95


def test_a_planted_30pct_p99_is_caught_by_the_default_p99_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """The default +20 % p99 rule: p99 +30 % (stalls and all) fails; nothing else does."""
    _, per_rule = rates(200, 3, p99_effect=1.30)
    with capsys.disabled():
        print(f"\nduet, planted +30% p99: {per_rule['latency_ms.p99']}")
    assert per_rule["latency_ms.p99"][stats.FAIL] >= 0.95
    assert per_rule["cost.lb_us_per_request"][stats.FAIL] <= 0.02


def test_a_verdict_the_spread_between_labs_could_undo_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """Two labs of one config differ for a whole duet (sd 1.0 % in cost here): a change right at the +2 % limit.

    Each synthetic duet gets its own lab offset, which no slice interval sees; the
    gate then FAILs a change that is only at the limit far more often than its
    alpha says. A FAIL without the spread note must be as rare as the interval claims.
    """
    rng = np.random.default_rng(7)
    trials = 120
    duets = []
    for _ in range(trials):
        offset = float(np.exp(rng.normal(0, LAB_SPREAD["cost.lb_us_per_request"])))
        duets.append(synthetic_slices(rng, PLANNED, cost_effect=1.02 * offset))

    def judged(slices: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[bool, bool]:
        """(the cost rule failed, it failed without the spread note)."""
        base, cand = slices
        seq = Sequential(RULES, LOOKS, PLANNED, stats.ALPHA, defaults=True)
        n = next(n for n in LOOKS if seq.look(n, base.iloc[:n], cand.iloc[:n]))
        outcomes, notes = judge_slices(base.iloc[:n], cand.iloc[:n], RULES, seq.history[-1]["alpha"], False, True)
        if next(o for o in outcomes if o.metric == "cost.lb_us_per_request").status != stats.FAIL:
            return False, False
        return True, not any(x.startswith("cost.lb_us_per_request: FAIL on these two labs, but") for x in notes)

    results = map_on_cores(judged, duets)
    fails, unflagged = sum(f for f, _ in results), sum(u for _, u in results)
    with capsys.disabled():
        print(f"\nduet, +2% cost with a lab offset per duet: {fails}/{trials} FAIL, {unflagged} without the spread note")
    assert fails > 0.05 * trials  # the problem is there: the slices' interval alone fails it too often
    assert unflagged <= 0.025 * trials


# --------------------------------------------------------------------------- a duet folder on disk


def write_side(run_dir: Path, start: float, seconds: int, cpu_per_s: float, rate: float, latency_ms: float) -> None:
    """A run directory with 1 Hz cpu and haproxy_stat samples and per-request rows: cost = cpu_per_s / rate."""
    run_dir.mkdir(parents=True)
    run = {"schema_version": 1, "id": run_dir.name, "status": "completed", "scenario": {"name": "open"}, "variant": None, "overrides": {}}
    (run_dir / "run.json").write_text(json.dumps({**run, "machine": {"hostname": "h", "cpus": 2, "kernel": "k"}}))
    t = start + np.arange(seconds + 1, dtype=float) + 0.3
    cpu = ChunkWriter(run_dir, "cpu", "test")
    cpu.write({"t": list(t), "container": ["lb-a-frontend"] * t.size, "role": ["frontend"] * t.size, "node": ["lb-a"] * t.size, "cpu": [0] * t.size, "usage_s": list(cpu_per_s * (t - start))})
    stat = {name: [math.nan] * t.size for name in TABLES["haproxy_stat"].names}
    stat.update(t=list(t), node=["lb-a"] * t.size, service=["lb-a-frontend"] * t.size, kind=["frontend"] * t.size, pxname=["clients"] * t.size)
    stat.update(svname=["FRONTEND"] * t.size, type=[0] * t.size, status=["OPEN"] * t.size)
    stat["req_tot"] = list(rate * (t - start))
    ChunkWriter(run_dir, "haproxy_stat", "test").write(stat)
    n = int(rate * seconds)
    intended = start + np.arange(n) / rate
    ChunkWriter(run_dir, "requests", "test").write(
        {
            "t": list(intended), "latency_ms": [latency_ms] * n, "bytes": [1024] * n, "status": [200] * n, "error": [""] * n,
            "name": ["GET /"] * n, "worker": ["w"] * n, "conn_new": [False] * n, "intended_t": list(intended), "latency_corrected_ms": [latency_ms] * n,
        }
    )  # fmt: skip


def test_a_duet_folder_is_judged_from_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = 1_800_000_000.0
    out = tmp_path / "duet"
    write_side(out / "baseline", start, 70, cpu_per_s=0.40, rate=1000, latency_ms=2.0)
    write_side(out / "candidate", start, 70, cpu_per_s=0.44, rate=1000, latency_ms=2.0)  # +10 % CPU at the same rate
    design = {"slice_s": 5.0, "warmup_s": 2.0, "planned": 12, "start_at": start, "rate": 1000.0}
    sides = {"baseline": "baseline", "candidate": "candidate"}
    (out / "duet.json").write_text(json.dumps({"schema_version": 1, "status": "completed", "design": design, "sides": sides, "start_order": ["candidate", "baseline"], "slices": 12, "looks": []}))
    verdict = judge_duet_folder(out, [parse_rule("cost.lb_us_per_request: +2%"), parse_rule("latency_ms.p50: +10%")], alpha=0.05)
    cost, p50 = verdict["rules"]
    assert cost["baseline"] == pytest.approx(400.0, rel=1e-3) and cost["candidate"] == pytest.approx(440.0, rel=1e-3)
    assert cost["status"] == "fail" and cost["n"] == [12, 12]
    assert p50["status"] == "pass" and p50["change_pct"] == 0.0  # the same latency on both sides: identical
    assert verdict["design"] == "duet" and verdict["duet"]["slices"] == 12
    # the same from the command line, with the default rules (the handshake rule is left out: no handshakes)
    assert main(["gate", "--duet", str(out), "--json", str(tmp_path / "v.json")]) == 1
    v = json.loads((tmp_path / "v.json").read_text())
    assert [r["rule"] for r in v["rules"]] == [r for r in DUET_RULES if "handshake" not in r]
    assert any("cost.lb_us_per_full_handshake" in n and "left out" in n for n in v["notes"])
    # what the intervals cannot cover is said with the verdict (A/A duets: two labs of one config differ)
    assert any(n.startswith("the intervals cover the noise between slices of these two labs") for n in v["notes"])
    assert "gate: FAIL" in capsys.readouterr().out


def test_a_duet_whose_lab_changed_decides_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A side whose lab changed under the duet (run.json status invalid) leaves every rule inconclusive (exit 3)."""
    start = 1_800_000_000.0
    out = tmp_path / "duet"
    write_side(out / "baseline", start, 70, cpu_per_s=0.40, rate=1000, latency_ms=2.0)
    write_side(out / "candidate", start, 70, cpu_per_s=0.44, rate=1000, latency_ms=2.0)  # +10 %: would fail
    run_json = out / "candidate" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "status": "invalid", "integrity": {"problems": [], "headline": "lb-a-frontend died at +20.0 s"}}))
    design = {"slice_s": 5.0, "warmup_s": 2.0, "planned": 12, "start_at": start, "rate": 1000.0}
    duet = {"schema_version": 1, "status": "invalid", "design": design, "sides": {"baseline": "baseline", "candidate": "candidate"}, "start_order": ["baseline", "candidate"]}
    (out / "duet.json").write_text(json.dumps({**duet, "slices": 12}))
    assert main(["gate", "--duet", str(out), "--json", str(tmp_path / "v.json")]) == 3
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["verdict"] == "inconclusive" and {r["status"] for r in v["rules"]} == {"inconclusive"}
    assert v["notes"][0].startswith("NOT COMPARABLE: the candidate's lab changed during the duet (lb-a-frontend died at +20.0 s)")
    capsys.readouterr()
    # stopped before enough slices: one line, exit 2
    (out / "duet.json").write_text(json.dumps({**duet, "slices": 2}))
    assert main(["gate", "--duet", str(out)]) == 2
    assert "not comparable: the candidate's lab changed during the duet (lb-a-frontend died at +20.0 s) (after 2 slices)" in capsys.readouterr().err


def test_a_probe_step_is_judged_like_find_max(tmp_path: Path) -> None:
    """--rate auto: one side's probe step from its pacing and request samples, judged by find-max's criteria."""
    from bench.duet import _probe_step
    from bench.gate.sequential import saturation_note
    from bench.load.findmax import Bounds, judge

    start = 1_800_000_000.0
    secs = np.arange(3) + start
    ChunkWriter(tmp_path, "pacing", "test").write(
        {"t": list(secs), "worker": ["w"] * 3, "flow": ["https"] * 3, "due": [100] * 3, "sent": [100] * 3, "late": [0, 0, 0],
         "dropped": [0] * 3, "waited": [0] * 3, "resumed": [0] * 3, "dispatch_lag_max_ms": [1.0] * 3}
    )  # fmt: skip
    intended = start + np.arange(300) / 100
    lat = np.where(intended < start + 2, 2.0, 400.0)  # the last second is slow
    ChunkWriter(tmp_path, "requests", "test").write(
        {"t": list(intended), "latency_ms": list(lat), "bytes": [1] * 300, "status": [200] * 300, "error": [""] * 300, "name": ["GET /"] * 300,
         "worker": ["w"] * 300, "conn_new": [False] * 300, "intended_t": list(intended), "latency_corrected_ms": list(lat)}
    )  # fmt: skip
    bounds = Bounds(p99_ms=100.0, error_pct=1.0)
    good = _probe_step(tmp_path, 100.0, (start, start + 2.0))
    assert (good.due, good.sent, good.done, good.errors) == (200, 200, 200, 0)
    assert judge(good, bounds)[0] == "pass"
    bad = _probe_step(tmp_path, 100.0, (start + 2.0, start + 3.0))
    assert judge(bad, bounds)[0] == "fail" and "p99" in judge(bad, bounds)[1]
    note = saturation_note({"probe": {"max_held": 759.4, "max_held_by_side": {"baseline": 759.4, "candidate": 506.3}, "fraction": 0.6, "rate": 455.6}})
    assert "baseline 759, candidate 506" in note[0] and "60% of 759" in note[0]


def write_unfinished(run_dir: Path, intended: list[float], dropped_t: float) -> None:
    """Rate-model requests sent at ``intended`` and dropped unanswered at ``dropped_t`` (the unfinished table)."""
    n = len(intended)
    ChunkWriter(run_dir, "unfinished", "test").write(
        {"t": intended, "dropped_t": [dropped_t] * n, "worker": ["w"] * n, "name": ["GET /"] * n, "phase": ["response"] * n,
         "conn_new": [False] * n, "intended_t": intended, "trace_id": [None] * n}
    )  # fmt: skip


def hung_duet(out: Path, start: float, latency_ms: tuple[float, float] = (2.0, 2.0)) -> None:
    """A duet folder of 12 slices at 1000 req/s, the same cost on both sides."""
    write_side(out / "baseline", start, 70, cpu_per_s=0.40, rate=1000, latency_ms=latency_ms[0])
    write_side(out / "candidate", start, 70, cpu_per_s=0.40, rate=1000, latency_ms=latency_ms[1])
    design = {"slice_s": 5.0, "warmup_s": 2.0, "planned": 12, "start_at": start, "rate": 1000.0}
    duet = {"schema_version": 1, "status": "completed", "design": design, "sides": {"baseline": "baseline", "candidate": "candidate"}}
    (out / "duet.json").write_text(json.dumps({**duet, "start_order": ["baseline", "candidate"], "slices": 12, "looks": []}))


def test_a_duet_side_whose_requests_hang_does_not_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The slices count answered requests only: 40 hung in the candidate's slices leave its latency and error rules undecided."""
    start = 1_800_000_000.0
    out = tmp_path / "duet"
    hung_duet(out, start)
    assert main(["gate", "--duet", str(out)]) == 0  # on the answered requests alone: the same on both sides
    capsys.readouterr()
    write_unfinished(out / "candidate", list(start + 10.0 + np.arange(40) * 1.0), start + 75.0)
    assert main(["gate", "--duet", str(out), "--json", str(tmp_path / "v.json")]) == 3
    v = json.loads((tmp_path / "v.json").read_text())
    status = {r["metric"]: r["status"] for r in v["rules"]}
    # HAProxy's CPU per request counts what HAProxy received, not what the client saw finish
    assert status == {"cost.lb_us_per_request": "pass", "latency_ms.p50": "inconclusive", "latency_ms.p99": "inconclusive", "errors.pct": "inconclusive"}
    p50 = next(r for r in v["rules"] if r["metric"] == "latency_ms.p50")
    assert p50["message"].endswith(
        f"PASS on the answered requests only: the candidate's run ({out / 'candidate'}): 40 requests sent before the last judged slice ended and never answered, "
        "oldest waiting 65.0 s; the slices' latency_ms.p50 leaves them out: undecided"
    )
    assert any(n.startswith(f"the candidate's run ({out / 'candidate'}) left 40 requests sent before the last judged slice ended unanswered") for n in v["notes"])
    assert "gate: INCONCLUSIVE (3 of 4 rules undecided; exit 3)" in capsys.readouterr().out


def test_a_duet_fail_the_hung_requests_cannot_undo_stays_a_fail(tmp_path: Path) -> None:
    """The candidate alone hung, slower: requests that waited longer than any of its slices' p99 could only raise it."""
    start = 1_800_000_000.0
    out = tmp_path / "duet"
    hung_duet(out, start, latency_ms=(2.0, 3.0))
    rules = [parse_rule("latency_ms.p99: +20%"), parse_rule("errors.total: <= 0")]
    write_unfinished(out / "candidate", list(start + 10.0 + np.arange(4) * 5.0), start + 75.0)
    verdict = judge_duet_folder(out, rules, alpha=0.05)
    assert [r["status"] for r in verdict["rules"]] == ["fail", "inconclusive"]
    # the same hang on the baseline could undo it (its p99 could be anything)
    write_unfinished(out / "baseline", list(start + 10.0 + np.arange(4) * 5.0), start + 75.0)
    verdict = judge_duet_folder(out, rules, alpha=0.05)
    assert [r["status"] for r in verdict["rules"]] == ["inconclusive", "inconclusive"]
    assert "the baseline's run" in verdict["rules"][0]["message"] and "the candidate's run" in verdict["rules"][0]["message"]


def test_requests_hung_after_the_judged_slices_change_nothing(tmp_path: Path) -> None:
    start = 1_800_000_000.0
    out = tmp_path / "duet"
    hung_duet(out, start)
    end = start + 2.0 + 12 * 5.0  # warmup, then 12 slices of 5 s
    write_unfinished(out / "candidate", [end + 0.5, end + 3.0], end + 8.0)
    verdict = judge_duet_folder(out, None, alpha=0.05)
    assert verdict["verdict"] == "pass" and not [n for n in verdict["notes"] if "unanswered" in n]


def test_bench_compare_reads_a_duet_folder(tmp_path: Path) -> None:
    from bench.compare import compare

    start = 1_800_000_000.0
    out = tmp_path / "duet"
    write_side(out / "baseline", start, 40, cpu_per_s=0.40, rate=500, latency_ms=2.0)
    write_side(out / "candidate", start, 40, cpu_per_s=0.42, rate=500, latency_ms=3.0)
    design = {"slice_s": 5.0, "warmup_s": 2.0, "planned": 6, "start_at": start, "rate": 500.0}
    sides = {"baseline": "baseline", "candidate": "candidate"}
    (out / "duet.json").write_text(json.dumps({"schema_version": 1, "status": "completed", "design": design, "sides": sides, "start_order": ["baseline", "candidate"], "slices": 6}))
    doc = compare([str(out)], fmt="json", output=str(tmp_path / "c.json"), plots=False)
    assert doc["design"] == "duet" and [g["label"] for g in doc["groups"]] == ["baseline", "candidate"]
    rows = {r["metric"]: r for r in doc["comparisons"][0]["rows"]}
    assert rows["cost.lb_us_per_request"]["ratio"] == pytest.approx(1.05, abs=1e-3) and rows["cost.lb_us_per_request"]["test"] == "paired t 6 slices"
    assert rows["latency_ms.p50"]["phrase"] == "1.50x slower"


def test_two_halves_on_two_machines_are_judged_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--side: each machine runs one side from the same instant; bench gate --duet A --duet B judges the pair."""
    start = 1_800_000_000.0
    design = {"slice_s": 5.0, "warmup_s": 2.0, "planned": 12, "start_at": start, "rate": 1000.0}
    for side, cpu in (("baseline", 0.40), ("candidate", 0.46)):
        write_side(tmp_path / side / side, start, 70, cpu_per_s=cpu, rate=1000, latency_ms=2.0)
        doc = {"schema_version": 1, "status": "completed", "design": design, "sides": {side: side}, "start_order": [side], "slices": 12 if side == "baseline" else 11}
        (tmp_path / side / "duet.json").write_text(json.dumps(doc))
    code = main(["gate", "--duet", str(tmp_path / "candidate"), "--duet", str(tmp_path / "baseline"), "--rule", "cost.lb_us_per_request: +5%", "--json", str(tmp_path / "v.json")])
    v = json.loads((tmp_path / "v.json").read_text())
    assert code == 1 and v["rules"][0]["status"] == "fail" and v["rules"][0]["n"] == [11, 11]  # the slices both halves have
    assert v["duet"]["sharing"].startswith("two machines, one side each")
    # halves that do not fit together are refused in one line
    other = json.loads((tmp_path / "candidate" / "duet.json").read_text())
    other["design"]["start_at"] = start + 1
    (tmp_path / "candidate" / "duet.json").write_text(json.dumps(other))
    assert main(["gate", "--duet", str(tmp_path / "candidate"), "--duet", str(tmp_path / "baseline")]) == 2
    assert "its start_at" in capsys.readouterr().err
    assert main(["gate", "--duet", str(tmp_path / "baseline"), "--duet", str(tmp_path / "baseline")]) == 2
    assert "a second baseline" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--side", "candidate", "--rate", "400"], "--side and --start-at go together"),
        (["--side", "candidate", "--start-at", "2999-01-01T00:00:00Z"], "--side needs --rate"),
        (["--side", "candidate", "--rate", "400", "--start-at", "1000"], "less than a minute from now"),
        (["--side", "candidate", "--rate", "400", "--start-at", "tomorrow"], "not a time: 'tomorrow'"),
    ],
)
def test_half_duet_arguments(argv: list[str], expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", "--run", "open", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0]
    assert not (tmp_path / "out").exists()


def test_the_two_labs_of_a_duet_are_rendered_on_subnets_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # each side's Locust starts (behind its gate) before the labs come up, so both labs are rendered
    # first: on the same free pair the second lab would have to come up on others, and its Locust afresh
    import ipaddress
    from types import SimpleNamespace

    from bench import duet

    pairs = [tuple(ipaddress.ip_network(f"198.18.{i}.0/24") for i in (k, k + 1)) for k in (0, 2)]
    monkeypatch.setattr(duet, "free_subnet_pairs", lambda: list(pairs))

    class Lab:
        plan = None

        def prepare(self, subnets: tuple[str, str]) -> SimpleNamespace:
            self.plan = SimpleNamespace(client_subnet=subnets[0], server_subnet=subnets[1])
            return self.plan

    sides = [SimpleNamespace(name=n, lab=Lab()) for n in duet.SIDES]
    for _ in range(20):  # the pairs are drawn at random
        plans = duet._prepare_labs(sides)  # type: ignore[arg-type]
        assert {p.client_subnet for p in plans.values()} == {"198.18.0.0/24", "198.18.2.0/24"}
        assert all(plans[s.name] is s.lab.plan for s in sides)
    monkeypatch.setattr(duet, "free_subnet_pairs", lambda: pairs[:1])
    with pytest.raises(duet.UserError, match="no free /23"):
        duet._prepare_labs(sides)  # type: ignore[arg-type]


def test_a_duets_labs_go_down_beside_its_reports_and_are_all_down_when_it_ends(tmp_path: Path) -> None:
    """The duet's teardown: both sides' logs and `compose down` run in the background while the reports are
    built (they need neither); joining waits for every lab, then names the one that failed."""
    import threading
    from types import SimpleNamespace

    from bench.duet import SIDES, _join, _teardown
    from bench.errors import UserError
    from bench.results.layout import RunDir

    release = threading.Event()

    class Lab:
        def __init__(self, project: str, fail: bool) -> None:
            self.project, self.started, self.fail, self.down_done = project, True, fail, False
            self.logs: Path | None = None

        def save_logs(self, dest: Path) -> None:
            self.logs = dest

        def down(self) -> None:
            release.wait(30)
            self.down_done = True
            if self.fail:
                raise RuntimeError("the engine went away")

    sides = [
        SimpleNamespace(name=n, locust=None, run={}, events=None, collectors=None, watch=None, lab=Lab(f"p-{n}", n == "candidate"), run_dir=tmp_path / n)
        for n in SIDES
    ]
    downs = _teardown(sides, log=lambda _m: None)  # stand-ins for what _teardown reads
    assert not any(s.lab.down_done for s in sides)  # it returned while both labs were going down
    release.set()
    with pytest.raises(UserError, match="bench down p-candidate"):
        _join(downs)
    assert all(s.lab.down_done and s.lab.logs == RunDir(s.run_dir).logs for s in sides)
