"""Statistics for `bench compare` and `bench gate`: a ratio, its confidence interval, and what it can decide.

Every figure is compared as a ratio candidate / baseline, estimated on the log
scale (a cost 5 % higher is a log-ratio of log 1.05 whatever its unit), with a
t-interval:

- **paired** (:func:`paired`): the slices of a duet. Baseline and candidate were
  measured in the same time window, so each slice gives one log-ratio, and
  whatever disturbed the machine in that window disturbed both sides alike. The
  estimate is the 20 % trimmed mean of the log-ratios with its Tukey-McLaughlin
  t-interval (Yuen 1974): on a shared machine a few slices catch a stall that
  hits one side harder (latency 10-100x its usual), and a plain mean would let
  them decide.
- **independent** (:func:`independent`): repeated runs of each side (at least
  :data:`MIN_RUNS` per side). Welch's t-interval of the difference of the mean
  logs: the runs differ by everything that differs between runs, which is what a
  regression has to stand out from.
- **one run per side**: no interval at all. The noise *within* one run says
  nothing about how much a second run of the same configuration would differ
  (on a shared machine, 20 % or more), so such a comparison is never called
  significant: "one run per side: run-to-run noise unknown".

Figures that can be zero (errors) are compared on the linear scale instead:
the difference of means over the baseline mean (:class:`Estimate` ``scale``).

A gate rule (:func:`decide`) has a threshold (``+2%``: a rise of more than 2 % is
a regression). It **fails** when the whole interval lies beyond the threshold,
**passes** when the whole interval lies inside it, and is **inconclusive**
otherwise; with the chance of a wrong verdict at most ``alpha/2`` each way when
the true change sits exactly at the threshold (less the further it is from it).
:class:`Decision` also says which true change the rule would catch with
:data:`POWER` (the *detectable change*) and how many more slices or runs would
decide an inconclusive rule.

Repeated looks at growing data (a gate that stops as soon as it is decided)
would inflate those error rates if every look used the full ``alpha``; so the
looks of one gate share it (:func:`look_alphas`: group-sequential boundaries with
O'Brien-Fleming-like alpha spending, exact for the correlated looks, so the
total over all looks stays within ``alpha`` while the last look keeps nearly
the fixed design's width).

Everything is deterministic: the same numbers always give the same answer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .results.layout import RunDir
from .results.store import read_table

#: 1 - the confidence of every interval (two-sided): 0.05 = 95 % intervals.
ALPHA = 0.05
#: Power the detectable change is stated for (a change this large is caught 19 times in 20).
POWER = 0.95
#: Runs per side needed for an interval between independent runs.
MIN_RUNS = 2
#: Pairs (slices) needed for a paired interval.
MIN_PAIRS = 3
#: Share of the paired log-ratios trimmed from each end (Yuen's trimmed mean): a slice where the
#: machine stalled one side more than the other moves the estimate no more than a typical slice.
TRIM = 0.2
#: Default seed of the few random draws (none in the decisions themselves).
SEED = 20240607

#: Columns of :func:`per_second_series`.
SERIES_COLUMNS = ("second", "requests", "errors", "connections", "p50_ms", "p99_ms")

SIGNIFICANT, WITHIN_NOISE, NOISE_UNKNOWN, TOO_FEW = "significant", "within noise", "noise unknown", "too few data"
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
#: What a comparison of one run against one run says instead of a verdict.
ONE_RUN = "one run per side: run-to-run noise unknown"


def _clean(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (normal for infinite df)."""
    from scipy.special import ndtri, stdtrit

    if not math.isfinite(df):
        return float(ndtri(q))
    return float(stdtrit(df, q))


