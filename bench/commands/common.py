"""What every command shares: exit statuses and the one way to talk to the user on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: What ``register(sub)`` receives: the `bench` parser's subparsers.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def say(msg: str) -> None:
    """One progress or result line for the user, on stderr (stdout carries the command's result)."""
    print(msg, file=sys.stderr, flush=True)
