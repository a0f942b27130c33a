"""The gate must not cry wolf: measured false-alarm rate on synthetic noise with no real change.

Each trial draws a baseline and a candidate from the *same* distribution (so any
failure is a false alarm) and evaluates the default rules through the same code
path as `bench gate` (groups of runs with summary figures and per-second series).
The rates are printed (run pytest with ``-s`` to see them) and asserted under 5 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import gate as g
from bench.compare import Group, Run

from .synthetic import ar1

TRIALS = 400
#: Trials for the informational measurements (power, drift): fewer, to keep the unit tests fast.
FEW_TRIALS = 200
RULES = [g.parse_rule(t) for t in g.DEFAULT_RULES]


def synthetic_group(rng: np.random.Generator, label: str, runs: int, run_cv: float, scale: float = 1.0, seconds: int = 30) -> Group:
    """``runs`` runs around 3000 req/s and 12 ms p99: each run's level varies by ``run_cv`` (machine drift),
    each second around it as an AR(1) series (rho 0.5; 10 % for the rate, 20 % for p99)."""
    members = []
    for i in range(runs):
        rps_level = 3000.0 * scale * (1 + run_cv * rng.normal())
        p99_level = 12.0 * (1 + 2 * run_cv * rng.normal())
        rps = ar1(rng, seconds, 0.5, 0.10, rps_level)
        p99 = ar1(rng, seconds, 0.5, 0.20, p99_level)
        series = None
        if runs < 3:  # repeats are tested on per-run values; only single runs need per-second series
            series = pd.DataFrame(
                {"second": np.arange(seconds), "requests": rps, "errors": 0.0, "connections": np.nan, "p50_ms": p99 / 3, "p99_ms": p99}
            )
        summary = {"requests": {"per_s": float(rps.mean())}, "latency_ms": {"p99": float(p99.mean())}, "errors": {"total": 0}}
        run = {"id": f"{label}-{i}", "status": "completed", "scenario": {"name": "synthetic"}}
        members.append(Run(Path(f"synthetic/{label}-{i}"), run, summary, series))
    return Group("synthetic", label, "synthetic", members)


def alarm_rate(runs: int, run_cv: float, scale: float = 1.0, seed: int = 2024, trials: int = TRIALS) -> float:
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(trials):
        base = synthetic_group(rng, "baseline", runs, run_cv)
        cand = synthetic_group(rng, "candidate", runs, run_cv, scale)
        alarms += g.judge(base, cand, RULES)["verdict"] == "fail"
    return alarms / trials


@pytest.mark.parametrize(
    ("runs", "run_cv", "what"),
    [
        (3, 0.03, "3 v 3 repeats, 3% run-to-run noise"),
        (5, 0.03, "5 v 5 repeats, 3% run-to-run noise"),
        (1, 0.0, "1 v 1 run, per-second noise only (10%/s, AR(1) rho 0.5, 30 s)"),
    ],
)
def test_false_alarm_rate_under_5pct(runs: int, run_cv: float, what: str, capsys: pytest.CaptureFixture[str]) -> None:
    rate = alarm_rate(runs, run_cv)
    with capsys.disabled():
        print(f"\ngate false alarms, no real change, {what}: {rate:.1%} of {TRIALS} trials (default rules)")
    assert rate < 0.05


def test_single_runs_cannot_see_run_to_run_drift(capsys: pytest.CaptureFixture[str]) -> None:
    """Documented limitation: one run per side sees only within-run noise, so drift between runs
    beyond the threshold looks real. Measured and printed; the cure is repeats (see docs/compare-gate.md)."""
    single = alarm_rate(1, 0.02, trials=FEW_TRIALS)
    repeats = alarm_rate(3, 0.02, trials=FEW_TRIALS)
    with capsys.disabled():
        print(f"\ngate false alarms with 2% run-to-run drift: single runs {single:.1%}, 3 v 3 repeats {repeats:.1%} ({FEW_TRIALS} trials)")
    assert repeats < 0.05 and repeats <= single


@pytest.mark.parametrize(("runs", "least"), [(3, 0.8), (5, 0.95)])
def test_planted_20pct_drop_is_caught_by_repeats(runs: int, least: float, capsys: pytest.CaptureFixture[str]) -> None:
    rate = alarm_rate(runs, 0.03, scale=0.8, trials=FEW_TRIALS)
    with capsys.disabled():
        print(f"\ngate catches a planted 20% throughput drop, {runs} v {runs} repeats, 3% noise: {rate:.1%} of {FEW_TRIALS} trials")
    assert rate >= least
