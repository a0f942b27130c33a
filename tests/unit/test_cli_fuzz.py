"""Random files and arguments thrown at the CLI (bench.cli.main): never a traceback, nothing started.

Every example runs ``main(argv)`` in-process with the Docker engine replaced by a
tripwire: reaching :func:`bench.engine.client` means every input was accepted and a
lab would start now. For every example the CLI must either

- refuse: a non-zero exit and stderr that is one ``bench: error: ... fix: ...`` line
  (or, for several problems found at once, that line's list of problems), or
- reach the engine (only inputs that passed every check get there), or
- succeed without the engine (`bench schema`, `bench scenarios`, ...),

and never raise anything else (a traceback); a refusal (or the tripwire) leaves no
file behind: no run directory in reports/ or at ``--out``, no lab state, nothing
beside the inputs; and nothing ever removes a file it was not asked to.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench import engine, paths
from bench.cli import main

#: Examples per property (the README's figures quote this number).
EXAMPLES = int(os.environ.get("LBBENCH_FUZZ_EXAMPLES", "400"))


class EngineReached(BaseException):
    """The CLI got as far as the Docker engine: a BaseException, so no `except Exception` swallows it."""


def _snapshot(*folders: Path) -> set[Path]:
    out: set[Path] = set()
    for folder in folders:
        if folder.exists():
            out.update(folder.rglob("*"))
    return out


# --------------------------------------------------------------------------- strategies

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["10s", "0s", "-5s", "1e9s", "5 parsecs", "auto", "https", "split", "smoke", "keep-alive", "open", "lean", "nan", "inf", ""]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)

SCENARIO_KEYS = ["schema_version", "name", "description", "topology", "variant", "duration", "ramp_up", "load", "faults", "overrides", "extends", "repeat", "thresholds", "variants"]
LOAD_KEYS = ["engine", "model", "scheme", "users", "spawn_rate", "path", "think_time", "processes", "requests_per_s", "connections_per_s", "held", "stages", "find_max", "requests_per_connection"]


@st.composite
def scenario_documents(draw: st.DrawFn) -> bytes:
    """A scenario (or topology) file of any content: bytes, text, YAML of any shape, smoke.yaml with fields broken."""
    kind = draw(st.sampled_from(["bytes", "text", "yaml-any", "yaml-scenario", "smoke-mutated", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "replace")
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b"---\n", b"null\n", b"[]\n", b"- a\n- b\n", b"42\n", b'"x"\n', b"{}\n"]))
    if kind == "yaml-any":
        return yaml.safe_dump(draw(VALUES)).encode()
    if kind == "yaml-scenario":
        doc = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(SCENARIO_KEYS), max_size=6, unique=True))}
        if draw(st.booleans()):
            doc["load"] = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(LOAD_KEYS), max_size=5, unique=True))}
        return yaml.safe_dump(doc).encode()
    smoke = yaml.safe_load((paths.SCENARIOS / "smoke.yaml").read_text())
    target = draw(st.sampled_from([*SCENARIO_KEYS, *[f"load.{k}" for k in LOAD_KEYS]]))
    where = smoke
    if target.startswith("load."):
        where, target = smoke["load"], target.removeprefix("load.")
    where[target] = draw(VALUES)
    return yaml.safe_dump(smoke).encode()


NAMES = st.text(alphabet=string.ascii_letters + string.digits + "-_./~ ", min_size=0, max_size=20)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e999", "nan", "inf", "-inf", "", "3", "0x10", "1_000", " 2 "]),
)


@st.composite
def paths_in(draw: st.DrawFn, sandbox: Path, document: Path) -> str:
    """A path a user could pass: missing, a file, a directory, inside a file, unwritable, the fuzzed file itself."""
    choice = draw(st.sampled_from(["missing", "file", "dir", "nonempty-dir", "inside-file", "proc", "sys", "document", "name", "null-byte", "long"]))
    return {
        "missing": str(sandbox / "missing" / "deeper"),
        "file": str(sandbox / "a-file"),
        "dir": str(sandbox / "empty-dir"),
        "nonempty-dir": str(sandbox / "full-dir"),
        "inside-file": str(sandbox / "a-file" / "x"),
        "proc": "/proc/lbbench-fuzz/out",
        "sys": "/sys/lbbench-fuzz",
        "document": str(document),
        "name": draw(NAMES),
        "null-byte": str(sandbox / "nul\x00byte"),
        "long": str(sandbox / ("x" * 300)),
    }[choice]


#: Values an option could get: mostly plausible ones, so that most command lines get past argparse to the checks behind it.
PLAUSIBLE: dict[str, list[str]] = {
    "--duration": ["5s", "10s", "0s", "-1s", "1e9s", "2m", "ten", "nan"],
    "--variant": ["monolith", "rsa", "nope", ""],
    "--set": ["lb.backend.processes=2", "lb.backend.processes=0", "lb.nope=1", "nonsense", "servers.count=1e99", "lb.local_addresses=-3", "=", "lb="],
    "--repeat": ["1", "2", "0", "61", "-1", "x"],
    "--scale": ["0.01", "1", "0", "-1", "nan", "1e308"],
    "--workers": ["0", "1", "65", "-1"],
    "--alpha": ["0.05", "0", "1", "nan"],
    "--rule": ["requests.per_s: -5%", "errors.total: <= 0", "nope", "latency_ms.p99: +lots", ""],
    "--format": ["table", "json", "markdown", "html", "pdf"],
    "--metric": ["latency_ms.p90", "nope.nope", ""],
    "--target": ["master", "backup", "lb-a", "srv2", "nope"],
    "--recover": ["1", "0", "-1"],
    "--seconds": ["1", "0", "121", "nan"],
    "--rounds": ["1", "0", "21"],
    "--connections": ["1", "0", "5001"],
    "--client": ["wrk-ka", "nope"],
    "--haproxy-threads": ["1", "0", "65"],
    "--flavour": ["node", "node-trixie", "nope"],
    "--base": ["debian:12", ""],
    "--run": ["smoke", "nope"],
    "--baseline-variant": ["rsa", "nope"],
    "--candidate-set": ["servers.count=1", "nope"],
}
PATH_OPTIONS = {"--out", "--matrix", "--rules", "--junit", "--json", "--output", "--baseline", "--candidate", "--lab"}
OPTIONS: dict[str, list[str]] = {
    "run": ["--duration", "--out", "--variant", "--set", "--matrix", "--repeat", "--scale", "--workers"],
    "up": ["--variant", "--set"],
    "gate": ["--baseline", "--candidate", "--rule", "--rules", "--alpha", "--junit", "--json", "--run", "--repeat", "--duration", "--out", "--baseline-variant", "--candidate-set"],
    "compare": ["--format", "--output", "--alpha", "--metric"],
    "report": [],
    "schema": [],
    "fault": ["--target", "--lab", "--recover"],
    "down": [],
    "calibrate": ["--seconds", "--rounds", "--connections", "--client", "--haproxy-threads", "--out"],
    "images": ["--flavour", "--base"],
    "scenarios": [],
    "frobnicate": [],
}


def argv_for(draw: st.DrawFn, sandbox: Path, document: Path) -> list[str]:
    """One command line: a command, then some of its options with values of any kind (and now and then junk)."""
    path = paths_in(sandbox, document)
    golden = str(paths.ROOT / "tests" / "golden" / "compare" / "runs")
    command = draw(st.sampled_from(list(OPTIONS)))
    argv = [command]
    positional = {
        "run": st.one_of(st.just(str(document)), st.sampled_from(["smoke", "nope", "open", "failover"]), NAMES, path),
        "up": st.one_of(st.just(str(document)), st.sampled_from(["split", "monolith", "nope"]), NAMES, path),
        "compare": st.one_of(path, st.just(golden)),
        "report": st.one_of(path, st.just(str(document.parent))),
        "schema": st.sampled_from(["summary", "run", "lab", "scenario", "topology", "nope"]),
        "fault": st.sampled_from(["crash", "freeze", "nope", ""]),
        "down": st.one_of(NAMES, st.sampled_from(["..", "../..", "/", "lbbench-0000000", "x/../.."])),
        "images": st.sampled_from(["build", "nope"]),
    }.get(command)
    if positional is not None and draw(st.integers(0, 9)) > 0:
        argv.append(draw(positional))
    for option in draw(st.lists(st.sampled_from(OPTIONS[command]), max_size=4)) if OPTIONS[command] else []:
        if option in PATH_OPTIONS:
            value = draw(st.one_of(path, st.just(golden + "/base"), st.just(str(document))))
        else:
            value = draw(st.one_of(st.sampled_from(PLAUSIBLE.get(option, ["x"])), NAMES, NUMBERS))
        argv += [option, value]
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(["--all", "--strict", "--recover-all", "-x", "--", "--help-me", "--duration"])))
    return argv


def file_argv(draw: st.DrawFn, sandbox: Path, document: Path) -> list[str]:
    """A command that reads the fuzzed file as a scenario, a topology, a matrix, a gate file or a run's run.json."""
    doc, golden = str(document), str(paths.ROOT / "tests" / "golden" / "compare" / "runs")
    choice = draw(st.sampled_from(["run", "run-matrix", "up", "gate-rules", "report", "report-samples", "compare"]))
    out = str(sandbox / "out")
    return {
        "run": ["run", doc, "--out", out],
        "run-matrix": ["run", "smoke", "--matrix", doc, "--out", out],
        "up": ["up", doc],
        "gate-rules": ["gate", "--baseline", golden + "/base", "--candidate", golden + "/delay", "--rules", doc],
        "report": ["report", str(sandbox / "run-dir")],
        "report-samples": ["report", str(sandbox / "samples-dir")],
        "compare": ["compare", str(sandbox / "run-dir"), golden + "/base"],
    }[choice]


