"""``summary.json``: the analysed figures of a run, one typed section per part of the analysis.

:class:`Summary` composes one model per section; each section lives in the module
named after the analysis module that computes it (``load`` -> load.py ...).
reports/README.md documents every field; tests/unit/test_results_schema.py checks
that the two agree both ways.

To add a section: write its class (a :class:`~bench.results.summary.base.Section`)
in a module of this package, add ONE field to :class:`Summary` with a default
(``mysection: MySection | None = None``: summaries written before it lack it), have
the analysis return the dict, and document its fields in reports/README.md. To add a
field to a section: add it to the section's class with a default, and to the README.

    >>> from bench.results.summary import Summary
    >>> sorted(Summary.model_fields)[:4]
    ['bottleneck', 'bytes', 'checks', 'collectors']
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel

from ..document import Document, Migration, document_dict, read_document
from ..layout import SUMMARY_JSON, RunDir
from .base import Section
from .cost import Cost
from .cpu import Collectors, Cpu
from .decomposition import Decomposition
from .haproxy import Connections, Haproxy, Tls
from .header import RunRef, Window
from .load import Load
from .ports import Ports
from .requests import Bytes, Errors, Latency, Requests
from .thresholds import Thresholds
from .traffic import Traffic
from .unfinished import Unfinished
from .verdicts import Bottleneck, Check, Integrity
from .vrrp import Failover, Vrrp

__all__ = ["SCHEMA_VERSION", "Section", "Summary", "read_summary", "summary_dict"]

SCHEMA_VERSION = 2


def _fill(annotation: Any, value: Any) -> Any:
    """``value`` (of type ``annotation``) with :func:`fill_nulls` applied to every model inside it."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        for arg in args:
            if arg is not type(None):
                return _fill(arg, value)
        return value
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return fill_nulls(annotation, value)
    if origin is dict and isinstance(value, dict):
        return {k: _fill(args[1], v) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        return [_fill(args[0], v) for v in value]
    return value


def fill_nulls(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every field ``model`` declares present: absent ones null, sub-sections filled alike.

    >>> from bench.results.summary.requests import Latency
    >>> fill_nulls(Latency, {"p50": 1.5})["corrected"] is None
    True
    """
    out = dict(data)
    for name, info in model.model_fields.items():
        key = info.alias or name
        out[key] = _fill(info.annotation, out[key]) if key in out else None
    return out


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 summaries could lack sections and fields added later: version 2 has them all, null = not measured."""
    return fill_nulls(Summary, data)


class Summary(Document):
    """``summary.json`` of a run directory (reports/README.md, "summary.json")."""

    FILE: ClassVar[str] = SUMMARY_JSON
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    MIGRATIONS: ClassVar[dict[int, Migration]] = {1: _v1_to_v2}
    DAMAGED_FIX: ClassVar[str] = "rebuild it from the run's samples with `bench report DIR`"

    schema_version: int
    run: RunRef | None
    window: Window | None
    requests: Requests | None
    errors: Errors | None
    latency_ms: Latency | None
    bytes: Bytes | None
    connections: Connections | None
    tls: Tls | None
    haproxy: Haproxy | None
    cpu: Cpu | None
    cost: Cost | None = None
    ports: Ports | None
    traffic: Traffic | None
    vrrp: Vrrp | None
    failover: Failover | None
    collectors: Collectors | None
    bottleneck: Bottleneck | None
    load: Load | None
    checks: list[Check] | None
    thresholds: Thresholds | None = None
    integrity: Integrity | None = None
    decomposition: Decomposition | None = None
    unfinished: Unfinished | None = None


def summary_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The analysis' summary validated against :class:`Summary` (a TypeError names an undeclared field)."""
    return document_dict(Summary, data)


def read_summary(run_dir: Path) -> Summary:
    """``summary.json`` of ``run_dir``, migrated to the current version (one line when it cannot be read)."""
    return read_document(Summary, RunDir(run_dir).summary_json)
