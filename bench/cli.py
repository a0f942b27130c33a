"""The `bench` command: parse, call one command, print. No logic lives here.

Each command is a module under :mod:`bench.commands` (its parser and a thin ``cmd_*``
function); this module only builds the parser from them and turns errors into exit codes.

Exit status: 0 success, 1 a check failed (`bench doctor`) or a regression (`bench gate`), 2 a usage or input
error (one line on stderr naming the problem and the fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import sys

from . import __version__
from .commands import COMMANDS
from .commands.common import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, say
from .errors import UserError, engine_error
from .proc import quick_exit

__all__ = ["EXIT_FAIL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UserError (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    """The `bench` parser with every command of :data:`bench.commands.COMMANDS`."""
    p = _Parser(prog="bench", description="Load-test and benchmark software load balancers (HAProxy + keepalived labs).")
    p.add_argument("--version", action="version", version=f"lbbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return p


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """One parser per process: building it costs ~7 ms, and tests call :func:`main` in-process thousands of times."""
    return build_parser()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script; returns the exit status."""
    if argv is None:  # the command itself, not a caller in its own process (a test)
        quick_exit()
    try:
        args = _parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except UserError as exc:
        say(f"bench: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say("bench: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        # the Docker engine's own errors (after the lab's cleanup ran on the way up); anything else is a bug
        engine = engine_error(exc)
        if engine is None:
            raise
        say(f"bench: error: {engine}")
        return engine.exit_code


if __name__ == "__main__":
    sys.exit(main())
