"""bench.stats: the tests behind "significant" / "within noise", and per-second series from a run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import stats
from bench.collect.store import ChunkWriter
from bench.load import capture

from .synthetic import ar1


def test_mann_whitney_cannot_reach_alpha_with_three_repeats() -> None:
    assert stats.mann_whitney_min_p(3, 3) == pytest.approx(0.1)
    assert stats.mann_whitney_min_p(4, 4) < 0.05
    assert stats.mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert stats.mann_whitney([5, 5, 5], [5, 5, 5]) == 1.0


def test_welch_without_spread() -> None:
    assert stats.welch_t([0, 0, 0], [0, 0, 0]) == 1.0
    assert stats.welch_t([0, 0, 0], [3, 3, 3]) == 0.0
    assert 0 < stats.welch_t([1, 2, 3], [2, 3, 4]) < 1


def test_the_test_follows_the_data() -> None:
    five, five_lower = [100, 101, 99, 100, 102], [80, 81, 79, 80, 82]
    s = stats.significance(five, five_lower)
    assert (s.test, s.significant, s.unit, s.n) == ("mann-whitney", True, "runs", (5, 5))
    assert s.ci95 is not None and s.ci95[1] < 1
    s = stats.significance(five[:3], five_lower[:3])
    assert (s.test, s.significant) == ("welch-t", True)
    series_a, series_b = np.full(20, 1000.0) + np.arange(20), np.full(20, 800.0) + np.arange(20)
    s = stats.significance([1000], [800], series_a, series_b)
    assert (s.test, s.significant, s.unit) == ("batch-means", True, "seconds")
    s = stats.significance([1000], [800])
    assert (s.test, s.significant, s.marker, s.describe()) == ("none", None, "too few data", "-")
    s = stats.significance([0], [0])
    assert (s.test, s.significant, s.marker) == ("identical", False, "within noise")
    s = stats.significance([1000], [800], series_a[:5], series_b[:5])  # fewer than MIN_SECONDS
    assert s.marker == "too few data"


def test_same_input_same_answer() -> None:
    a, b = [10.0, 11.0, 12.0, 10.5], [11.0, 12.0, 13.0, 11.5]
    assert stats.significance(a, b, seed=7) == stats.significance(a, b, seed=7)
    assert stats.seed_for("requests.per_s") != stats.seed_for("latency_ms.p99")


def test_batch_means_interval_brackets_the_ratio() -> None:
    rng = np.random.default_rng(3)
    a, b = ar1(rng, 40, 0.3, 0.05), ar1(rng, 40, 0.3, 0.05, mean=800)
    p, ci = stats.batch_means_test(a, b)
    assert p < 0.01
    assert ci is not None and ci[0] < 0.8 < ci[1] + 0.05 and ci[1] < 1


def false_positive_rate(trials: int, draw, seed: int = 11) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for t in range(trials):
        base_runs, cand_runs, base_series, cand_series = draw(rng)
        hits += bool(stats.significance(base_runs, cand_runs, base_series, cand_series, seed=t).significant)
    return hits / trials


@pytest.mark.parametrize("n", [3, 5])
def test_repeat_tests_keep_their_level(n: int, capsys: pytest.CaptureFixture[str]) -> None:
    def draw(rng):
        return rng.normal(1000, 30, n), rng.normal(1000, 30, n), None, None

    rate = false_positive_rate(400, draw)
    with capsys.disabled():
        print(f"\nfalse positives, no change, {n}v{n} repeats: {rate:.1%} (alpha 5%)")
    assert rate <= 0.075  # 5% plus two binomial standard deviations at 400 trials


def test_per_second_test_keeps_its_level_on_autocorrelated_series(capsys: pytest.CaptureFixture[str]) -> None:
    def draw(rng):
        a, b = ar1(rng, 30, 0.5, 0.1), ar1(rng, 30, 0.5, 0.1)
        return [a.mean()], [b.mean()], a, b

    rate = false_positive_rate(400, draw)
    with capsys.disabled():
        print(f"\nfalse positives, no change, single runs, 30 s per-second AR(1) rho 0.5: {rate:.1%} (alpha 5%)")
    assert rate <= 0.075  # batch means hold alpha at 30 s; Mann-Whitney on the single seconds gives ~25% here


# --------------------------------------------------------------------------- per-second series


def write_run(run_dir: Path, rows: list[tuple[float, float, str]], window: tuple[float, float] | None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"schema_version": 1, "id": run_dir.name, "status": "completed"}))
    if window is not None:
        (run_dir / "summary.json").write_text(json.dumps({"schema_version": 1, "window": {"start": window[0], "end": window[1]}}))
    w = ChunkWriter(run_dir, capture.TABLE, "test", capture.SCHEMA)
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
