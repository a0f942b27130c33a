"""bench.stats: ratios with intervals, the pass/fail/inconclusive decision, sequential looks, per-second series.

The rates here are measured on synthetic data with known effects, through the
same functions the gate calls; printed with ``pytest -s``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import stats
from bench.results.store import ChunkWriter

from .cores import map_on_cores


def test_paired_ratio_and_interval() -> None:
    base = np.array([400.0, 410.0, 395.0, 420.0, 405.0])
    cand = base * np.array([1.05, 1.04, 1.06, 1.053, 1.047])
    e = stats.paired(base, cand)
    assert e is not None and e.design == "paired" and e.scale == "log" and e.n == (5, 5)
    assert e.ratio == pytest.approx(1.05, abs=0.005)
    lo, hi = e.ci()
    assert lo <= 1.05 <= hi and hi - lo < 0.04
    assert e.p() < 0.01


def test_a_stalled_slice_does_not_decide() -> None:
    """One slice where a stall hit the candidate 10x harder: the trimmed mean barely moves, the plain mean would."""
    base = np.full(20, 2.0)
    cand = 2.0 * np.exp(np.random.default_rng(1).normal(0, 0.03, 20))
    cand[7] = 200.0
    e = stats.paired(base, cand)
    assert e is not None and abs(e.ratio - 1) < 0.03
    plain = stats.paired(base, cand, trim=0.0)
    assert plain is not None and plain.ratio > 1.2


def test_pairs_with_a_missing_side_are_left_out() -> None:
    e = stats.paired([1.0, 2.0, None, 4.0, 5.0], [1.1, 2.2, 3.3, float("nan"), 5.5])
    assert e is not None and e.n == (3, 3) and e.ratio == pytest.approx(1.1)
    assert stats.paired([1.0, 2.0], [1.0, 2.0]) is None  # fewer than MIN_PAIRS
    with pytest.raises(ValueError, match="as many"):
        stats.paired([1.0, 2.0, 3.0], [1.0])


def test_zeros_use_the_linear_scale() -> None:
    e = stats.paired([0.0, 2.0, 1.0, 1.0], [1.0, 3.0, 2.0, 2.0])
    assert e is not None and e.scale == "linear" and e.ratio == pytest.approx(2.0)


def test_independent_ratio_is_welch_on_logs() -> None:
    e = stats.independent([100.0, 104.0, 98.0], [110.0, 112.0, 108.0])
    assert e is not None and e.design == "independent" and e.describe() == "welch t 3v3 runs"
    assert e.ratio == pytest.approx(math.exp(np.log([110, 112, 108]).mean() - np.log([100, 104, 98]).mean()))
    assert stats.independent([100.0], [110.0, 111.0]) is None


def test_one_run_per_side_is_never_significant() -> None:
    sig = stats.significance([3000.0], [1500.0])
    assert sig.significant is None and sig.marker == stats.NOISE_UNKNOWN
    assert sig.describe() == stats.ONE_RUN


def test_identical_values_need_no_test() -> None:
    sig = stats.significance([0, 0, 0], [0, 0, 0])
    assert sig.test == "identical" and sig.marker == stats.WITHIN_NOISE


@pytest.mark.parametrize(
    ("effect", "threshold", "expect"),
    [
        (1.10, 0.02, stats.FAIL),  # far beyond a +2% limit
        (1.00, 0.05, stats.PASS),  # well inside a +5% limit
        (1.02, 0.02, stats.INCONCLUSIVE),  # on the limit
        (0.80, -0.05, stats.FAIL),  # a drop beyond a -5% limit
        (1.20, -0.05, stats.PASS),  # a rise never fails a drop rule
    ],
)
def test_decide(effect: float, threshold: float, expect: str) -> None:
    rng = np.random.default_rng(7)
    base = 400 * np.exp(rng.normal(0, 0.03, 40))
    cand = base * effect * np.exp(rng.normal(0, 0.01, 40))
    e = stats.paired(base, cand)
    assert e is not None
    assert stats.decide(e, threshold).status == expect


def test_detectable_and_more_needed() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(math.log(1.03), 0.04, 20)
    e = stats.paired(np.ones(20) * 100, 100 * np.exp(d))
    assert e is not None
    dec = stats.decide(e, 0.02)
    assert dec.status == stats.INCONCLUSIVE and dec.more is not None and dec.more > 0
    # the detectable change is the threshold plus (t_{1-a/2} + t_{power}) standard errors
    reach = (stats.t_quantile(0.975, e.df) + stats.t_quantile(0.95, e.df)) * e.se
    assert dec.detectable == pytest.approx(math.exp(math.log(1.02) + reach))
    assert dec.passable == pytest.approx(math.exp(math.log(1.02) - reach))
    # with that many more slices of the same mean and spread the interval clears the limit
    n = 20 + dec.more
    more = stats.Estimate("paired", "log", (n, n), e.center, e.sd / math.sqrt(n), n * (1 - 2 * stats.TRIM) - 1, e.sd)
    assert stats.decide(more, 0.02).status != stats.INCONCLUSIVE


def test_look_boundaries_are_obrien_fleming() -> None:
    # Lan-DeMets O'Brien-Fleming-type, 4 equally spaced looks, two-sided 0.05: 4.33, 2.96, 2.36, 2.01 (textbook values)
    from scipy.special import ndtri

    z = [float(ndtri(1 - a / 2)) for a in stats.look_alphas([12, 24, 36, 48], 48, 0.05)]
    assert z == pytest.approx([4.333, 2.963, 2.359, 2.014], abs=0.01)
    assert stats.look_alphas([48], 48) == pytest.approx([0.05])


# --------------------------------------------------------------------------- sequential gate on synthetic slices


LOOKS = (12, 18, 24, 30, 36, 42, 48)


def sequential_gate(d: np.ndarray, threshold: float = 0.02, looks: tuple[int, ...] = LOOKS) -> str:
    """One gate on the paired log-ratios ``d`` (one per planned slice), judged at every look until decided."""
    planned = looks[-1]
    cand = 400 * np.exp(d)
    alphas = stats.look_alphas(looks, planned)
    for n, a in zip(looks, alphas, strict=True):
        e = stats.paired(np.full(n, 400.0), cand[:n])
        assert e is not None
        status = stats.decide(e, threshold, a).status
        if status != stats.INCONCLUSIVE:
            return status
    return stats.INCONCLUSIVE


def rates(effect: float, sd: float, trials: int = 2000, seed: int = 11) -> dict[str, float]:
    """Verdict rates of ``trials`` gates whose slices' log-ratios have sd ``sd`` around log(``effect``)."""
    rng = np.random.default_rng(seed)
    drawn = [rng.normal(math.log(effect), sd, LOOKS[-1]) for _ in range(trials)]  # in order: the same gates on any number of cores
    out = map_on_cores(sequential_gate, drawn)
    return {s: out.count(s) / trials for s in (stats.FAIL, stats.PASS, stats.INCONCLUSIVE)}


