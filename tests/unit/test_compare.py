"""bench compare: recorded run directories -> exact tables (golden), wording, grouping, missing figures.

The golden runs under tests/golden/compare/runs/ are real, trimmed runs (see
tests/golden/compare/make_golden.py). Refresh the expected tables after a
deliberate change with ``pytest tests/unit/test_compare.py --update-golden``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from bench import compare as cmp
from bench.cli import main
from bench.errors import UserError

from ..conftest import GOLDEN

FOLDER = GOLDEN / "compare"
EXPECTED = FOLDER / "expected"

CASES = {
    # three groups of 3 repeats: two of the same scenario (A/A) and a slowed one
    "repeats": ["runs/base", "runs/base2", "runs/delay"],
    # one run each: no verdict (run-to-run noise unknown)
    "single": ["runs/base/smoke-base-1", "runs/delay/smoke-delay-1", "runs/monolith"],
}


@pytest.fixture
def in_golden(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the golden folder so that run paths in the output are short and stable."""
    monkeypatch.chdir(FOLDER)
    return FOLDER


def check_golden(name: str, text: str, update: bool) -> None:
    path = EXPECTED / name
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run pytest with --update-golden"
    assert text == path.read_text(), f"output differs from golden {path} (rerun with --update-golden after a deliberate change)"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_compare_matches_golden(case: str, fmt: str, in_golden: Path, tmp_path: Path, update_golden: bool) -> None:
    out = tmp_path / f"{case}.{fmt}"
    cmp.compare(CASES[case], fmt=fmt, output=str(out), plots=False)
    check_golden(f"{case}.{'md' if fmt == 'markdown' else 'json'}", out.read_text(), update_golden)


def test_repeats_are_grouped_and_ab_is_within_noise(in_golden: Path) -> None:
    doc = cmp.compare_groups(cmp.load_groups(CASES["repeats"]))
    assert [g["label"] for g in doc["groups"]] == ["smoke @runs/base", "smoke @runs/base2", "smoke-delay"]
    assert [len(g["runs"]) for g in doc["groups"]] == [3, 3, 3]
    aa = {r["metric"]: r for r in doc["comparisons"][0]["rows"]}
    assert aa["requests.per_s"]["test"] == "welch t 3v3 runs"
    assert all(r["significance"] != "significant" for r in aa.values())
    lo, hi = aa["requests.per_s"]["ci95"]
    assert lo < aa["requests.per_s"]["ratio"] < hi


def test_single_runs_are_never_significant(in_golden: Path) -> None:
    """3060 vs 1569 req/s from one run each: the runs differ, but whether the configurations do is unknown."""
    doc = cmp.compare_groups(cmp.load_groups(CASES["single"]))
    delay = {r["metric"]: r for r in doc["comparisons"][0]["rows"]}
    rps = delay["requests.per_s"]
    assert rps["significance"] == "noise unknown" and rps["test"] == "one run per side: run-to-run noise unknown"
    assert rps["worse"] is True and rps["phrase"].endswith("x slower") and rps["ci95"] is None
    assert delay["tls.handshakes_per_s"]["significance"] == "too few data"
    assert doc["groups"][2]["key"] == "smoke/monolith"
    assert any("noise unknown: one run per side" in n for n in doc["notes"])


