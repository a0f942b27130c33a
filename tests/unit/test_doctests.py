"""The examples in bench's docstrings run and say what they show (one test per module that has any).

Not `pytest --doctest-modules bench`: collecting that imports every module, and the
Locust user modules monkey-patch the process with gevent when imported.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__") for p in PACKAGE.rglob("*.py") if ">>> " in p.read_text()
)


def test_doctests_are_found() -> None:
    assert {"bench.results.layout", "bench.results.histogram", "bench.stats", "bench.duet", "bench.gate.rules"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name}: '>>> ' found but no example ran"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (see the captured output)"
