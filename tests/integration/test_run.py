"""`bench run` end to end, as a user runs it: exit status, run directory, cleanup, Ctrl-C and SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.results.store import COMPACTED, part_files

from .conftest import BENCH, SmokeRun, bench_cli, project_leftovers, wait_running

pytestmark = pytest.mark.integration


def test_smoke_run_end_to_end(smoke_cli_run: SmokeRun) -> None:
    """One lean run covers: the run itself, thresholds (one fails on purpose: exit 99 + JUnit), the metrics
    endpoint answering during the run, the live lines in a log, and the lab recorded as a live run's.
    (The run is the session's shared smoke run, conftest.smoke_cli_run; test_collectors reads its samples.)"""
    smoke = smoke_cli_run
    out, project, stdout, stderr = smoke.out, smoke.project, smoke.stdout, smoke.stderr
    # the lab belongs to this live run: removing it by name is refused, and status says whose it is
    refused = smoke.down_refused
    assert refused.returncode == 2 and "belongs to a live run" in refused.stderr, refused.stderr
    line = next(x for x in smoke.status.stdout.splitlines() if x.startswith(project))
    assert "[live run: pid" in line, line
    scraped = smoke.scraped
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    ok = [s.value for s in families["lbbench_client_requests"].samples if s.labels.get("outcome") == "ok" and s.name.endswith("_total")]
    assert ok and ok[0] > 0, scraped[:2000]
    assert any(s.name == "lbbench_haproxy_http_requests_total" for f in families.values() for s in f.samples)
    assert smoke.returncode == 99, stderr  # latency_ms.p50 < 0.001 cannot hold
    assert "thresholds: FAIL (1 of 2 passed, 1 failed)" in stderr
    assert any(x.startswith("live [load") for x in stderr.splitlines()), stderr  # stderr is not a terminal: compact lines
    assert stdout.strip().splitlines()[-1] == str(out)
    root = ET.parse(smoke.junit).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "1"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["thresholds"]["status"] == "fail" and [r["status"] for r in summary["thresholds"]["results"]] == ["pass", "fail"]
    assert summary["schema_version"] >= 1
    assert summary["errors"]["total"] == 0
    assert summary["requests"]["per_s"] > 0
    assert summary["requests"]["total"] > 0
    assert summary["latency_ms"]["p50"] is not None and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
    assert (out / "derived" / "latency.hlog").stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "SLO thresholds" in html and "class='tiles'" in html
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed"
    for key in ("lbbench", "git_sha", "locust", "haproxy", "keepalived", "image"):
        assert key in run["versions"], key
    assert run["versions"]["haproxy"].startswith("HAProxy version")
    assert run["scenario"]["name"] == "smoke" and run["topology"]["name"] == "split"
    configs = out / "configs"
    assert (configs / "compose.yaml").exists() and (configs / "lb-a" / "frontend.cfg").exists()
    assert (configs / "tls" / "ca.pem").exists() and (configs / "tls" / "server.crt").exists()
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".pem", ".crt", ".cfg", ".conf", ".yaml", ".json", ".log", ".csv"):
            assert b"PRIVATE KEY" not in path.read_bytes(), f"private key leaked into {path}"
    assert (out / "locust" / "locust_stats.csv").exists()
    assert any((out / "logs").glob("lb-a-frontend.log"))
    assert project_leftovers(run["lab"]["project"]) == ([], [])


def _warm_children(pid: int) -> list[int]:
    """The Locust processes `bench run` ``pid`` started ahead (bench/load/warm.py)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"bench.load.warm" in cmdline:
            found.append(int(proc.name))
    return found


def test_ctrl_c_while_the_lab_starts_leaves_nothing(node_image: str, tmp_path: Path) -> None:
    # Locust is started ahead, as bench run's first step: an interrupted start ends it too,
    # and the lab's containers.
    out = tmp_path / "early"
    env = {**os.environ, "LBBENCH_WARM_LOCUST": "1"}  # the default (bench/run.py WARM_LOCUST), whatever the environment says
    proc = subprocess.Popen([*BENCH, "run", "smoke", "--duration", "30s", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        project = warm = None
        while not (project and warm) and time.monotonic() < deadline and proc.poll() is None:
            warm = warm or _warm_children(proc.pid)
            with contextlib.suppress(OSError, json.JSONDecodeError):
                project = json.loads((out / "run.json").read_text()).get("lab", {}).get("project")
            time.sleep(0.05)
        assert project and warm, "bench run never reached its lab's start with a Locust started ahead"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    for pid in warm:
        assert not Path(f"/proc/{pid}").exists(), f"Locust {pid} outlived its run"
    assert project_leftovers(project) == ([], [])


def test_ctrl_c_tears_down_and_keeps_data(node_image: str, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([*BENCH, "run", "smoke", "--duration", "120s", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = wait_running(out)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stdout.strip().splitlines()[-1] == str(out)
    final = json.loads((out / "run.json").read_text())
    assert final["status"] == "interrupted"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["total"] > 0
    assert project_leftovers(run["lab"]["project"]) == ([], [])


def test_sigkill_keeps_samples_and_report_rebuilds(node_image: str, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen([*BENCH, "run", "smoke", "--duration", "120s", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    project = None
    try:
        run = wait_running(out)
        project = run["lab"]["project"]
        time.sleep(1)  # a second more of samples in every stream (requests are already on disk)
        proc.kill()
        proc.wait(timeout=30)
        # bench is gone: nothing stops its Locust or lab but us.
        os.killpg(run["load_pid"], signal.SIGKILL)
        rebuilt = bench_cli("report", str(out))
        assert rebuilt.returncode == 0, rebuilt.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["requests"]["total"] > 0
        assert summary["run"]["status"] == "running"  # what run.json said when the process died
        # the killed run's streams were compacted by `bench report`: one file per table, no stream left
        assert (out / "samples" / "requests" / COMPACTED).exists()
        assert not part_files(out, "requests") and not part_files(out, "cpu")
    finally:
        if proc.poll() is None:
            proc.kill()
        if project:
            down = bench_cli("down", project)
            assert down.returncode == 0, down.stderr
    assert project_leftovers(project) == ([], [])
