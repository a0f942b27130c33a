"""Golden run directories: a known summary.json, the derived tables' columns, and a report that renders.

tests/golden/runs/<name>/ is a real run directory, trimmed (tests/golden/runs/trim_run.py):
``smoke`` is `bench run smoke --duration 8s` (Locust FastHttpUser, keep-alive);
``lean-new-conn`` is the lean engine with a new connection and a full TLS handshake
per request, so the connection and handshake cross-checks have both sides.
Their summary.json is the expected output; `pytest --update-golden` rewrites it.
The whole report (plots included) is built for ``smoke`` only, to keep this fast.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.analysis import series
from bench.analysis.cpu import CPU_COLUMNS
from bench.analysis.ports import PORT_COLUMNS
from bench.analysis.requests import TIMELINE_COLUMNS
from bench.analysis.summary import summarise
from bench.analysis.traffic import TRAFFIC_COLUMNS
from bench.report import build_report
from bench.report.plots import OPTIONAL_PLOTS, PLOTS
from bench.results.events import read_events

RUNS = Path(__file__).resolve().parents[1] / "golden" / "runs"
NAMES = sorted(p.name for p in RUNS.iterdir() if (p / "run.json").exists())

#: Every field issue 3 asks for, plus the first version's fields (dotted paths).
REQUIRED_FIELDS = [
    "schema_version",
    "run.id", "run.scenario", "run.variant", "run.status", "run.started_at", "run.ended_at",
    "window.start", "window.end", "window.seconds",
    "requests.total", "requests.ok", "requests.steady", "requests.per_s",
    "errors.total", "errors.by_kind", "errors.steady",
    "latency_ms.p50", "latency_ms.p90", "latency_ms.p99", "latency_ms.p999", "latency_ms.mean", "latency_ms.max",
    "bytes.total",
    "connections.per_s", "connections.client_max", "connections.backend_max",
    "tls.handshakes_per_s", "tls.resumption_pct",
    "cpu.host_per_core_pct", "cpu.by_container",
    "ports.max_in_use", "ports.range_size", "ports.max_utilisation_pct", "ports.by_source",
    "traffic.client_mbps.in", "traffic.client_mbps.out", "traffic.server_mbps.in", "traffic.server_mbps.out",
    "bottleneck.component", "bottleneck.verdict", "bottleneck.evidence", "bottleneck.limits", "bottleneck.contended", "bottleneck.valid",
    "haproxy.pool", "haproxy.limits",
    "checks",
    "integrity.ok", "integrity.problems",
]  # fmt: skip


def dig(d: dict, dotted: str) -> object:
    for key in dotted.split("."):
        assert isinstance(d, dict) and key in d, f"summary.json lacks {dotted}"
        d = d[key]
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The smoke golden run copied (without its summary.json) and built once."""
    name = "smoke"
    run_dir = tmp_path_factory.mktemp("golden") / name
    shutil.copytree(RUNS / name, run_dir, ignore=shutil.ignore_patterns("summary.json"))
    build_report(run_dir)
    return name, run_dir


@pytest.mark.parametrize("name", NAMES)
def test_golden_summary(name: str, update_golden: bool) -> None:
    got = json.loads(json.dumps(summarise(RUNS / name)))  # as JSON would hold it
    expected_path = RUNS / name / "summary.json"
    if update_golden:
        expected_path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_path.read_text())


def test_build_writes_the_summary_it_computes(built: tuple[str, Path]) -> None:
    name, run_dir = built
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads((RUNS / name / "summary.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_golden_fields(name: str) -> None:
    s = json.loads((RUNS / name / "summary.json").read_text())
    for field in REQUIRED_FIELDS:
        dig(s, field)
    for check in s["checks"]:
        assert set(check) == {"name", "ok", "client", "haproxy", "diff_pct", "note", "valid"}
    assert [c["name"] for c in s["checks"]] == ["requests", "connections", "handshakes"]
    for c in s["cpu"]["by_container"].values():
        assert set(c) == {"role", "node", "mean_pct", "max_pct", "total_mean_pct", "total_max_pct"}
    # a real run exercises these: they must not be null
    for field in (
        "requests.per_s", "latency_ms.p99", "connections.per_s", "connections.client_max", "connections.backend_max", "tls.handshakes_per_s",
        "ports.max_in_use", "ports.range_size", "traffic.client_mbps.out", "traffic.server_mbps.in", "bottleneck.component", "collectors.cpu_pct",
    ):  # fmt: skip
        assert dig(s, field) is not None, field
    assert len(s["cpu"]["host_per_core_pct"]) >= 1
    assert s["checks"][0]["ok"] is True


def test_golden_checks_with_both_sides() -> None:
    s = json.loads((RUNS / "lean-new-conn" / "summary.json").read_text())
    assert all(c["ok"] is True for c in s["checks"]), s["checks"]
    assert s["tls"]["resumption_pct"] == 0.0 and s["connections"]["per_s_client"] is not None


def test_golden_derived_columns(built: tuple[str, Path]) -> None:
    _, run_dir = built
    expected = {
        "timeline": TIMELINE_COLUMNS,
        "per_second": series.PER_SECOND_COLUMNS,
        "cpu": CPU_COLUMNS,
        "ports": PORT_COLUMNS,
        "traffic": TRAFFIC_COLUMNS,
    }
    for name, columns in expected.items():
        table = pq.read_table(run_dir / "derived" / f"{name}.parquet")
        assert table.column_names == columns, name
        assert table.schema.metadata[b"lbbench.schema_version"] == str(series.DERIVED_SCHEMA_VERSION).encode()
        assert table.num_rows > 0, name


def test_golden_report_renders_self_contained(built: tuple[str, Path]) -> None:
    _, run_dir = built
    html = (run_dir / "report.html").read_text()
    drawn = [(name, title) for name, title, _fn in PLOTS if name not in OPTIONAL_PLOTS]
    for name, title in drawn:
        assert (run_dir / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert title in html
    # the golden smoke run has no faults: no failover plots, and no empty frames for them
    for name in OPTIONAL_PLOTS:
        assert not (run_dir / "plots" / f"{name}.png").exists()
    assert html.count("src='data:image/png;base64,") == len(drawn)
    # self-contained: nothing loaded from elsewhere
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    assert "<script" not in html and "<link" not in html
    assert "Bottleneck:" in html and "Cross-checks:" in html
    events = read_events(run_dir)
    for ev in events:
        assert f"<td>{ev['kind']}</td><td>{ev['name']}</td>" in html