def _t_cdf(x: float, df: float) -> float:
    from scipy.special import ndtr, stdtr

    return float(ndtr(x)) if not math.isfinite(df) else float(stdtr(df, x))


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """The ratio candidate/baseline of one figure and the uncertainty of it.

    ``scale`` ``log``: ``center`` is the mean log-ratio (paired) or the difference
    of the mean logs (independent), ``se`` its standard error. ``linear`` (values
    that can be zero): ``center`` is (mean candidate - mean baseline) / mean
    baseline, ``se`` its standard error relative to the baseline mean.
    ``sd`` is the standard deviation of one observation (one slice's log-ratio, or
    one run's log value, pooled), used to plan how many more would decide.
    """

    design: str  # "paired" or "independent"
    scale: str  # "log" or "linear"
    n: tuple[int, int]
    center: float
    se: float
    df: float
    sd: float

    @property
    def ratio(self) -> float:
        """The point estimate of candidate / baseline."""
        return math.exp(self.center) if self.scale == "log" else 1.0 + self.center

    def _to_ratio(self, x: float) -> float:
        return math.exp(x) if self.scale == "log" else 1.0 + x

    def _from_ratio(self, r: float) -> float:
        if self.scale == "log":
            return math.log(r) if r > 0 else -math.inf
        return r - 1.0

    def ci(self, alpha: float = ALPHA) -> tuple[float, float]:
        """The two-sided ``1 - alpha`` confidence interval of the ratio."""
        half = t_quantile(1 - alpha / 2, self.df) * self.se
        return self._to_ratio(self.center - half), self._to_ratio(self.center + half)

    def p(self) -> float:
        """Two-sided p-value of "no change" (ratio 1)."""
        if self.se == 0:
            return 1.0 if self.center == 0 else 0.0
        return 2.0 * _t_cdf(-abs(self.center) / self.se, self.df)

    @property
    def unit(self) -> str:
        return "slices" if self.design == "paired" else "runs"

    def describe(self) -> str:
        """``paired t 40 slices`` / ``welch t 5v5 runs``."""
        if self.design == "paired":
            return f"paired t {self.n[0]} slices"
        return f"welch t {self.n[0]}v{self.n[1]} runs"

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "scale": self.scale,
            "n": list(self.n),
            "ratio": self.ratio,
            "center": self.center,
            "se": self.se,
            "df": None if not math.isfinite(self.df) else self.df,
            "sd": self.sd,
        }


def trimmed(d: np.ndarray, trim: float = TRIM) -> tuple[float, float, float]:
    """Trimmed mean, its standard error and degrees of freedom (Tukey & McLaughlin 1963).

    ``g = floor(trim n)`` values are cut from each end; the standard error comes
    from the winsorized standard deviation: ``s_w sqrt(n) / h`` with ``h = n - 2g``
    values kept, ``h - 1`` degrees of freedom. ``trim`` 0 is the plain mean and t.

    >>> m, se, df = trimmed(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    >>> m, df
    (3.0, 2.0)
    """
    d = np.sort(np.asarray(d, dtype=float))
    n = d.size
    g = math.floor(trim * n)
    h = n - 2 * g
    mean = float(d[g : n - g].mean())
    w = np.clip(d, d[g], d[n - g - 1])
    sw = float(w.std(ddof=1)) if n > 1 else 0.0
    return mean, sw * math.sqrt(n) / h, float(h - 1)


def paired(
    base: Sequence[float | None] | np.ndarray, cand: Sequence[float | None] | np.ndarray, trim: float = TRIM
) -> Estimate | None:
    """The ratio of paired observations (slice i of the baseline with slice i of the candidate).

    Pairs where either side is missing are left out. Log scale when every kept
    value is positive, else linear. The centre is the ``trim`` trimmed mean of the
    per-pair differences (:func:`trimmed`). None with fewer than :data:`MIN_PAIRS` pairs.

    >>> e = paired([100, 102, 98, 101], [105, 107.1, 102.9, 106.05])
    >>> round(e.ratio, 3), e.describe()
    (1.05, 'paired t 4 slices')
    """
    b = np.asarray([np.nan if v is None else v for v in base], dtype=float)
    c = np.asarray([np.nan if v is None else v for v in cand], dtype=float)
    if b.shape != c.shape:
        raise ValueError(f"paired needs as many baseline as candidate values ({b.size} vs {c.size})")
    keep = np.isfinite(b) & np.isfinite(c)
    b, c = b[keep], c[keep]
    n = int(b.size)
    if n < MIN_PAIRS:
        return None
    if np.all(b > 0) and np.all(c > 0):
        scale, d = "log", np.log(c) - np.log(b)
    else:
        mean_b = float(b.mean())
        if mean_b <= 0:
            return None
        scale, d = "linear", (c - b) / mean_b
    center, se, df = trimmed(d, trim)
    return Estimate("paired", scale, (n, n), center, se, df, se * math.sqrt(n))


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Standard error and Welch-Satterthwaite degrees of freedom of mean(b) - mean(a)."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if va + vb == 0:
        return 0.0, math.inf
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return se, df


