"""`bench run` end to end, as a user runs it: exit status, run directory, cleanup, Ctrl-C and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.results.store import COMPACTED, chunk_files

from .conftest import project_leftovers

pytestmark = pytest.mark.integration

BENCH = [sys.executable, "-m", "bench.cli"]


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=timeout)


def test_smoke_run_end_to_end(node_image: str, tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    proc = _bench("run", "smoke", "--duration", "10s", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] >= 1
    assert summary["errors"]["total"] == 0
    assert summary["requests"]["per_s"] > 0
    assert summary["requests"]["total"] > 0
    assert summary["latency_ms"]["p50"] is not None and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
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


def _wait_running(out: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_json = out / "run.json"
        if run_json.exists():
            try:
                run = json.loads(run_json.read_text())
            except json.JSONDecodeError:
                run = {}
            if run.get("status") == "running" and chunk_files(out, "requests"):
                return run
        time.sleep(0.5)
    pytest.fail("run never reached the load phase")


def test_ctrl_c_tears_down_and_keeps_data(node_image: str, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([*BENCH, "run", "smoke", "--duration", "120s", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = _wait_running(out)
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
        run = _wait_running(out)
        project = run["lab"]["project"]
        time.sleep(3)
        proc.kill()
        proc.wait(timeout=30)
        # bench is gone: nothing stops its Locust or lab but us.
        os.killpg(run["load_pid"], signal.SIGKILL)
        rebuilt = _bench("report", str(out))
        assert rebuilt.returncode == 0, rebuilt.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["requests"]["total"] > 0
        assert summary["run"]["status"] == "running"  # what run.json said when the process died
        # the killed run's chunks were compacted by `bench report`: one file per table, no chunk left
        assert (out / "samples" / "requests" / COMPACTED).exists()
        assert not chunk_files(out, "requests") and not chunk_files(out, "cpu")
    finally:
        if proc.poll() is None:
            proc.kill()
        if project:
            down = _bench("down", project)
            assert down.returncode == 0, down.stderr
    assert project_leftovers(project) == ([], [])
