"""The one user-facing error type.

Anything raised as :class:`UserError` is a problem with the user's input or
machine (a bad scenario file, a missing Docker engine, a port in use). The CLI
catches it once, prints one line naming the problem and the fix, and exits
non-zero. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import ValidationError


def one_line(text: str) -> str:
    r"""``text`` as one line of printable characters, whatever a tool's message or a file's bytes put in it.

    >>> print(one_line("a" + chr(10) + "b" + chr(27) + "c"))
    a b\x1bc
    """
    if text.isprintable():
        return text
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UserError(Exception):
    """A problem the user can fix; ``fix`` says how."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return one_line(f"{self.problem}; fix: {self.fix}" if self.fix else self.problem)


def engine_error(exc: BaseException) -> UserError | None:
    """An error the Docker engine (docker-py) raised, as one line with the engine's own message; None for anything else.

    Engine errors are the machine's state (a network or bridge gone, a name taken, the
    engine restarting), not bugs: the user sees what the engine said and what to try.
    """
    errors = sys.modules.get("docker.errors")
    if errors is None or not isinstance(exc, errors.DockerException):
        return None
    said = getattr(exc, "explanation", None) or str(exc)
    if isinstance(said, bytes):
        said = said.decode(errors="replace")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    where = f" ({type(exc).__name__} {status})" if status else f" ({type(exc).__name__})"
    return UserError(
        f"the Docker engine refused{where}: {said}",
        "`bench doctor` checks the engine; `bench status` lists what a failed start left, `bench down PROJECT` removes it",
    )


class RunInterrupted(Exception):
    """Raised inside a run when SIGINT or SIGTERM arrives; the run tears down and keeps its data."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class Problems(UserError):
    """Several problems found at once (``bench validate``, the checks before a run), each with its fix.

    Printed as one line per problem, so a user fixes them all in one go instead
    of meeting them one run at a time.
    """

    def __init__(self, problems: Sequence[tuple[str, str | None]], context: str = ""):
        if not problems:
            raise ValueError("Problems needs at least one problem")
        self.problems = list(problems)
        self.context = context
        first, fix = self.problems[0]
        super().__init__(first, fix)

    def lines(self) -> list[str]:
        """One line per problem: ``problem; fix: how``."""
        return [one_line(f"{p}; fix: {f}" if f else p) for p, f in self.problems]

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.lines()[0]
        head = f"{len(self.problems)} problems" + (f" in {self.context}" if self.context else "")
        return head + ":\n" + "\n".join(f"  - {line}" for line in self.lines())


def from_validation_error(source: str, err: ValidationError, fix: str = "correct that field; docs/scenarios.md and docs/lab.md list every field") -> UserError:
    """One line for pydantic's first complaint about ``source``: where, what, what was given."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif "input" in first and first["type"] not in ("missing",):
        shown = first["input"]
        if not isinstance(shown, dict | list):
            text = repr(shown)
            msg = f"{msg} (got {text[:60] + '...' if len(text) > 60 else text})"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return UserError(f"{source}: {loc}: {msg}{more}", fix)