# --------------------------------------------------------------------------- the property


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The engine replaced by a tripwire; lab state and reports redirected into the sandbox's view."""

    def client() -> Any:
        raise EngineReached

    monkeypatch.setattr(engine, "client", client)
    monkeypatch.setattr(engine, "compose_binary", lambda: (_ for _ in ()).throw(EngineReached()))
    # reports/ and the labs' state folder of this test only: the real ones hold other labs
    monkeypatch.setattr(paths, "REPORTS", tmp_path / "reports")
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    (tmp_path / "state").mkdir()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    # a relative path drawn as an option's value (--output MX) lands in the sandbox, never in the checkout
    monkeypatch.chdir(sandbox)
    (sandbox / "a-file").write_text("x")
    (sandbox / "empty-dir").mkdir()
    (sandbox / "full-dir").mkdir()
    (sandbox / "full-dir" / "keep").write_text("x")
    return sandbox


def check_one(sandbox: Path, document: Path, content: bytes, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    document.write_bytes(content)
    watched = (sandbox.parent,)
    before = _snapshot(*watched)
    reached = False
    try:
        code = main(argv)
    except EngineReached:
        reached, code = True, None
    except SystemExit as exc:  # --help, --version: argparse exits by itself
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err, f"{argv}: traceback\n{err}"
    after = _snapshot(*watched)
    left = sorted(str(p) for p in after - before)
    assert code == 0 or not left, f"{argv}: left behind {left}"  # a success writes what it was asked to
    gone = sorted(str(p) for p in before - after)
    assert not gone, f"{argv}: removed {gone}"
    event(f"{argv[0] if argv else '-'}: " + ("engine reached" if reached else f"exit {code}"))
    if reached:
        return
    lines = err.strip().splitlines()
    if lines and code:
        event("refused: " + lines[0].removeprefix("bench: error: ").replace(str(sandbox), "SANDBOX").split(";")[0][:50])
    if code == 0:
        return
    if argv and argv[0] == "gate" and code in (1, 3) and re.search(r"^gate: (FAIL|INCONCLUSIVE) ", out, re.MULTILINE):
        return  # a verdict (exit 1 failed, 3 inconclusive), not a refusal: the same runs on both sides is a valid gate
    assert code != 0
    assert lines and lines[0].startswith("bench: error: "), f"{argv} -> {code}: {err!r}"
    assert "fix:" in err or "usage:" in err, f"{argv}: no fix named: {err!r}"
    # one line, or a list of problems found at once ("N problems in X:" then "  - ..." lines)
    assert len(lines) == 1 or all(line.startswith("  - ") for line in lines[1:]), f"{argv}: {err!r}"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), content=scenario_documents())
