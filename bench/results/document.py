"""Versioned JSON documents of a run directory: read with migrations, written exactly as declared.

Every JSON file lbbench writes into a run directory (run.json, summary.json) and a
lab's state folder (lab.json) is a :class:`Document`: a pydantic model with a
``schema_version``. Reading one (:func:`read_document`)

- refuses a file written by a newer lbbench (one line: which file, which version);
- migrates an older one step by step (``MIGRATIONS[n]`` turns version n into n+1),
  so a run directory of any age keeps loading;
- ignores fields it does not know (added fields do not bump ``schema_version``);
- and turns every other problem (missing, not JSON, binary, wrong type) into one
  line naming the file, the field and the fix.

Writing one (:func:`document_dict`, :func:`write_document`) is strict: the data must
survive a round trip through the model unchanged, so a field that is not declared
(or has another type than declared) is a bug caught where it is written, and the
model stays the one schema of the file (``bench schema`` exports it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UserError, from_validation_error

Migration = Callable[[dict[str, Any]], dict[str, Any]]
D = TypeVar("D", bound="Document")
#: A figure that may be an integer or a float (kept as written, not converted).
Number = int | float


class ResultsError(UserError):
    """A file of a run directory cannot be read (missing, damaged, newer than this lbbench)."""


class Model(BaseModel):
    """Base of every part of a document: strict types, unknown fields ignored on reading."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, use_attribute_docstrings=True)


class Document(Model):
    """A JSON file with a ``schema_version``; subclasses set the class variables."""

    #: The file's name in its folder (for messages and the JSON Schema's title).
    FILE: ClassVar[str] = ""
    #: The version this lbbench writes and the newest it reads.
    SCHEMA_VERSION: ClassVar[int] = 1
    #: ``MIGRATIONS[n]`` turns a version-n document (a dict) into version n+1.
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}
    #: Files written before ``schema_version`` existed are this version.
    UNVERSIONED: ClassVar[int] = 1
    #: The fix to name when the file is damaged (not JSON, wrong types ...).
    DAMAGED_FIX: ClassVar[str] = "restore it from a copy, or run again"
    #: The fix to name when the file is missing.
    MISSING_FIX: ClassVar[str] = "pass a run directory (`bench run` writes them; reports/ holds them)"

    schema_version: int


def migrate(cls: type[Document], data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` (a parsed document) brought to ``cls.SCHEMA_VERSION``, one migration at a time."""
    version = data.get("schema_version", cls.UNVERSIONED)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ResultsError(f"{source}: schema_version {version!r} is not a version number", cls.DAMAGED_FIX)
    if version > cls.SCHEMA_VERSION:
        raise ResultsError(
            f"{source}: schema_version {version} is newer than this lbbench understands (it reads {cls.FILE} up to version {cls.SCHEMA_VERSION})",
            "upgrade lbbench (git pull; make setup) to read it",
        )
    while version < cls.SCHEMA_VERSION:
        step = cls.MIGRATIONS.get(version)
        if step is None:
            raise ResultsError(
                f"{source}: schema_version {version} is older than this lbbench can migrate (it reads {cls.FILE} from version "
                f"{min(cls.MIGRATIONS, default=cls.SCHEMA_VERSION)})",
                "read it with the lbbench release that wrote it",
            )
        data = step(dict(data))
        version += 1
        data["schema_version"] = version
    return {**data, "schema_version": version}


def parse_document(cls: type[D], data: Any, source: str) -> D:
    """A parsed JSON value as ``cls``: migrated, validated, one :class:`ResultsError` line when it is not one."""
    if not isinstance(data, dict):
        raise ResultsError(f"{source}: expected a JSON object, got {type(data).__name__}", cls.DAMAGED_FIX)
    data = migrate(cls, data, source)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        e = from_validation_error(source, err, cls.DAMAGED_FIX)
        raise ResultsError(e.problem, e.fix) from None


def read_document(cls: type[D], path: Path) -> D:
    """Read ``path`` as a ``cls`` document (see the module's docstring for what is refused and migrated)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{path.parent}: no {path.name} (not a run directory, or the run never started)", cls.MISSING_FIX) from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a directory, not a {cls.FILE} file", "pass the run directory itself") from None
    except NotADirectoryError:
        raise ResultsError(f"{path.parent}: not a directory, so not a run directory", cls.MISSING_FIX) from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot be read ({exc.strerror or exc})", "check the path and its permissions") from None
    except ValueError:  # a NUL byte in the path
        raise ResultsError(f"{path.parent!r}: not a usable path (it contains a NUL byte)", cls.MISSING_FIX) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a text file (not UTF-8)", cls.DAMAGED_FIX) from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})", cls.DAMAGED_FIX) from None
    return parse_document(cls, data, str(path))


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first path where two JSON values differ (None when equal, numbers compared by value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in b:
                return f"{where}{key} (not declared in the model)"
            if key not in a:
                return f"{where}{key} (declared but not written)"
            found = _first_difference(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where.rstrip('.')} (length {len(a)} != {len(b)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{where.rstrip('.')}[{i}].")
            if found:
                return found
        return None
    if a != b or type(a) is bool is not type(b):
        return f"{where.rstrip('.')} ({a!r} became {b!r})"
    return None


def document_dict(cls: type[Document], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` validated against ``cls`` and dumped from it, as JSON-ready dict.

    Raises :class:`TypeError` (a bug, with its traceback) when ``data`` has a field
    the model does not declare, or a value that does not survive the model as is.
    """
    try:
        model = cls.model_validate(dict(data))
    except ValidationError as err:
        raise TypeError(f"{cls.FILE} does not match {cls.__module__}.{cls.__name__}: {err}") from None
    out = model.model_dump(mode="json", exclude_unset=True)
    diff = _first_difference(json.loads(json.dumps(dict(data), default=str)), out)
    if diff is not None:
        raise TypeError(f"{cls.FILE} does not match {cls.__module__}.{cls.__name__} at {diff}: declare the field there (and in reports/README.md)")
    return out


def write_document(cls: type[Document], data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Validate ``data`` as ``cls`` (strictly, see :func:`document_dict`) and write it atomically to ``path``."""
    out = document_dict(cls, data)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, path)
    return out
