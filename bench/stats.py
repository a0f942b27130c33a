"""Statistics for `bench compare` and `bench gate`: is a difference real or noise?

Two sources of evidence, used in this order:

1. **Repeats** (at least :data:`MIN_REPEATS` runs on each side): the per-run values
   of a figure (one ``requests.per_s`` per run, ...) are compared with the
   Mann-Whitney U test (two-sided, exact for small samples). With very few
   repeats U cannot reach ``alpha`` at all (3 against 3 gives p >= 0.1), so then
   Welch's t-test on the per-run values is used instead (it assumes roughly
   normal run-to-run noise). Run-to-run values carry *all* the noise, including
   machine drift, so this is the test to trust.
2. **Per-second samples** of the steady state, when there are fewer repeats: the
   successful requests per second (or per-second p50/p99 latency, errors) of each
   side, cut into :data:`BATCHES` consecutive stretches whose means go into
   Welch's t-test (the *batch means* method for autocorrelated series). A plain
   Mann-Whitney U on the seconds would ignore that neighbouring seconds are
   correlated and call noise significant far too often (see
   :func:`batch_means_test`). It still sees only the noise *within* a run, not
   between runs: treat it as a hint and repeat runs for a gate you rely on.

When neither is available the answer is "too few data" (``significant is None``),
unless every value on both sides is the same (0 errors against 0 errors): "identical".

Every random draw comes from a generator seeded by the caller (or :data:`SEED`),
so the same inputs always give the same answer (golden tests depend on it).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .results.layout import RunDir

#: Significance level of every test (two-sided).
ALPHA = 0.05
#: Runs per side needed before per-run values are tested.
MIN_REPEATS = 3
#: Steady-state seconds per side needed before per-second samples are tested (2 per batch).
MIN_SECONDS = 6
#: Batches per side of the batch-means test.
BATCHES = 3
#: Bootstrap resamples.
RESAMPLES = 2000
#: Default seed; :func:`seed_for` derives stable per-figure seeds from it.
SEED = 20240607

#: Columns of :func:`per_second_series`.
SERIES_COLUMNS = ("second", "requests", "errors", "connections", "p50_ms", "p99_ms")

SIGNIFICANT, WITHIN_NOISE, TOO_FEW = "significant", "within noise", "too few data"


@dataclass(frozen=True)
class Significance:
    """The answer to "is candidate different from baseline?" for one figure.

    ``significant`` is True, False, or None when the data are too few to tell.
    ``ci95`` is a 95 % bootstrap interval of the ratio candidate/baseline (None
    when the baseline is zero or there was nothing to resample).
    """

    test: str  # "mann-whitney", "welch-t", "batch-means", "identical" or "none"
    significant: bool | None
    p: float | None
    ci95: tuple[float, float] | None
    n: tuple[int, int]
    unit: str  # "runs", "seconds" or ""

    @property
    def marker(self) -> str:
        """"significant", "within noise" or "too few data"."""
        if self.significant is None:
            return TOO_FEW
        return SIGNIFICANT if self.significant else WITHIN_NOISE

    def describe(self) -> str:
        """Short text naming the test and its sample sizes, e.g. ``mann-whitney 5v5 runs``."""
        if self.test == "none":
            return "-"
        return f"{self.test} {self.n[0]}v{self.n[1]} {self.unit}"

    def evidence(self) -> str:
        """``p=0.008`` or ``CI 0.78-0.82`` (the number the decision rests on)."""
        if self.p is not None:
            return "p<0.001" if self.p < 0.001 else f"p={self.p:.3f}"
        if self.ci95 is not None:
            return f"CI {self.ci95[0]:.3f}-{self.ci95[1]:.3f}"
        return "-"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 is not None else None
        d["n"] = list(self.n)
        d["marker"] = self.marker
        return d


def seed_for(name: str, seed: int = SEED) -> int:
    """A stable seed for one figure, so its bootstrap does not depend on the order of figures.

    >>> seed_for("requests.per_s") == seed_for("requests.per_s")
    True
    """
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def _clean(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def mann_whitney_min_p(n: int, m: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney U test can give for sizes n and m.

    >>> mann_whitney_min_p(3, 3)
    0.1
    """
    return min(1.0, 2.0 / math.comb(n + m, n))


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (exact when small and tie-free, else asymptotic); 1.0 when all values are equal."""
    from scipy.stats import mannwhitneyu

    a, b = _clean(a), _clean(b)
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value; exact 0/1 answers when both sides have no spread at all."""
    from scipy.special import stdtr

    a, b = _clean(a), _clean(b)
    if a.var() == 0 and b.var() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (b.mean() - a.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(2 * stdtr(df, -abs(t)))


def bootstrap_ratio_ci(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, rng: np.random.Generator | None = None
) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of mean(b)/mean(a), resampling each side's values.

    None when a resampled baseline mean can be zero (the ratio is undefined).
    """
    a, b = _clean(a), _clean(b)
    if a.size == 0 or b.size == 0:
        return None
    rng = rng or np.random.default_rng(SEED)
    ma = a[rng.integers(0, a.size, (resamples, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, (resamples, b.size))].mean(axis=1)
    if np.any(ma <= 0):
        return None
    lo, hi = np.percentile(mb / ma, [2.5, 97.5])
    return float(lo), float(hi)


def batch_means(x: Sequence[float] | np.ndarray, batches: int | None = None) -> np.ndarray:
    """Means of ``batches`` consecutive, equally long stretches of a series (the oldest leftover samples dropped).

    >>> batch_means([1, 1, 2, 2, 3, 3, 4, 4], 4).tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    x = _clean(x)
    k = min(batches or BATCHES, x.size)
    length = x.size // k
    return x[x.size - k * length :].reshape(k, length).mean(axis=1)


def batch_means_test(a: Sequence[float], b: Sequence[float], batches: int | None = None) -> tuple[float, tuple[float, float] | None]:
    """Welch's t-test on the batch means of two per-second series: (p, ci95 of the ratio of means).

    Neighbouring seconds of a run are correlated (a busy neighbour, a GC pause,
    a burst of new connections last several seconds), so per-second samples are
    not independent and a test that treats them as such (Mann-Whitney U on the
    seconds) reports differences that are not there. Means of a few long
    stretches are much closer to independent. Measured false-positive rates at
    alpha 0.05 on AR(1) series with no real difference (1000 trials each):

    ============  ==========  ==========  ==========
    seconds/side  rho 0.3     rho 0.6     rho 0.8
    ============  ==========  ==========  ==========
    12            4.9 %       8.8 %       17 %
    30            3.3 %       5.1 %       7.1 %
    60            3.1 %       4.1 %       5.1 %
    ============  ==========  ==========  ==========

    (Mann-Whitney U on the single seconds: 13 %, 32 %, 51 % at 12-30 s.) So 3
    batches per side hold alpha from about 30 s of steady state on. The interval
    is the t-interval of the difference of means, divided by the baseline mean.
    """
    from scipy.special import stdtrit

    ma, mb = batch_means(a, batches), batch_means(b, batches)
    p = welch_t(ma, mb)
    va, vb = ma.var(ddof=1) / ma.size, mb.var(ddof=1) / mb.size
    base = float(_clean(a).mean())
    if base <= 0 or va + vb == 0:
        return p, None
    df = (va + vb) ** 2 / (va**2 / (ma.size - 1) + vb**2 / (mb.size - 1))
    half = float(stdtrit(df, 0.975)) * math.sqrt(va + vb)
    diff = float(_clean(b).mean()) - base
    return p, (1 + (diff - half) / base, 1 + (diff + half) / base)


def significance(
    base_runs: Sequence[float | None],
    cand_runs: Sequence[float | None],
    base_series: Sequence[float] | np.ndarray | None = None,
    cand_series: Sequence[float] | np.ndarray | None = None,
    alpha: float = ALPHA,
    seed: int = SEED,
) -> Significance:
    """Decide whether candidate differs from baseline for one figure (see the module docstring).

    ``base_runs``/``cand_runs`` hold one value per run (None for a run without it);
    ``*_series`` the per-second samples of all runs of that side, or None.

    >>> significance([100, 101, 99, 100, 102], [80, 81, 79, 80, 82]).test
    'mann-whitney'
    """
    a, b = _clean(base_runs), _clean(cand_runs)
    rng = np.random.default_rng(seed)
    if a.size and b.size and np.ptp(np.concatenate([a, b])) == 0:
        # every run on both sides has the same value (typically 0 errors): nothing to test
        return Significance("identical", False, None, None, (int(a.size), int(b.size)), "runs")
    if a.size >= MIN_REPEATS and b.size >= MIN_REPEATS:
        if mann_whitney_min_p(a.size, b.size) <= alpha:
            test, p = "mann-whitney", mann_whitney(a, b)
        else:
            test, p = "welch-t", welch_t(a, b)
        return Significance(test, p < alpha, p, bootstrap_ratio_ci(a, b, rng=rng), (int(a.size), int(b.size)), "runs")
    sa = _clean(base_series) if base_series is not None else np.array([])
    sb = _clean(cand_series) if cand_series is not None else np.array([])
    if sa.size >= MIN_SECONDS and sb.size >= MIN_SECONDS:
        p, ci = batch_means_test(sa, sb)
        return Significance("batch-means", p < alpha, p, ci, (int(sa.size), int(sb.size)), "seconds")
    n = (int(max(a.size, sa.size)), int(max(b.size, sb.size)))
    return Significance("none", None, None, None, n, "")


# --------------------------------------------------------------------------- per-second series


def _read_requests(run_dir: Path, columns: Sequence[str]) -> pd.DataFrame:
    folder = RunDir(run_dir).table("requests")
    files = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    frames = []
    for f in files:
        present = [c for c in columns if c in pq.read_schema(f).names]
        frames.append(pq.read_table(f, columns=present).to_pandas())
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    return pd.concat(frames, ignore_index=True)


def steady_window_of(run_dir: Path) -> tuple[float, float] | None:
    """The steady-state window (epoch seconds) of a run: summary.json's ``window`` (recomputed when there is none)."""
    import json

    path = RunDir(run_dir).summary_json
    if path.exists():
        window = json.loads(path.read_text()).get("window") or {}
    else:
        from .analysis.summary import summarise

        window = summarise(Path(run_dir)).get("window") or {}
    if window.get("start") is None or window.get("end") is None or window["end"] <= window["start"]:
        return None
    return float(window["start"]), float(window["end"])


def per_second_series(run_dir: Path, window: tuple[float, float] | None = None) -> pd.DataFrame:
    """Per-second figures of a run's steady state, read from the raw ``requests`` table.

    One row per whole second of the window (``second`` counts from its start):
    ``requests`` successful requests, ``errors`` failed requests, ``connections``
    requests that opened a new connection (NaN when the engine cannot tell),
    ``p50_ms``/``p99_ms`` latency of the successful requests (NaN in a second
    without any). A run without request samples gives an empty frame.
    """
    window = window or steady_window_of(run_dir)
    empty = pd.DataFrame({c: pd.Series(dtype=float) for c in SERIES_COLUMNS})
    if window is None:
        return empty
    start, end = window
    n = int(math.floor(end - start + 1e-9))
    req = _read_requests(run_dir, ["t", "latency_ms", "error", "conn_new"])
    if n <= 0 or req.empty:
        return empty
    sec = np.floor(req["t"].to_numpy(dtype=float) - start).astype(np.int64)
    inside = (sec >= 0) & (sec < n)
    req = req[inside].assign(second=sec[inside])
    ok_mask = req["error"] == ""
    ok = req[ok_mask]
    out = pd.DataFrame({"second": np.arange(n)})
    out["requests"] = np.bincount(ok["second"], minlength=n).astype(float)
    out["errors"] = np.bincount(req.loc[~ok_mask, "second"], minlength=n).astype(float)
    if "conn_new" in req and req["conn_new"].notna().any():
        new = req["conn_new"].fillna(False).astype(bool).to_numpy()
        out["connections"] = np.bincount(req.loc[new, "second"], minlength=n).astype(float)
    else:
        out["connections"] = np.nan
    grouped = ok.groupby("second")["latency_ms"]
    out["p50_ms"] = grouped.quantile(0.5).reindex(out["second"]).to_numpy()
    out["p99_ms"] = grouped.quantile(0.99).reindex(out["second"]).to_numpy()
    return out[list(SERIES_COLUMNS)]
