"""Shared fixtures. Integration tests are marked `integration` and need a Docker engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# No per-example deadline (Hypothesis's default is 200 ms): on a shared, noisy machine an
# example's run time proves nothing, and tests never assert a time.
settings.register_profile("lbbench", deadline=None)
settings.load_profile("lbbench")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def ctrl_c_raises() -> object:
    """SIGINT raises KeyboardInterrupt here, as in a terminal, also when pytest runs as a background job (SIGINT ignored)."""
    import signal

    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)


@pytest.fixture(autouse=True)
def _never_monkey_patched() -> object:
    """Importing Locust monkey-patches threads, sockets and ssl for the whole process.

    In pytest's process that makes later tests hang (CI once ran out of time that way):
    a test that needs Locust imported runs it in a subprocess. Fails the test that did it.
    """
    yield
    import sys

    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_anything_patched():
        pytest.fail("this test monkey-patched pytest's process (imported locust?): run that code in a subprocess")


#: The scope (pytest-xdist's unit of work) of every integration test under ``make test``
#: (``--numprocesses 2``): all of them go to one process, one after another.
LAB_SCOPE = "lab"


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, when it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Every integration test in one unit of work; each unit-test module a unit of its own, beside them.

    Labs must not overlap (each integration test measures its own lab, and the session's shared
    runs live in one process), so they run in one process in collection order; the unit tests go
    to the other process meanwhile. (Not ``--dist loadgroup``: it names a test's group in its node
    id, which pytest 9 no longer lets it change, so every test was a group of its own.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class LabAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return LAB_SCOPE if nodeid.startswith("tests/integration/") else super()._split_scope(nodeid)

    # units in collection order, not the largest first: `pytest tests` collects the lab's tests first
    config.option.loadscopereorder = False
    return LabAtATime(config, log)
