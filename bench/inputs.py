"""Checks of what a user hands lbbench, before anything starts: files to read, paths to write, names.

Each check raises one :class:`~bench.errors.UserError` line naming the problem and
the fix, or returns what the caller needs; nothing here creates or starts anything
that stays (the writability probe removes what it made).
"""

from __future__ import annotations

import errno
import math
import os
import re
import tempfile
from pathlib import Path

from .errors import UserError

#: A scenario, topology, matrix or gate file is a few kilobytes; anything this big is not one.
MAX_INPUT_BYTES = 1 << 20
#: Compose project names lbbench gives its labs (and `bench down`/`--lab` accept).
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _os_problem(exc: OSError | ValueError) -> str:
    if isinstance(exc, ValueError):  # embedded NUL byte
        return "not a usable path (it contains a NUL byte)"
    if exc.errno == errno.ENAMETOOLONG:
        return "name too long"
    return exc.strerror or str(exc)


def read_text(path: Path, what: str = "file", fix: str = "check the path", flag: str = "") -> str:
    """The text of a small UTF-8 file the user named, or one line saying why it cannot be read.

    >>> read_text(Path("/nonexistent/x.yaml"), "scenario file")
    Traceback (most recent call last):
    bench.errors.UserError: /nonexistent/x.yaml: no such scenario file; fix: check the path
    """
    shown = f"{flag} {path}" if flag else str(path)
    try:
        if Path(path).is_dir():
            raise UserError(f"{shown}: is a directory, not a {what}", fix)
        with open(path, "rb") as fh:
            raw = fh.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{shown}: no such {what}", fix) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{shown}: cannot read this {what} ({_os_problem(exc)})", fix) from None
    if len(raw) > MAX_INPUT_BYTES:
        raise UserError(f"{shown}: more than {MAX_INPUT_BYTES >> 20} MiB, too big for a {what}", fix)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown}: not a text file (byte {exc.start} is not UTF-8), so not a {what}", fix) from None


def _no_nul(path: Path, what: str, fix: str) -> None:
    if "\x00" in str(path):
        raise UserError(f"{what} {str(path)!r}: not a usable path (it contains a NUL byte)", fix)


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        try:
            if parent.exists() or parent.is_symlink():
                return parent
        except (OSError, ValueError):
            continue
    return Path("/")


def _probe_writable(folder: Path) -> str | None:
    """Why ``folder`` cannot take a new entry (None when it can): made and removed at once."""
    try:
        probe = tempfile.mkdtemp(prefix=".lbbench-probe-", dir=folder)
    except (OSError, ValueError) as exc:
        return _os_problem(exc)
    os.rmdir(probe)
    return None


def check_output_dir(path: Path, what: str = "--out", fix: str = "choose another --out") -> Path:
    """``path`` as a directory lbbench may create (or fill, when it is empty), checked before anything starts."""
    path = Path(path)
    _no_nul(path, what, fix)
    try:
        if path.is_file() or (path.exists() and not path.is_dir()):
            raise UserError(f"{what} {path}: is a file, not a directory", fix)
        if path.is_dir() and any(path.iterdir()):
            raise UserError(f"{path} already exists and is not empty", f"{fix} or remove it")
    except (OSError, ValueError) as exc:
        raise UserError(f"{what} {path}: {_os_problem(exc)}", fix) from None
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UserError(f"{what} {path}: {base} is a file, so nothing can be created inside it", fix)
    problem = _probe_writable(base)
    if problem is not None:
        raise UserError(f"{what} {path}: cannot create it in {base} ({problem})", fix)
    # a name the file system would refuse is found now rather than after the run
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise UserError(f"{what} {path}: a name in it is longer than 255 bytes", fix)
    return path


def check_output_file(path: Path, what: str = "--output", fix: str = "choose another file", create_parents: bool = False) -> Path:
    """``path`` as a file lbbench may write (replacing it if it is a file), checked before the work starts.

    ``create_parents``: the caller creates missing folders on the way (else they must exist).
    """
    path = Path(path)
    _no_nul(path, what, fix)
    try:
        if path.is_dir():
            raise UserError(f"{what} {path}: is a directory, not a file", fix)
    except (OSError, ValueError) as exc:
        raise UserError(f"{what} {path}: {_os_problem(exc)}", fix) from None
    if len(os.fsencode(path.name)) > 255:
        raise UserError(f"{what} {path}: file name longer than 255 bytes", fix)
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise UserError(f"{what} {path}: {base} is a file, so nothing can be created inside it", fix)
    if base != path.parent and not create_parents:
        raise UserError(f"{what} {path}: no folder {path.parent}", f"create it first, or {fix}")
    problem = _probe_writable(base)
    if problem is not None:
        raise UserError(f"{what} {path}: cannot write in {base} ({problem})", fix)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path}: cannot be overwritten (permission denied)", fix)
    return path


def check_project(name: str, what: str = "lab") -> str:
    """A lab's compose project name as lbbench makes them (``lbbench-1a2b3c4d``), never a path.

    >>> check_project("lbbench-1a2b3c4d")
    'lbbench-1a2b3c4d'
    >>> check_project("../..")
    Traceback (most recent call last):
    bench.errors.UserError: lab '../..': not a lab name (lbbench names them like lbbench-1a2b3c4d); fix: `bench status` lists the labs
    """
    if not isinstance(name, str) or not PROJECT_RE.match(name):
        raise UserError(f"{what} {name!r}: not a lab name (lbbench names them like lbbench-1a2b3c4d)", "`bench status` lists the labs")
    return name


def number(text: str, what: str, *, minimum: float | None = None, maximum: float | None = None, integer: bool = False) -> float:
    """A finite number from a command-line value, within bounds (argparse gives strings).

    >>> number("3", "--repeat", minimum=1, integer=True)
    3
    >>> number("nan", "--scale", minimum=0)
    Traceback (most recent call last):
    bench.errors.UserError: --scale nan: not a finite number; fix: pass a number, e.g. --scale 1
    """
    example = f"e.g. {what} {int(minimum) if minimum is not None and minimum > 0 else 1}"
    try:
        value = int(text, 10) if integer else float(text)
    except (TypeError, ValueError):
        kind = "a whole number" if integer else "a number"
        raise UserError(f"{what} {text!r}: not {kind}", f"pass {kind}, {example}") from None
    if not math.isfinite(value):
        raise UserError(f"{what} {text}: not a finite number", f"pass a number, {example}")
    if minimum is not None and value < minimum:
        raise UserError(f"{what} {text}: must be at least {minimum:g}", f"pass a number, {example}")
    if maximum is not None and value > maximum:
        raise UserError(f"{what} {text}: must be at most {maximum:g}", f"pass a smaller number, e.g. {what} {maximum:g}")
    return value
