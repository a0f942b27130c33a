"""The typed models of bench/results against reports/README.md, and reading old, new and broken files.

reports/README.md documents run.json, lab.json and summary.json field by field; the
models in bench/results are what lbbench writes and reads. These tests hold the two
together both ways: every field of a model is documented (in its own row, or named in
the row of the section it belongs to), and every documented field exists.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin

import jsonschema
import pytest
from pydantic import BaseModel

from bench.cli import main
from bench.results.document import Document, ResultsError, document_dict, parse_document, read_document
from bench.results.lab import LabState
from bench.results.run import read_run
from bench.results.schema import DOCUMENTS, document_schema
from bench.results.summary import Summary, read_summary

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "reports" / "README.md"
GOLDEN = ROOT / "tests" / "golden"
#: The README section that documents each document, by the start of its heading.
SECTIONS = {
    "run": "## run.json",
    "lab": "## Lab state (lab.json",
    "summary": "## summary.json",
    "duet": "## Duet folder (duet.json",
    "gate": "## Gate verdict (gate.json",
    "compare": "## Comparison (bench compare --format json",
    "sweep": "### sweep.json",
    "capacity": "### capacity.json",
}

Path_ = tuple[str, ...]


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def model_paths(model: type[BaseModel], prefix: Path_ = ()) -> tuple[set[Path_], set[Path_]]:
    """(every node, the leaves) of ``model``'s fields: ``<>`` for a map's key, ``[]`` for a list's items.

    A map or list of plain values is one leaf (``errors.by_kind``), of models a node to descend into.
    """
    nodes: set[Path_] = set()
    leaves: set[Path_] = set()

    def walk(annotation: Any, path: Path_) -> None:
        nodes.add(path)
        annotation = _strip_optional(annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if _is_model(annotation):
            for name, info in annotation.model_fields.items():
                walk(info.annotation, (*path, info.alias or name))
        elif (origin is dict and _is_model(_strip_optional(args[1]))) or (origin is dict and get_origin(_strip_optional(args[1])) is dict):
            walk(args[1], (*path, "<>"))
        elif origin is list and _is_model(_strip_optional(args[0])):
            walk(args[0], (*path, "[]"))
        else:
            leaves.add(path)
            if origin is dict:  # a map of plain values may be documented as `path.<key>`
                nodes.add((*path, "<>"))

    for name, info in model.model_fields.items():
        walk(info.annotation, (*prefix, info.alias or name))
    return nodes, leaves


def _split(dotted: str) -> Path_:
    """``a.b[].c.<x>`` -> ("a", "b", "[]", "c", "<>")."""
    out: list[str] = []
    for raw in dotted.split("."):
        part = re.sub(r"\[[^\]]*\]", "[]", raw)
        name, brackets = part.split("[]", 1)[0], part.count("[]")
        out.append("<>" if name.startswith("<") else name)
        out.extend(["[]"] * brackets)
    return tuple(p for p in out if p)


def _dotted(path: Path_) -> str:
    """("a", "[]", "b") -> "a[].b"."""
    return ".".join(path).replace(".[]", "[]")


def _expand(span: str) -> list[str]:
    """``a.{b,c}.d`` -> [a.b.d, a.c.d] (one brace group per level, nested ones too)."""
    m = re.search(r"\{([^{}]*)\}", span)
    if not m:
        return [span]
    return [x for alt in m.group(1).split(",") for x in _expand(span[: m.start()] + alt.strip() + span[m.end() :])]


def readme_rows(section: str) -> list[tuple[list[Path_], str]]:
    """The ``| field | meaning |`` rows of one README section: (the documented paths, the meaning text)."""
    text = README.read_text()
    start = text.index(SECTIONS[section])
    end = text.find("\n#", start + 3)
    rows = []
    for line in text[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        spans = re.findall(r"`([^`]+)`", cells[0])
        rows.append(([_split(p) for s in spans for p in _expand(s)], "|".join(cells)))
    return rows


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_readme_documents_every_field_and_nothing_else(name: str) -> None:
    nodes, leaves = model_paths(DOCUMENTS[name])
    rows = readme_rows(name)
    documented: dict[Path_, str] = {}
    for paths, meaning in rows:
        for p in paths:
            documented[p] = documented.get(p, "") + " " + meaning
    assert documented, f"no field table under {SECTIONS[name]!r} in reports/README.md"
    unknown = sorted(_dotted(p) for p in documented if p not in nodes)
    assert not unknown, f"reports/README.md documents {name} fields the model does not have: {unknown}"
    missing = []
    for leaf in sorted(leaves):
        if leaf in documented or (*leaf, "<>") in documented:
            continue
        ancestors = [leaf[:i] for i in range(len(leaf) - 1, 0, -1) if leaf[:i] in documented]
        rest = [c for c in leaf[len(ancestors[0]) :] if c not in ("<>", "[]")] if ancestors else None
        if not ancestors or not all(re.search(rf"(?<![\w.]){re.escape(c)}\b", documented[ancestors[0]]) for c in rest or []):
            missing.append(_dotted(leaf))
    assert not missing, f"{name} fields not documented in reports/README.md: {missing}"


def test_the_readme_check_would_catch_a_gap() -> None:
    """The check above is not vacuous: a model with an undocumented field fails it."""

    class Extra(BaseModel):
        brand_new_figure: float | None = None

    _nodes, leaves = model_paths(Extra, ("load",))
    documented = {p for paths, _ in readme_rows("summary") for p in paths}
    assert ("load", "brand_new_figure") in leaves and ("load", "brand_new_figure") not in documented


@pytest.mark.parametrize("path", sorted(GOLDEN.rglob("summary.json")), ids=lambda p: str(p.relative_to(GOLDEN)))
def test_every_golden_summary_loads(path: Path) -> None:
    """Golden run directories of every age keep loading (version 1 ones are migrated to the current version)."""
    summary = read_document(Summary, path)
    assert summary.schema_version == Summary.SCHEMA_VERSION
    raw = json.loads(path.read_text())
    assert summary.requests is not None and summary.requests.total == raw["requests"]["total"]
    if "load" not in raw:  # added after the first version 1 summaries: null = not measured
        assert summary.load is None


@pytest.mark.parametrize("path", sorted(GOLDEN.rglob("run.json")), ids=lambda p: str(p.relative_to(GOLDEN)))
def test_every_golden_run_json_loads(path: Path) -> None:
    run = read_run(path.parent)
    assert run.id == json.loads(path.read_text())["id"]


def test_a_summary_written_now_round_trips_exactly() -> None:
    src = GOLDEN / "runs" / "smoke" / "summary.json"
    data = json.loads(src.read_text())
    assert document_dict(Summary, data) == data


def test_writing_an_undeclared_field_is_a_bug_with_its_traceback() -> None:
    data = json.loads((GOLDEN / "runs" / "smoke" / "summary.json").read_text())
    data["load"]["brand_new_figure"] = 1.0
    with pytest.raises(TypeError, match=r"load\.brand_new_figure \(not declared in the model\)"):
        document_dict(Summary, data)
    data = json.loads((GOLDEN / "runs" / "smoke" / "summary.json").read_text())
    data["requests"]["total"] = "5142"
    with pytest.raises(TypeError, match=r"requests.total"):
        document_dict(Summary, data)


def test_a_newer_version_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(GOLDEN / "runs" / "smoke", run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "schema_version": Summary.SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsError, match=r"is newer than this lbbench understands .*upgrade lbbench"):
        read_summary(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "schema_version": 99}))
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schema_version 99 is newer than this lbbench understands" in err[0] and "fix: upgrade lbbench" in err[0]


class _Old(Document):
    """A document at version 3 that reads versions 1 and 2 by migrating them step by step."""

    FILE: ClassVar[str] = "old.json"
    SCHEMA_VERSION: ClassVar[int] = 3
    MIGRATIONS: ClassVar[dict[int, Any]] = {
        1: lambda d: {**{k: v for k, v in d.items() if k != "rate"}, "per_s": d["rate"]},  # renamed in 2
        2: lambda d: {**d, "per_s": float(d["per_s"]), "unit": "req/s"},  # unit added in 3
    }
    UNVERSIONED: ClassVar[int] = 1

    schema_version: int
    per_s: float
    unit: str


@pytest.mark.parametrize(
    ("data", "version_seen"),
    [({"rate": 5}, 1), ({"schema_version": 1, "rate": 5}, 1), ({"schema_version": 2, "per_s": 5}, 2), ({"schema_version": 3, "per_s": 5.0, "unit": "req/s"}, 3)],
)
def test_older_documents_migrate_step_by_step(data: dict[str, Any], version_seen: int) -> None:
    doc = parse_document(_Old, data, "old.json")
    assert (doc.schema_version, doc.per_s, doc.unit) == (3, 5.0, "req/s")


def test_a_version_without_migration_is_refused() -> None:
    with pytest.raises(ResultsError, match="older than this lbbench can migrate"):
        parse_document(_Old, {"schema_version": 0}, "old.json")


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00binary", "not a text file"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
        (b"{}", "id: Field required"),
        (b'{"schema_version": "one", "id": "x", "status": "completed"}', "schema_version 'one' is not a version number"),
        (b'{"schema_version": true, "id": "x", "status": "completed"}', "schema_version True is not a version number"),
        (b'{"id": "x", "status": "exploded"}', "status: Input should be"),
        (b'{"id": "x", "status": "completed", "load_window": {"start": "soon"}}', "load_window.start"),
        (b'{"id": "x", "status": "completed", "machine": {"cpus": 1e400}}', "machine.cpus"),
    ],
)
def test_damaged_run_json_is_one_line(tmp_path: Path, content: bytes, expect: str) -> None:
    (tmp_path / "run.json").write_bytes(content)
    with pytest.raises(ResultsError, match=re.escape(expect)) as info:
        read_run(tmp_path)
    assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_lab_state_round_trips(tmp_path: Path) -> None:
    state = {
        "schema_version": 1, "project": "lbbench-x", "topology": "split", "topology_spec": {"name": "split"}, "variant": None,
        "vip": "198.18.0.10", "ca": "/x/ca.pem", "client_subnet": "198.18.0.0/24", "server_subnet": "198.18.1.0/24",
        "nodes": ["lb-a", "lb-b"], "image": "lbbench/node:x", "events": "/x/events.jsonl",
    }  # fmt: skip
    assert document_dict(LabState, state) == state
    (tmp_path / "lab.json").write_text(json.dumps(state))
    assert read_document(LabState, tmp_path / "lab.json").vip == "198.18.0.10"


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_bench_schema_prints_a_json_schema(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", name]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(document_schema(name)))
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["properties"]["schema_version"]["const"] == DOCUMENTS[name].SCHEMA_VERSION
    assert set(schema["required"]) >= {n for n, f in DOCUMENTS[name].model_fields.items() if f.is_required()} - {"schema_version"}


def test_the_summary_schema_validates_a_summary() -> None:
    """The exported JSON Schema accepts what lbbench writes, and rejects a wrong type."""
    schema = document_schema("summary")
    data = json.loads((GOLDEN / "runs" / "smoke" / "summary.json").read_text())
    jsonschema.validate(data, schema)
    data["requests"]["total"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
