"""The examples in the docstrings of the comparison, gate and statistics modules run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "bench.stats",
    "bench.duet",
    "bench.analysis.cost",
    "bench.analysis.common",
    "bench.compare.figures",
    "bench.compare.runs",
    "bench.gate.rules",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
