"""Mergeable latency histograms (HdrHistogram-style log-linear buckets).

A latency in milliseconds maps to an integer bucket whose width is at most
1/``SUB_BUCKETS`` of its value (about 1 % relative error with 128 sub-buckets
per power of two), from 1 microsecond up to hours. Histograms from several
load-generator processes merge by adding counts per bucket, so percentiles over
many processes are exact to the bucket width, without keeping every sample.

>>> b = bucket_of(12.34)
>>> lower, upper = bucket_bounds(b)
>>> lower <= 12.34 < upper
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

#: Sub-buckets per power of two (relative resolution 1/128 < 1 %).
SUB_BUCKETS = 128
#: Smallest distinguishable latency: 1 microsecond, in milliseconds.
UNIT_MS = 0.001


def bucket_of(latency_ms: float) -> int:
    """Bucket index of a latency in milliseconds (negative and zero latencies land in bucket 0)."""
    units = latency_ms / UNIT_MS
    if units < SUB_BUCKETS:
        return max(int(units), 0)
    exp = math.floor(math.log2(units / SUB_BUCKETS))
    base = SUB_BUCKETS * (2**exp)
    sub = int((units - base) / (base / SUB_BUCKETS))
    return SUB_BUCKETS + exp * SUB_BUCKETS + min(sub, SUB_BUCKETS - 1)


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """[lower, upper) of a bucket, in milliseconds."""
    if bucket < SUB_BUCKETS:
        return bucket * UNIT_MS, (bucket + 1) * UNIT_MS
    exp, sub = divmod(bucket - SUB_BUCKETS, SUB_BUCKETS)
    base = SUB_BUCKETS * (2**exp)
    width = base / SUB_BUCKETS
    return (base + sub * width) * UNIT_MS, (base + (sub + 1) * width) * UNIT_MS


def buckets_of(latencies_ms: np.ndarray) -> np.ndarray:
    """Vectorised :func:`bucket_of`."""
    units = np.asarray(latencies_ms, dtype=float) / UNIT_MS
    out = np.maximum(units, 0).astype(np.int64)
    big = units >= SUB_BUCKETS
    if big.any():
        u = units[big]
        exp = np.floor(np.log2(u / SUB_BUCKETS)).astype(np.int64)
        base = SUB_BUCKETS * np.power(2.0, exp)
        sub = np.minimum(((u - base) / (base / SUB_BUCKETS)).astype(np.int64), SUB_BUCKETS - 1)
        out[big] = SUB_BUCKETS + exp * SUB_BUCKETS + sub
    return out


class Histogram:
    """A mergeable latency histogram: bucket -> count."""

    def __init__(self, counts: Mapping[int, int] | None = None):
        self.counts: Counter[int] = Counter(counts or {})

    def add(self, latency_ms: float, n: int = 1) -> None:
        self.counts[bucket_of(latency_ms)] += n

    def add_many(self, latencies_ms: Iterable[float]) -> None:
        arr = np.fromiter(latencies_ms, dtype=float)
        if arr.size:
            b, c = np.unique(buckets_of(arr), return_counts=True)
            for bucket, count in zip(b.tolist(), c.tolist(), strict=True):
                self.counts[bucket] += count

    def merge(self, other: Histogram) -> Histogram:
        self.counts.update(other.counts)
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float | None:
        """Latency at percentile ``q`` (0-100): the midpoint of the bucket holding that rank."""
        total = self.total
        if total == 0:
            return None
        return self.at_rank(max(1, math.ceil(q / 100.0 * total)))

    def at_rank(self, rank: int) -> float:
        """The ``rank``-th smallest latency (1-based): the midpoint of its bucket; past the last, the last bucket's."""
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                lo, hi = bucket_bounds(bucket)
                return (lo + hi) / 2
        lo, hi = bucket_bounds(max(self.counts))
        return (lo + hi) / 2


def bucket_midpoints(buckets: np.ndarray) -> np.ndarray:
    """Vectorised midpoint of :func:`bucket_bounds` (the value :meth:`Histogram.percentile` reports)."""
    b = np.asarray(buckets, dtype=np.int64)
    small = b < SUB_BUCKETS
    exp, sub = np.divmod(np.maximum(b - SUB_BUCKETS, 0), SUB_BUCKETS)
    base = SUB_BUCKETS * np.power(2.0, exp)
    width = base / SUB_BUCKETS
    lo = np.where(small, b * UNIT_MS, (base + sub * width) * UNIT_MS)
    hi = np.where(small, (b + 1) * UNIT_MS, (base + (sub + 1) * width) * UNIT_MS)
    return (lo + hi) / 2


def grouped_percentiles(groups: np.ndarray, buckets: np.ndarray, counts: np.ndarray, qs: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles of many histograms at once, as :meth:`Histogram.percentile` gives them one by one.

    ``groups``, ``buckets``, ``counts``: one entry per (histogram, bucket) count,
    in any order, repeats allowed (they add up). Returns the sorted distinct groups
    and an array ``[len(groups), len(qs)]`` of latencies (ms).

    >>> g, p = grouped_percentiles(np.array([1, 1, 2]), buckets_of(np.array([1.0, 3.0, 2.0])), np.array([1, 1, 4]), [50, 100])
    >>> g.tolist(), p.round(2).tolist()
    ([1, 2], [[1.0, 3.0], [2.0, 2.0]])
    """
    groups = np.asarray(groups, dtype=np.int64)
    buckets = np.asarray(buckets, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    qs = list(qs)
    if not groups.size:
        return groups, np.empty((0, len(qs)))
    # one sorted run of buckets per group, repeats summed: a radix sort of one 64-bit key,
    # skipped when the rows come sorted (one writer's histograms are, second by second)
    key = ((groups - groups.min()).astype(np.uint64) << np.uint64(32)) | buckets.astype(np.uint64)
    if np.any(key[1:] < key[:-1]):
        order = np.argsort(key, kind="stable")
        key, groups, buckets, counts = key[order], groups[order], buckets[order], counts[order]
    g, b, c = groups, buckets, counts
    new = np.ones(g.size, dtype=bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    g, b, c = g[starts], b[starts], np.add.reduceat(c, starts)
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    last = np.r_[first[1:], g.size] - 1
    cum = np.cumsum(c)
    before = np.r_[0, cum[first[1:] - 1]]
    total = cum[last] - before
    out = np.empty((first.size, len(qs)))
    for j, q in enumerate(qs):
        rank = np.maximum(1, np.ceil(q / 100.0 * total))
        idx = np.searchsorted(cum, before + rank, side="left")
        out[:, j] = bucket_midpoints(b[np.minimum(idx, last)])
    return g[first], out