def test_html_is_self_contained_with_plots(in_golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.html"
    cmp.compare(CASES["single"], output=str(out))
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "smoke-delay vs smoke" in page and "run-to-run noise unknown" in page


def test_markdown_file_gets_png_plots(in_golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.md"
    cmp.compare(CASES["single"][:2], output=str(out))
    assert (tmp_path / "compare-requests.png").read_bytes().startswith(b"\x89PNG")
    assert "![request rate per second](compare-requests.png)" in out.read_text()


def test_terminal_table(in_golden: Path) -> None:
    from rich.console import Console

    buf = io.StringIO()
    cmp.compare(CASES["single"][:2], console=Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert "smoke-delay vs smoke" in text and "x slower" in text and "noise unknown" in text


def test_cli_compare_json(in_golden: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.json"
    assert main(["compare", *CASES["repeats"][:2], "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 2 and len(doc["comparisons"]) == 1


# --------------------------------------------------------------------------- wording and figures


@pytest.mark.parametrize(
    ("metric", "ratio", "expected"),
    [
        ("requests.per_s", 0.8, "1.25x slower"),
        ("requests.per_s", 1.1, "1.10x faster"),
        ("latency_ms.p99", 1.23, "1.23x slower"),
        ("latency_ms.p99", 0.5, "2.00x faster"),
        ("errors.total", 2.0, "2.00x worse"),
        ("cpu.lb_ms_per_request", 0.9, "1.11x better"),
        ("cost.lb_us_per_request", 1.05, "1.05x worse"),
        ("errors.total", float("inf"), "worse (from 0)"),
        ("requests.per_s", 0.0, "slower (to 0)"),
        ("requests.per_s", 1.001, "same"),
        ("something.odd", 1.5, "1.50x higher"),
        ("requests.per_s", None, "n/a"),
    ],
)
def test_phrase_is_direction_aware(metric: str, ratio: float | None, expected: str) -> None:
    assert cmp.phrase(ratio, cmp.figure_for(metric)) == expected


def test_derived_figures() -> None:
    summary = {
        "requests": {"per_s": 1000.0},
        "cpu": {
            "by_container": {
                "lb-a-frontend": {"role": "frontend", "total_mean_pct": 30.0},
                "lb-a-backend1": {"role": "backend", "mean_pct": [5.0, 5.0]},
                "loadgen": {"role": "loadgen", "total_mean_pct": 90.0},
            }
        },
        "failover": {"events": [{"gap_s": 3.0}, {"gap_s": 2.0}, {"gap_s": 4.0}]},
    }
    # 0.4 cores of HAProxy for 1000 req/s = 0.4 ms of CPU per request; the load generator does not count
    assert cmp.lookup(summary, "cpu.lb_ms_per_request") == pytest.approx(0.4)
    assert cmp.lookup(summary, "cost.lb_us_per_request") == pytest.approx(400.0)  # runs older than the cost section
    assert cmp.lookup({"cost": {"lb_us_per_request": 380.0}}, "cpu.lb_ms_per_request") == pytest.approx(0.38)
    assert cmp.lookup({"cost": {"lb_us_per_request": None}, **summary}, "cost.lb_us_per_request") is None
    assert cmp.lookup(summary, "failover.gap_s.median") == pytest.approx(3.0)
    assert cmp.lookup({"failover": {"gap_s": {"p95": 3.3}}}, "failover.gap_s.p95") == 3.3
    assert cmp.lookup({}, "cpu.lb_ms_per_request") is cmp.MISSING
    assert cmp.number(cmp.lookup({"a": {"b": None}}, "a.b")) is None


def write_run(path: Path, summary: dict, scenario: str = "synthetic", variant: str | None = None, overrides: dict | None = None) -> Path:
    path.mkdir(parents=True)
    run = {"schema_version": 1, "id": path.name, "status": "completed", "scenario": {"name": scenario, "topology": "split"}, "variant": variant, "overrides": overrides or {}}
    (path / "run.json").write_text(json.dumps(run))
    (path / "summary.json").write_text(json.dumps({"schema_version": 1, **summary}))
    return path


def test_missing_figures_are_na_never_an_error(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"requests": {"per_s": 100.0}})
    b = write_run(tmp_path / "b", {"requests": {"per_s": 90.0}, "latency_ms": {"p99": None}, "connections": {}})
    doc = cmp.compare([str(a), str(b)], fmt="json", output=str(tmp_path / "c.json"))
    rows = {r["metric"]: r for r in doc["comparisons"][0]["rows"]}
    assert rows["requests.per_s"]["phrase"] == "1.11x slower"
    assert rows["requests.per_s"]["significance"] == "noise unknown"
    for key in ("latency_ms.p99", "connections.per_s", "failover.gap_s.p95"):
        assert rows[key]["baseline"] is None and rows[key]["phrase"] == "n/a"
    _header, cells = cmp.table_rows(doc, doc["comparisons"][0])
    assert cells[4][1:4] == ["n/a", "n/a", "n/a"]


def test_a_run_whose_lab_changed_is_left_out(tmp_path: Path) -> None:
    """A run with integrity.ok false (its lab changed under it) is listed but its figures are not compared."""
    write_run(tmp_path / "a" / "r1", {"requests": {"per_s": 100.0}})
    write_run(tmp_path / "a" / "r2", {"requests": {"per_s": 102.0}})
    write_run(tmp_path / "b" / "r1", {"requests": {"per_s": 90.0}}, variant="v")
    write_run(tmp_path / "b" / "r2", {"requests": {"per_s": 10.0}, "integrity": {"ok": False, "headline": "lb-a-frontend died at +3.0 s"}}, variant="v")
    doc = cmp.compare([str(tmp_path / "a"), str(tmp_path / "b")], fmt="json", output=str(tmp_path / "c.json"))
    rows = {r["metric"]: r for r in doc["comparisons"][0]["rows"]}
    assert rows["requests.per_s"]["candidate"] == 90.0
    assert any("is not comparable: its lab changed during the run (lb-a-frontend died at +3.0 s)" in n for n in doc["notes"])


def test_group_key_shows_extra_overrides() -> None:
    run = {"scenario": {"name": "smoke", "topology": "split"}, "variant": "monolith", "overrides": {"lb": {"layout": "monolith", "frontend": {"nbthread": 2}}}}
    assert cmp.group_key(run) == "smoke/monolith lb.frontend.nbthread=2"
    assert cmp.group_key({"scenario": {"name": "smoke"}, "variant": None, "overrides": {"servers": {"count": 1}}}) == "smoke servers.count=1"


def test_parent_folder_groups_by_key(tmp_path: Path) -> None:
    write_run(tmp_path / "m" / "r1", {"requests": {"per_s": 1.0}}, variant=None)
    write_run(tmp_path / "m" / "r2", {"requests": {"per_s": 1.0}}, variant="x")
    write_run(tmp_path / "m" / "r3", {"requests": {"per_s": 1.0}}, variant=None)
    groups = cmp.load_groups([str(tmp_path / "m")])
    assert [(g.key, len(g.runs)) for g in groups] == [("synthetic", 2), ("synthetic/x", 1)]


def test_repeats_group_whatever_the_order_or_glob(tmp_path: Path) -> None:
    """main/ and pr/ hold 2 repeats each of one config: any way of naming them gives the same two groups."""
    for side in ("main", "pr"):
        for i in (1, 2):
            write_run(tmp_path / side / f"run-{i}", {"requests": {"per_s": 100.0 + i}})
    m1, m2, p1, p2 = (str(tmp_path / s / f"run-{i}") for s in ("main", "pr") for i in (1, 2))
    expect = [(str(tmp_path / "main"), 2), (str(tmp_path / "pr"), 2)]
    for args in ([str(tmp_path / "main"), str(tmp_path / "pr")], [m1, m2, p1, p2], [m2, p1, m1, p2], [m1, str(tmp_path / "main"), p2, p1]):
        groups = cmp.load_groups(args)
        assert [(g.source, len(g.runs)) for g in groups] == expect, args
        assert [g.label for g in groups] == [f"synthetic @{tmp_path / 'main'}", f"synthetic @{tmp_path / 'pr'}"]
    # the pr runs first: pr is the baseline
    assert cmp.load_groups([p2, m1, p1, m2])[0].source == str(tmp_path / "pr")


def test_two_runs_of_one_config_side_by_side_stay_two_groups(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"requests": {"per_s": 100.0}})
    b = write_run(tmp_path / "b", {"requests": {"per_s": 90.0}})
    assert [len(g.runs) for g in cmp.load_groups([str(a), str(b)])] == [1, 1]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["/nonexistent/run"], "no such run directory or folder"),
        (["EMPTY"], "no run directory below it"),
        (["ONE"], "only one group to compare"),
        ([], "no runs to compare"),
        (["ONE", "--rate", "100"], "--rate applies to --run only"),
        (["--run", "smoke"], "uses the closed keep-alive model; a duet needs a fixed offered load"),
        (["--run", "open", "ONE"], "use either --run SCENARIO or run directories"),
    ],
)
def test_bad_inputs_are_one_line(args: list[str], expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    one = write_run(tmp_path / "one", {"requests": {"per_s": 1.0}})
    args = [{"EMPTY": str(tmp_path / "empty"), "ONE": str(one)}.get(a, a) for a in args]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench: error: ") and expect in err[0]


def test_newer_summary_schema_is_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"requests": {"per_s": 1.0}})
    b = write_run(tmp_path / "b", {"requests": {"per_s": 1.0}})
    (b / "summary.json").write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(UserError, match="schema_version 999 is newer than this lbbench understands"):
        cmp.compare([str(a), str(b)])
