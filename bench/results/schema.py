"""JSON Schema of every document a run directory (or a lab's state folder) holds: what `bench schema` prints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .capacity import CapacityDoc, SweepDoc
from .compare import CompareDoc
from .document import Document
from .duet import DuetDoc
from .gate import GateDoc
from .lab import LabState
from .run import RunDoc
from .summary import Summary

#: The versioned documents, by the name `bench schema` takes.
DOCUMENTS: dict[str, type[Document]] = {
    "run": RunDoc, "summary": Summary, "lab": LabState, "duet": DuetDoc, "gate": GateDoc, "compare": CompareDoc,
    "capacity": CapacityDoc, "sweep": SweepDoc,
}  # fmt: skip

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def model_schema(model: type[BaseModel], title: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``model`` as it is written to disk, titled ``title``.

    >>> s = model_schema(LabState, "lbbench lab.json", 1)
    >>> s["properties"]["schema_version"]["const"], s["$schema"] == DIALECT
    (1, True)
    """
    schema = model.model_json_schema(mode="serialization")
    out: dict[str, Any] = {"$schema": DIALECT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}
    if version is not None:
        out["properties"]["schema_version"] = {"const": version, "description": "the version of this file's schema"}
    return out


def document_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one document of :data:`DOCUMENTS` (run, summary, lab)."""
    cls = DOCUMENTS[name]
    return model_schema(cls, f"lbbench {cls.FILE} (schema version {cls.SCHEMA_VERSION})", cls.SCHEMA_VERSION)
