"""bench.results: the run directory's layout and the one events reader."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from bench.results import layout
from bench.results.events import EventLog, read_events
from bench.results.layout import RunDir, find_run_dirs, is_run_dir


def test_read_events_skips_broken_lines_and_sorts(tmp_path: Path) -> None:
    lines = [
        json.dumps({"t": 5.0, "kind": "fault", "name": "crash", "id": 1}),
        "{half",
        json.dumps({"t": 1.0, "kind": "phase", "name": "warm"}),
        json.dumps({"kind": "no time"}),
        json.dumps({"t": True, "kind": "bool is not a time"}),
        json.dumps([1, 2]),
        "\x00\xff binary",
    ]
    (tmp_path / layout.EVENTS_JSONL).write_text("\n".join(lines))
    assert [e["name"] for e in read_events(tmp_path)] == ["warm", "crash"]
    # the run directory and the file itself read the same
    assert read_events(tmp_path) == read_events(tmp_path / layout.EVENTS_JSONL)
    assert read_events(tmp_path / "missing") == []


def test_event_log_lines_survive_concurrent_writers(tmp_path: Path) -> None:
    log = EventLog(RunDir(tmp_path).events)

    def write(k: int) -> None:
        for i in range(50):
            log.phase(f"w{k}-{i}", t=float(i))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = read_events(tmp_path)
    assert len(events) == 200
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_find_run_dirs(tmp_path: Path) -> None:
    for name in ("b", "a", "nested/c"):
        (tmp_path / name).mkdir(parents=True)
        RunDir(tmp_path / name).run_json.write_text("{}")
    (tmp_path / "not-a-run").mkdir()
    assert find_run_dirs(tmp_path) == [tmp_path / "a", tmp_path / "b", tmp_path / "nested" / "c"]
    assert find_run_dirs(tmp_path / "a") == [tmp_path / "a"]
    assert is_run_dir(tmp_path / "a") and not is_run_dir(tmp_path / "not-a-run")


def test_every_path_of_the_layout_is_documented() -> None:
    """Every top-level name a run directory holds is in reports/README.md's layout table."""
    readme = (Path(__file__).resolve().parents[2] / "reports" / "README.md").read_text()
    for name in (layout.RUN_JSON, layout.SUMMARY_JSON, layout.EVENTS_JSONL, layout.REPORT_HTML, layout.CONFIGS, layout.SAMPLES,
                 layout.COLLECTORS_JSON, layout.DERIVED, layout.PLOTS, layout.LOCUST, layout.LOGS, layout.MATRIX_JSON,
                 layout.LOCUST_LOG, layout.LOCUST_SETTINGS):
        assert f"`{name}" in readme or f"{name}`" in readme or f"/{name}" in readme, name
