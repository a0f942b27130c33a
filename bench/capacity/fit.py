"""Cost per operation: a linear model over the sweep's steps, with confidence intervals and residuals.

For each process role the cores it used in a step are modelled as an idle intercept
plus a cost per operation times that operation's rate (:data:`bench.capacity.operations.
ROLE_OPERATIONS`)::

    cores = idle + c_request * requests/s + c_connection * connections/s + ... + error

:func:`linear_fit` estimates the costs:

1. **Weights.** CPU noise grows with the load (a busy second varies more than an idle
   one), so an ordinary least-squares fit first gives residuals, their size is modelled
   as ``a + b * fitted`` and the fit is redone with weights ``1 / (a + b * fitted)^2``
   (feasible generalised least squares). With too few steps for that the weights stay
   equal.
2. **No constraint.** A cost cannot be negative, but a small one can be estimated
   below zero by noise: it is reported as it is, with its interval (which then reaches
   above zero). Forcing it to zero (non-negative least squares) would bias the other
   costs towards taking its share, and their intervals would no longer cover at the
   stated rate (measured: 89 % instead of 95 % on a synthetic sweep with one small
   true cost). Predictions of cores and memory are cut at zero.
3. **Intervals.** Standard errors are the larger of the classical one and the
   heteroskedasticity-consistent HC3 one (MacKinnon & White 1985), with Student's t
   at the residual degrees of freedom: at the nominal level when the model holds,
   conservative when the noise is not what step 1 assumed
   (tests/unit/test_capacity_fit.py measures the coverage on synthetic sweeps with
   known costs). A prediction ``x`` gets ``x'b`` with the larger of ``sqrt(x' V x)``
   from the two covariance matrices.
4. **Residuals** per step (measured - fitted, absolute and relative) are kept and
   reported: a linear model misses curvature (batching makes a request cheaper at
   higher rates), and the residuals show where.

An operation that never varied in the steps (no RSA step in a sweep, say) is left out
and reported as not measured rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .operations import IDLE, ROLE_OPERATIONS

#: Confidence level of every interval.
LEVEL = 0.95
#: Fewest residual degrees of freedom a fit keeps: operations beyond what the steps can carry are left out.
MIN_DF = 2
#: Fewest residual degrees of freedom for the variance model of the weights (else equal weights).
MIN_DF_FOR_WEIGHTS = 6
#: A column whose part the columns before it cannot explain is less than this share of its size never moved on
#: its own (e.g. bytes in that are only the requests' heads): it cannot be told apart and is left out.
OWN_MOVEMENT = 0.05


@dataclass
class LinearFit:
    """A fitted linear model ``y = X b``: estimates, their covariance, residuals."""

    names: list[str]
    coef: np.ndarray
    cov_classical: np.ndarray
    cov_hc3: np.ndarray
    df: int
    y: np.ndarray
    fitted: np.ndarray
    weights: np.ndarray
    #: names left out: their column never varied (not measured)
    dropped: list[str] = field(default_factory=list)
    level: float = LEVEL
    #: the quantity is bounded below by 0 (CPU, memory): a prediction's interval is cut there
    nonneg: bool = True

    @property
    def residuals(self) -> np.ndarray:
        return self.y - self.fitted

    @property
    def t(self) -> float:
        """Student's t quantile of the interval (normal when no degree of freedom is left)."""
        q = 0.5 + self.level / 2
        return float(stats.t.ppf(q, self.df)) if self.df > 0 else float("inf")

    def se(self, name: str) -> float:
        i = self.names.index(name)
        return float(math.sqrt(max(self.cov_classical[i, i], self.cov_hc3[i, i], 0.0)))

    def estimate(self, name: str) -> tuple[float, float, float] | None:
        """(estimate, low, high) of one coefficient; None when it was not measured."""
        if name not in self.names:
            return None
        i = self.names.index(name)
        b = float(self.coef[i])
        se = self.se(name)
        return b, b - self.t * se, b + self.t * se

    def predict(self, x: dict[str, float]) -> tuple[float, float, float]:
        """``(value, low, high)`` for the operations ``x`` (missing names count 0; the intercept is added).

        An operation ``x`` asks for that the fit could not measure raises KeyError.
        """
        unknown = [k for k, v in x.items() if v and k not in self.names and k != IDLE]
        if unknown:
            raise KeyError(", ".join(unknown))
        vec = np.array([1.0 if n == IDLE else float(x.get(n, 0.0)) for n in self.names])
        value = float(vec @ self.coef)
        var = max(float(vec @ self.cov_classical @ vec), float(vec @ self.cov_hc3 @ vec), 0.0)
        half = self.t * math.sqrt(var)
        if self.nonneg:  # the value stays as fitted (a negative one says the fit cannot carry x; predict.py says so)
            return value, max(0.0, value - half), max(0.0, value + half)
        return value, value - half, value + half

    def r2(self) -> float:
        ss_res = float(np.sum(self.weights * self.residuals**2))
        ybar = float(np.sum(self.weights * self.y) / np.sum(self.weights))
        ss_tot = float(np.sum(self.weights * (self.y - ybar) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _ols(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Weighted least squares: coefficients, classical and HC3 covariance, residual df."""
    sw = np.sqrt(w)
    xw, yw = x * sw[:, None], y * sw
    xtx_inv = np.linalg.pinv(xw.T @ xw)
    b = xtx_inv @ xw.T @ yw
    r = yw - xw @ b
    n, p = xw.shape
    df = n - p
    s2 = float(r @ r) / df if df > 0 else float("nan")
    cov = xtx_inv * s2
    h = np.einsum("ij,jk,ik->i", xw, xtx_inv, xw)
    scale = (r / np.clip(1.0 - h, 1e-9, None)) ** 2
    hc3 = xtx_inv @ (xw.T * scale) @ xw @ xtx_inv
    return b, cov, hc3, df


def _variance_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights 1 / sd^2 with sd = a + b * fitted, from an unweighted fit's residuals (equal when that fails).

    The size of a residual is regressed on the fit: ``|r| / sqrt(1 - h)`` (a high-leverage
    step's residual is shrunk towards the fit; this undoes it) on ``[1, fitted]``. Modelling
    the standard deviation rather than the variance keeps a few large residuals from
    deciding the weights (tested on synthetic sweeps: constant, relative and mixed noise).
    """
    n, p = x.shape
    equal = np.ones(n)
    if n - p < MIN_DF_FOR_WEIGHTS:
        return equal
    b, *_ = _ols(x, y, equal)
    fitted = np.clip(x @ b, 0.0, None)
    h = np.einsum("ij,jk,ik->i", x, np.linalg.pinv(x.T @ x), x)
    size = np.abs(y - x @ b) / np.sqrt(np.clip(1.0 - h, 0.05, None))
    z = np.column_stack([np.ones(n), fitted])
    coef, *_ = np.linalg.lstsq(z, size, rcond=None)
    a = max(float(coef[0]), 0.05 * float(np.mean(size)), 1e-12)
    c = max(float(coef[1]), 0.0)
    sd = a + c * fitted
    if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
        return equal
    w = 1.0 / sd**2
    return w / w.mean()


def _own_movement(before: np.ndarray, col: np.ndarray) -> float:
    """The share of ``col``'s size (both scaled to unit length) that the columns ``before`` do not explain."""
    if before.shape[1] == 0:
        return float(np.linalg.norm(col))
    coef, *_ = np.linalg.lstsq(before, col, rcond=None)
    return float(np.linalg.norm(col - before @ coef))


def linear_fit(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    nonneg: bool = True,  # only cuts predictions' intervals at 0
    weighted: bool = True,
    level: float = LEVEL,
) -> LinearFit:
    """Fit ``y = x b`` (see the module docstring); ``names`` name the columns of ``x``.

    Columns that are all zero (or constant, except the intercept), that the columns
    before them already explain (they never moved on their own), or that the steps
    cannot carry (fewer than :data:`MIN_DF` degrees of freedom would be left) are
    dropped and listed: not measured, rather than guessed.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    names = list(names)
    keep = []
    dropped = []
    for j, name in enumerate(names):
        col = x[:, j]
        if name == IDLE or (np.any(col != 0) and np.ptp(col) > 0):
            keep.append(j)
        else:
            dropped.append(name)
    x = x[:, keep]
    names = [names[j] for j in keep]
    ok = np.all(np.isfinite(x), axis=1) & np.isfinite(y)
    x, y = x[ok], y[ok]
    # a column the others already explain (it only ever moved together with them) cannot be told apart
    independent: list[int] = []
    norms = np.linalg.norm(x, axis=0)
    scaled = x / np.where(norms > 0, norms, 1.0)
    most = max(len(y) - MIN_DF, 1)  # leave degrees of freedom for the intervals
    for j in range(x.shape[1]):
        if len(independent) < most and _own_movement(scaled[:, independent], scaled[:, j]) >= OWN_MOVEMENT:
            independent.append(j)
        else:
            dropped.append(names[j])
    x = x[:, independent]
    names = [names[j] for j in independent]
    if len(y) < len(names) + 1:
        raise ValueError(f"{len(y)} usable steps for {len(names)} unknowns: not enough to fit")
    w = _variance_weights(x, y) if weighted else np.ones(len(y))
    b, cov, hc3, df = _ols(x, y, w)
    fitted = x @ b
    return LinearFit(
        names=names, coef=b, cov_classical=cov, cov_hc3=hc3, df=df, y=y, fitted=fitted, weights=w,
        dropped=dropped, level=level, nonneg=nonneg,
    )  # fmt: skip


def design(steps: pd.DataFrame, operations: Sequence[str]) -> np.ndarray:
    """The design matrix of ``steps``: a column of ones (the idle intercept), then one per operation.

    An operation missing from ``steps``, or NaN in every step, is a column of zeros (left
    out of the fit as not measured); NaN in some steps leaves those steps out.
    """
    cols = [np.ones(len(steps))]
    for op in operations:
        col = steps[op].to_numpy(dtype=float) if op in steps else np.zeros(len(steps))
        # a counter this HAProxy does not report at all: not measured (a column of zeros is left out)
        cols.append(np.zeros(len(steps)) if np.isnan(col).all() else col)
    return np.column_stack(cols)


def fit_role(steps: pd.DataFrame, role: str, level: float = LEVEL) -> LinearFit | None:
    """Cores of ``role`` over the steps: idle + cost x rate per operation; None when the role did not run."""
    col = f"cpu_{role}"
    if col not in steps or steps[col].isna().all() or not (steps[col] > 0).any():
        return None
    ops = ROLE_OPERATIONS[role]
    rows = steps[steps[col].notna()]
    return linear_fit(design(rows, ops), rows[col].to_numpy(dtype=float), [IDLE, *ops], level=level)


def fit_costs(steps: pd.DataFrame, level: float = LEVEL) -> dict[str, LinearFit]:
    """:func:`fit_role` for every role that ran."""
    out = {}
    for role in ROLE_OPERATIONS:
        f = fit_role(steps, role, level)
        if f is not None:
            out[role] = f
    return out


def fit_memory(samples: pd.DataFrame, role: str, level: float = LEVEL) -> LinearFit | None:
    """Memory of ``role`` (bytes) = a base per lab phase + bytes per plain and per TLS client connection open.

    ``samples`` are :func:`bench.capacity.measure.memory_samples` rows with a ``phase``
    column; each phase (a lab of its own) gets its own base. Unweighted: memory is a
    level, not a rate.
    """
    col = f"mem_{role}"
    if samples.empty or col not in samples or samples[col].isna().all():
        return None
    s = samples[samples[col].notna() & samples["client_conns"].notna()].copy()
    tls = s["tls_conns"].fillna(0.0).to_numpy(float)
    plain = np.clip(s["client_conns"].to_numpy(float) - tls, 0.0, None)
    phases = sorted(s["phase"].astype(str).unique())
    cols = [(s["phase"].astype(str) == p).to_numpy(float) for p in phases]
    names = [f"base_{p}" for p in phases] + ["plain_connection", "tls_connection"]
    x = np.column_stack([*cols, plain, tls])
    try:
        return linear_fit(x, s[col].to_numpy(float), names, nonneg=True, weighted=False, level=level)
    except ValueError:
        return None


def fit_summary(fit: LinearFit) -> dict[str, Any]:
    """How well a fit fits: steps, degrees of freedom, R², RMSE, the largest residual (absolute, and relative
    among the steps with at least a tenth of the largest value: near-idle steps make any ratio large)."""

    def finite(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    if not len(fit.y):
        return {"steps": 0, "df": int(fit.df), "r2": None, "rmse": 0.0, "max_abs_residual": None, "max_rel_residual_pct": None, "weighted": False}
    y = np.abs(fit.y)
    big = y >= 0.1 * float(np.max(y))
    rel = np.full(len(y), np.nan)
    np.divide(np.abs(fit.residuals), y, out=rel, where=big & (y > 0))
    return {
        "steps": len(fit.y),
        "df": int(fit.df),
        "r2": finite(fit.r2()),
        "rmse": float(math.sqrt(float(np.mean(fit.residuals**2)))),
        "max_abs_residual": float(np.max(np.abs(fit.residuals))),
        "max_rel_residual_pct": finite(float(np.nanmax(rel)) * 100) if np.isfinite(rel).any() else None,
        "weighted": bool(np.ptp(fit.weights) > 0),
    }


def to_dict(fit: LinearFit) -> dict[str, Any]:
    """A fit as numbers (``capacity.json``'s LinearModel): enough to predict again with :func:`from_dict`."""
    return {
        "names": list(fit.names),
        "coef": [float(v) for v in fit.coef],
        "cov_classical": [[float(v) for v in row] for row in fit.cov_classical],
        "cov_hc3": [[float(v) for v in row] for row in fit.cov_hc3],
        "df": int(fit.df),
        "level": float(fit.level),
        "dropped": list(fit.dropped),
        "nonneg": bool(fit.nonneg),
        "fit": fit_summary(fit),
    }


def from_dict(d: Any) -> LinearFit:
    """A fit read back from ``capacity.json`` (predictions only: the steps' values are not kept in it)."""
    m: dict[str, Any] = d if isinstance(d, dict) else d.model_dump()
    return LinearFit(
        names=list(m["names"]),
        coef=np.array(m["coef"], dtype=float),
        cov_classical=np.array(m["cov_classical"], dtype=float),
        cov_hc3=np.array(m["cov_hc3"], dtype=float),
        df=int(m["df"]),
        y=np.zeros(0),
        fitted=np.zeros(0),
        weights=np.zeros(0),
        dropped=list(m.get("dropped") or []),
        level=float(m.get("level", LEVEL)),
        nonneg=bool(m.get("nonneg", True)),
    )