def test_sequential_wrong_verdicts_stay_within_alpha_at_the_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    """A true change exactly at the +2% limit: failing it and passing it are both wrong; each at most alpha/2."""
    r = rates(1.02, 0.04)
    with capsys.disabled():
        print(f"\nsequential, true change = the +2% limit, slice sd 4%: fail {r['fail']:.1%} pass {r['pass']:.1%} (bound 2.5% each)")
    assert r[stats.FAIL] <= 0.025 + 0.01 and r[stats.PASS] <= 0.025 + 0.01


@pytest.mark.parametrize("sd", [0.03, 0.05])
def test_sequential_aa_never_fails(sd: float, capsys: pytest.CaptureFixture[str]) -> None:
    r = rates(1.0, sd)
    with capsys.disabled():
        print(f"\nsequential A/A, slice sd {sd:.0%}: fail {r['fail']:.1%} pass {r['pass']:.1%} inconclusive {r['inconclusive']:.1%}")
    assert r[stats.FAIL] <= 0.005


def test_sequential_catches_a_5pct_rise(capsys: pytest.CaptureFixture[str]) -> None:
    """+5% against a +2% limit with 4% slice noise and at most 48 slices: caught at least 95% of the time."""
    r = rates(1.05, 0.04)
    with capsys.disabled():
        print(f"\nsequential, true +5%, +2% limit, slice sd 4%: fail {r['fail']:.1%}")
    assert r[stats.FAIL] >= 0.95


# --------------------------------------------------------------------------- per-second series


def write_run(run_dir: Path, rows: list[tuple[float, float, str]], window: tuple[float, float] | None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"schema_version": 1, "id": run_dir.name, "status": "completed"}))
    if window is not None:
        (run_dir / "summary.json").write_text(json.dumps({"schema_version": 1, "window": {"start": window[0], "end": window[1]}}))
    w = ChunkWriter(run_dir, "requests", "test")
    w.write(
        {
            "t": [r[0] for r in rows],
            "latency_ms": [r[1] for r in rows],
            "bytes": [0] * len(rows),
            "status": [200 if r[2] == "" else 0 for r in rows],
            "error": [r[2] for r in rows],
            "name": ["/"] * len(rows),
            "worker": ["w"] * len(rows),
            "conn_new": [None] * len(rows),
        }
    )
    return run_dir


def test_per_second_series_bins_the_steady_window(tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    rows = [(t0 - 0.5, 1.0, "")]  # before the window: dropped
    rows += [(t0 + 0.1 * i, 2.0 + i % 3, "") for i in range(10)]  # second 0: 10 ok
    rows += [(t0 + 1.2, 5.0, "reset"), (t0 + 1.3, 5.0, "timeout")]  # second 1: errors only
    rows += [(t0 + 2.5, 4.0, "")] * 4  # second 2: 4 ok
    rows += [(t0 + 3.2, 9.0, "")]  # past the last whole second of the window: dropped
    run_dir = write_run(tmp_path / "r", rows, (t0, t0 + 3.1))
    s = stats.per_second_series(run_dir)
    assert list(s.columns) == list(stats.SERIES_COLUMNS)
    assert s["second"].tolist() == [0, 1, 2]
    assert s["requests"].tolist() == [10, 0, 4]
    assert s["errors"].tolist() == [0, 2, 0]
    assert s["connections"].isna().all()
    assert s["p50_ms"].iloc[0] == pytest.approx(3.0) and math.isnan(s["p50_ms"].iloc[1])
    assert s["p99_ms"].iloc[2] == pytest.approx(4.0)


def test_per_second_series_without_samples_is_empty(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    (run_dir / "summary.json").write_text(json.dumps({"window": {"start": 10.0, "end": 20.0}}))
    s = stats.per_second_series(run_dir)
    assert s.empty and list(s.columns) == list(stats.SERIES_COLUMNS)