def independent(base: Sequence[float | None] | np.ndarray, cand: Sequence[float | None] | np.ndarray) -> Estimate | None:
    """The ratio between two independent samples (per-run values of repeats): Welch's t on the logs.

    None with fewer than :data:`MIN_RUNS` values on a side.

    >>> e = independent([100, 101, 99], [110, 111, 109])
    >>> round(e.ratio, 2), e.describe()
    (1.1, 'welch t 3v3 runs')
    """
    a, b = _clean(base), _clean(cand)
    if a.size < MIN_RUNS or b.size < MIN_RUNS:
        return None
    n = (int(a.size), int(b.size))
    if np.all(a > 0) and np.all(b > 0):
        la, lb = np.log(a), np.log(b)
        se, df = _welch(la, lb)
        pooled = math.sqrt(((a.size - 1) * la.var(ddof=1) + (b.size - 1) * lb.var(ddof=1)) / (a.size + b.size - 2))
        return Estimate("independent", "log", n, float(lb.mean() - la.mean()), se, df, pooled)
    mean_a = float(a.mean())
    if mean_a <= 0:
        return None
    se, df = _welch(a, b)
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)) / mean_a
    return Estimate("independent", "linear", n, float((b.mean() - mean_a) / mean_a), se / mean_a, df, pooled)


# --------------------------------------------------------------------------- significance (bench compare)


@dataclass(frozen=True)
class Significance:
    """The answer to "is the candidate different from the baseline?" for one figure (`bench compare`).

    ``significant`` is True, False, or None when the data cannot tell (one run
    per side, or fewer values than an interval needs).
    """

    test: str  # "paired t", "welch t", "identical", "one run", "none"
    significant: bool | None
    p: float | None
    ci95: tuple[float, float] | None
    n: tuple[int, int]
    unit: str  # "slices", "runs" or ""
    estimate: Estimate | None = None

    @property
    def marker(self) -> str:
        """``significant``, ``within noise``, ``noise unknown`` (one run per side) or ``too few data``."""
        if self.significant is None:
            return NOISE_UNKNOWN if self.test == "one run" else TOO_FEW
        return SIGNIFICANT if self.significant else WITHIN_NOISE

    def describe(self) -> str:
        """Short text naming the test and its sample sizes, e.g. ``welch t 5v5 runs``."""
        if self.estimate is not None:
            return self.estimate.describe()
        if self.test == "one run":
            return ONE_RUN
        if self.test == "identical":
            return f"identical {self.n[0]}v{self.n[1]} {self.unit}"
        return "-"

    def evidence(self) -> str:
        """``p=0.008, CI 1.02-1.09`` (what the decision rests on)."""
        parts = []
        if self.p is not None:
            parts.append("p<0.001" if self.p < 0.001 else f"p={self.p:.3f}")
        if self.ci95 is not None:
            parts.append(f"CI {self.ci95[0]:.3f}-{self.ci95[1]:.3f}")
        return ", ".join(parts) or "-"


def significance(
    base: Sequence[float | None],
    cand: Sequence[float | None],
    alpha: float = ALPHA,
    pairs: bool = False,
) -> Significance:
    """Is the candidate different from the baseline? (see the module docstring).

    ``base``/``cand`` hold one value per run (``pairs=False``) or per slice
    (``pairs=True``, same length, slice i with slice i).

    >>> significance([100, 101, 99, 100, 102], [80, 81, 79, 80, 82]).marker
    'significant'
    >>> significance([100], [80]).describe()
    'one run per side: run-to-run noise unknown'
    """
    a, b = _clean(base), _clean(cand)
    n = (int(a.size), int(b.size))
    if a.size and b.size and np.ptp(np.concatenate([a, b])) == 0:
        # every value on both sides is the same (typically 0 errors): nothing to test
        return Significance("identical", False, None, None, n, "slices" if pairs else "runs")
    est = paired(base, cand) if pairs else independent(base, cand)
    if est is None:
        if not pairs and a.size and b.size and min(a.size, b.size) < MIN_RUNS:
            return Significance("one run", None, None, None, n, "runs")
        return Significance("none", None, None, None, n, "")
    lo, hi = est.ci(alpha)
    return Significance(
        "paired t" if pairs else "welch t", not lo <= 1.0 <= hi, est.p(), (lo, hi), est.n, est.unit, est
    )


