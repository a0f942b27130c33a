"""How often `bench gate` on finished runs cries wolf, and how often it catches a planted regression.

Baseline and candidate repeats are drawn from known distributions and judged by
the gate's own code (:func:`bench.gate.judge`). Measured rates are printed (run
with ``pytest -s``) and asserted with margins. The duet's sequential procedure
is measured in tests/unit/test_stats.py and tests/unit/test_duet_gate.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import gate as g
from bench.compare import Group, Run

from .cores import map_on_cores

TRIALS = 400
RULES = [g.parse_rule(t) for t in g.DEFAULT_RULES]


def synthetic_group(rng: np.random.Generator, label: str, runs: int, run_cv: float, scale: float = 1.0) -> Group:
    """``runs`` runs around 3000 req/s and 12 ms p99, each run's level varying by ``run_cv`` (2x that for p99)."""
    members = []
    for i in range(runs):
        rps = 3000.0 * scale * (1 + run_cv * rng.normal())
        p99 = 12.0 * (1 + 2 * run_cv * rng.normal())
        summary = {"requests": {"per_s": rps}, "latency_ms": {"p99": p99}, "errors": {"total": 0}}
        run = {"id": f"{label}-{i}", "status": "completed", "scenario": {"name": "synthetic"}}
        members.append(Run(Path(f"synthetic/{label}-{i}"), run, summary))
    return Group("synthetic", label, "synthetic", members)


def verdicts(runs: int, run_cv: float, scale: float = 1.0, seed: int = 2024, trials: int = TRIALS) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    pairs = []  # drawn first, in order: the same gates on any number of cores
    for _ in range(trials):
        base = synthetic_group(rng, "baseline", runs, run_cv)
        pairs.append((base, synthetic_group(rng, "candidate", runs, run_cv, scale)))
    out: list[str] = map_on_cores(lambda pair: g.judge(*pair, RULES)["verdict"], pairs)
    return {v: out.count(v) / trials for v in ("fail", "pass", "inconclusive")}


@pytest.mark.parametrize(("runs", "run_cv"), [(3, 0.03), (5, 0.03), (5, 0.10), (1, 0.03)])
def test_no_change_almost_never_fails(runs: int, run_cv: float, capsys: pytest.CaptureFixture[str]) -> None:
    r = verdicts(runs, run_cv)
    with capsys.disabled():
        print(f"\nno change, {runs} v {runs} runs, {run_cv:.0%} run-to-run noise: fail {r['fail']:.1%} pass {r['pass']:.1%} inconclusive {r['inconclusive']:.1%}")
    assert r["fail"] <= 0.05
    if runs == 1:
        assert r["inconclusive"] == 1.0  # never a verdict from one run per side


@pytest.mark.parametrize(("runs", "least"), [(5, 0.9)])
def test_planted_20pct_drop_is_caught_by_repeats(runs: int, least: float, capsys: pytest.CaptureFixture[str]) -> None:
    r = verdicts(runs, 0.03, scale=0.8, seed=7, trials=200)
    with capsys.disabled():
        print(f"\nplanted 20% drop, {runs} v {runs} runs, 3% noise: fail {r['fail']:.1%}")
    assert r["fail"] >= least
