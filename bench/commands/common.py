"""What every command shares: exit statuses and the one way to talk to the user on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeAlias

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: `bench run`: the lab changed under the run (a container died, the engine went away, the VIP moved without a fault).
EXIT_INVALID = 3

#: What ``register(sub)`` receives: the `bench` parser's subparsers.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def say(msg: str) -> None:
    """One progress or result line for the user, on stderr (stdout carries the command's result)."""
    print(msg, file=sys.stderr, flush=True)


def whole(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for a whole number within bounds (argparse then prints one line naming the flag)."""

    def parse(text: str) -> int:
        return int(_number(text, minimum, maximum, integer=True))

    parse.__name__ = "whole number"
    return parse


def real(minimum: float | None = None, maximum: float | None = None, above: float | None = None, below: float | None = None) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite number within bounds; ``above``/``below`` exclude the bound itself."""

    def parse(text: str) -> float:
        value = _number(text, minimum, maximum, integer=False)
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"{text}: must be more than {above:g}")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"{text}: must be less than {below:g}")
        return value

    parse.__name__ = "number"
    return parse


def _number(text: str, minimum: float | None, maximum: float | None, integer: bool) -> float:
    from ..errors import UserError
    from ..inputs import number

    try:
        return number(text, "", minimum=minimum, maximum=maximum, integer=integer)
    except UserError as exc:
        raise argparse.ArgumentTypeError(exc.problem.strip()) from None