# --------------------------------------------------------------------------- decisions (bench gate)


@dataclass(frozen=True)
class Decision:
    """The verdict of one relative rule on one estimate.

    ``ci`` is the interval the verdict rests on (at ``alpha``), ``detectable`` the
    true ratio beyond which the rule fails with :data:`POWER`, ``passable`` the
    true ratio within which it passes with :data:`POWER`; ``more`` how many more
    observations (slices or runs per side) would decide an inconclusive rule if
    the estimate and the noise stayed as they are (None: decided, or the
    estimate sits on the threshold so that no number would).
    """

    status: str  # PASS, FAIL, INCONCLUSIVE
    ratio: float
    ci: tuple[float, float]
    alpha: float
    threshold: float
    detectable: float
    passable: float
    more: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ratio": self.ratio,
            "ci": list(self.ci),
            "alpha": self.alpha,
            "threshold": self.threshold,
            "detectable": self.detectable,
            "passable": self.passable,
            "more": self.more,
        }


def _limit(est: Estimate, threshold: float) -> float:
    """The threshold on the estimate's own scale."""
    return est._from_ratio(1.0 + threshold)


def decide(est: Estimate, threshold: float, alpha: float = ALPHA, power: float = POWER) -> Decision:
    """Apply a relative threshold (``+0.02``: a rise beyond 2 % is bad; ``-0.05``: a drop beyond 5 %) to an estimate.

    >>> e = paired([100.0] * 4, [110, 111, 109, 110])
    >>> decide(e, 0.02).status, decide(e, 0.20).status
    ('fail', 'pass')
    """
    if threshold == 0:
        raise ValueError("a relative threshold must not be 0")
    rising = threshold > 0
    limit = _limit(est, threshold)
    lo, hi = est.ci(alpha)
    lo_s, hi_s = est._from_ratio(lo), est._from_ratio(hi)
    if rising:
        status = FAIL if lo_s > limit else PASS if hi_s < limit else INCONCLUSIVE
    else:
        status = FAIL if hi_s < limit else PASS if lo_s > limit else INCONCLUSIVE
    reach = (t_quantile(1 - alpha / 2, est.df) + t_quantile(power, est.df)) * est.se
    sign = 1.0 if rising else -1.0
    detectable = est._to_ratio(limit + sign * reach)
    passable = est._to_ratio(limit - sign * reach)
    more = None
    if status == INCONCLUSIVE:
        more = more_needed(est, limit, alpha)
    return Decision(status, est.ratio, (lo, hi), alpha, threshold, detectable, passable, more)


def more_needed(est: Estimate, limit: float, alpha: float) -> int | None:
    """Observations to add until the interval clears ``limit`` (on the estimate's scale), if the estimate and sd stay.

    For paired slices the count is slices; for independent runs it is runs per side.
    None when the estimate sits (nearly) on the limit or nothing varies.
    """
    gap = abs(est.center - limit)
    if est.sd <= 0 or gap < 1e-12:
        return None
    n = est.n[0] if est.design == "paired" else min(est.n)
    k = 2.0 if est.design == "independent" else 1.0  # two means carry the noise of an independent design
    need = n
    for _ in range(60):
        df = max(need - 1.0, 1.0) if est.design == "paired" else max(2.0 * need - 2.0, 1.0)
        want = k * (t_quantile(1 - alpha / 2, df) * est.sd / gap) ** 2
        if want <= need:
            break
        need = math.ceil(want)
        if need > 1_000_000:
            return None
    return max(int(need) - n, 1)


# --------------------------------------------------------------------------- sequential looks


def spent(fraction: float, alpha: float = ALPHA) -> float:
    """One-sided alpha spent by the information fraction ``fraction`` (O'Brien-Fleming-like, Lan & DeMets 1983).

    Almost nothing early, the bulk at the end: ``2 - 2 Phi(z_{1-alpha/2} / sqrt(fraction))``
    reaches ``alpha`` at ``fraction`` 1.

    >>> round(spent(1.0), 4), spent(0.25) < 0.001
    (0.05, True)
    """
    from scipy.special import ndtr, ndtri

    if fraction <= 0:
        return 0.0
    fraction = min(fraction, 1.0)
    return float(2.0 - 2.0 * ndtr(ndtri(1 - alpha / 2) / math.sqrt(fraction)))


