"""The commands of `bench`, one module each: its parser and one thin `cmd_*` function.

A command module holds two things and no logic of its own:

- ``register(sub)`` adds the command's parser to the `bench` subparsers and sets
  ``func=cmd_<name>``;
- ``cmd_<name>(args) -> int`` calls ONE domain function (imported inside it, so that
  ``bench --help`` stays fast), prints what the user needs and returns an exit status
  from :mod:`bench.commands.common`.

To add a command: write ``bench/commands/<name>.py`` with both, add the module to
:data:`COMMANDS` below (the order is the order of ``bench --help``), document it in
docs/, and add a bad-input case to tests/unit/test_cli.py.
"""

from __future__ import annotations

from types import ModuleType

from . import calibrate, capacity, compare, doctor, down, fault, gate, images, report, run, scenarios, schema, status, up, validate, watch

#: Every command module, in the order `bench --help` lists them.
COMMANDS: tuple[ModuleType, ...] = (run, validate, watch, up, down, fault, status, doctor, scenarios, images, calibrate, report, compare, gate, capacity, schema)
