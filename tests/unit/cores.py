"""Independent trials of a statistical unit test shared out over this machine's cores.

The error-rate tests judge hundreds of synthetic cases one after another on one
core while the other idles. :func:`map_on_cores` gives each usable core a
contiguous share of the cases: all but the first in forked copies of this
process (:class:`bench.proc.Forked`: nothing imported again, the cases read from
shared memory, only the results pickled back), the first here. The cases are
drawn before, in the order the serial loop drew them, so the results are the
same list as ``[fn(x) for x in items]``, with one core or with many. A copy that
stalls (see :class:`~bench.proc.Forked`) has its share done here instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.proc import Forked, ForkStalled

T = TypeVar("T")
R = TypeVar("R")


def map_on_cores(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, computed on every usable core; the results in the items' order."""
    n = max(1, min(len(os.sched_getaffinity(0)), len(items)))
    bounds = [len(items) * k // n for k in range(n + 1)]
    shares = [items[a:b] for a, b in itertools.pairwise(bounds)]

    def job(share: Sequence[T]) -> Callable[[], list[R]]:
        return lambda: [fn(x) for x in share]

    copies = [Forked(job(share)) for share in shares[1:]]
    try:
        results = [fn(x) for x in shares[0]]
        for share, copy in zip(shares[1:], copies, strict=True):
            try:
                results += copy.result()
            except ForkStalled:  # stuck on a lock another thread held at the fork (see Forked): that share here
                results += [fn(x) for x in share]
        return results
    finally:
        for copy in copies:
            copy.close(wait_s=0.0)