def test_random_files_and_arguments_never_reach_a_traceback(data: st.DataObject, content: bytes, tripwire: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = tripwire / "scenario.yaml"
    argv = argv_for(data.draw, tripwire, document)
    check_one(tripwire, document, content, argv, capsys)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), content=scenario_documents())
def test_random_files_never_reach_a_traceback(data: st.DataObject, content: bytes, tripwire: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fuzzed file read as every kind of file the CLI takes (also as a run directory's run.json and summary.json)."""
    document = tripwire / "scenario.yaml"
    run_dir = tripwire / "run-dir"
    run_dir.mkdir(exist_ok=True)
    for name in ("run.json", "summary.json"):
        (run_dir / name).write_bytes(content if data.draw(st.booleans()) else json.dumps(data.draw(VALUES)).encode())
    # a real run directory whose sample chunk is the fuzzed file
    samples_dir = tripwire / "samples-dir"
    if not samples_dir.exists():
        (samples_dir / "samples" / "requests").mkdir(parents=True)
        (samples_dir / "run.json").write_bytes((paths.ROOT / "tests" / "golden" / "runs" / "smoke" / "run.json").read_bytes())
    table = data.draw(st.sampled_from(["requests", "latency_hist", "cpu", "haproxy_stat", "pacing"]))
    (samples_dir / "samples" / table).mkdir(parents=True, exist_ok=True)
    (samples_dir / "samples" / table / "part-fuzz-000000.parquet").write_bytes(content)
    check_one(tripwire, document, content, file_argv(data.draw, tripwire, document), capsys)
