"""Synthetic noise shared by the statistics tests."""

from __future__ import annotations

import math

import numpy as np


def ar1(rng: np.random.Generator, n: int, rho: float, cv: float, mean: float = 1000.0) -> np.ndarray:
    """An AR(1) series around ``mean`` with relative standard deviation ``cv`` (autocorrelated like per-second rates)."""
    e = rng.normal(0.0, 1.0, n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = rho * x[i - 1] + math.sqrt(1 - rho**2) * e[i]
    return mean * (1 + cv * x)