def boundaries(fractions: Sequence[float], alpha: float) -> list[float]:
    """Group-sequential z boundaries for looks at information ``fractions`` spending one-sided ``alpha``.

    Exact for a Brownian motion (the sum of the observations so far): look k's
    boundary b_k makes P(not beyond before look k, beyond at look k) equal to the
    alpha :func:`spent` between looks k-1 and k, computed by numerical integration
    of the density of the paths still running (Armitage, McPherson & Rowe 1969).
    Not needing the union bound, it keeps the final look close to the fixed
    design's 1.96 (two-sided 0.05) instead of spending it on early looks.
    """
    from scipy.special import ndtr, ndtri

    t = np.asarray(fractions, dtype=float)
    if t.size == 0:
        return []
    step = 0.02
    out: list[float] = []
    grid: np.ndarray | None = None
    dens: np.ndarray | None = None
    prev_t = 0.0
    used = 0.0
    for k, tk in enumerate(t):
        want = max(spent(tk, alpha) - used, 1e-12) if k < t.size - 1 else max(alpha - used, 1e-12)
        if grid is None or dens is None:
            b = float(ndtri(1 - want))
            out.append(b)
            used += want
            # density of S_1 = W(t_1) below its boundary
            sd = math.sqrt(tk)
            grid = np.arange(-9.0 * sd, b * sd, step)
            dens = np.exp(-0.5 * (grid / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            prev_t = tk
            continue
        delta = tk - prev_t
        sd_d = math.sqrt(delta)

        def tail(x: float, dens: np.ndarray = dens, grid: np.ndarray = grid, sd_d: float = sd_d) -> float:
            return float(np.sum(dens * (1.0 - ndtr((x - grid) / sd_d))) * step)

        lo_x, hi_x = -10.0 * math.sqrt(tk), 12.0 * math.sqrt(tk)
        for _ in range(60):
            mid = 0.5 * (lo_x + hi_x)
            if tail(mid) > want:
                lo_x = mid
            else:
                hi_x = mid
        x = 0.5 * (lo_x + hi_x)
        out.append(x / math.sqrt(tk))
        used += tail(x)
        new_grid = np.arange(-9.0 * math.sqrt(tk), x, step)
        kernel = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :]) / sd_d) ** 2) / (sd_d * math.sqrt(2 * math.pi))
        dens = kernel @ dens * step
        grid = new_grid
        prev_t = tk
    return out


def look_alphas(looks: Sequence[int], planned: int, alpha: float = ALPHA) -> list[float]:
    """The nominal two-sided alpha of each look of a sequential gate (looks at ``looks`` observations, ``planned`` the most).

    Each direction (failing a rule that is within its limit, passing one that is
    beyond it) may go wrong with at most ``alpha/2`` over all the looks together:
    the looks' boundaries come from :func:`boundaries` with O'Brien-Fleming-like
    spending, and each look's interval is the two-sided ``1 - alpha_k`` interval
    of its boundary. The last look gets what is left.

    >>> [round(a, 4) for a in look_alphas([12, 24, 36, 48], 48)]
    [0.0, 0.003, 0.0184, 0.0443]
    """
    return list(_look_alphas(tuple(looks), planned, alpha))


@functools.lru_cache(maxsize=64)
def _look_alphas(looks: tuple[int, ...], planned: int, alpha: float) -> tuple[float, ...]:
    from scipy.special import ndtr

    if not looks:
        return ()
    fractions = [n / planned for n in looks]
    return tuple(float(2.0 * (1.0 - ndtr(b))) for b in boundaries(fractions, alpha / 2))


# --------------------------------------------------------------------------- per-second series (plots)


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
    """Per-second figures of a run's steady state, read from the raw ``requests`` table (for the overlay plots).

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
    n = math.floor(end - start + 1e-9)
    req = read_table(run_dir, "requests", ["t", "latency_ms", "error", "conn_new"])
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
