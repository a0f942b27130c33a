"""Integration fixtures: a real Docker engine and the lab image, or a clear skip reason.

Integration tests fail (not skip) when the engine is missing and LBBENCH_REQUIRE_DOCKER=1,
which `make test` sets, so CI cannot pass without having run them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.errors import UserError


@pytest.fixture(scope="session")
def node_image() -> str:
    from bench import engine, images

    try:
        engine.client()
    except UserError as exc:
        if os.environ.get("LBBENCH_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker engine required: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    return images.ensure_images("node").node_tag


def project_leftovers(project: str) -> tuple[list[str], list[str]]:
    """Containers and networks still carrying ``project``'s run label."""
    from bench import engine

    label = f"org.lbbench.run={project}"
    client = engine.client()
    containers = [c.name for c in client.containers.list(all=True, filters={"label": label})]
    networks = [n.name for n in client.networks.list(filters={"label": label})]
    return containers, networks


BENCH = [sys.executable, "-m", "bench.cli"]


def bench_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *args], capture_output=True, check=False, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_running(out: Path, timeout: float = 120) -> dict[str, Any]:
    """run.json of the run writing into ``out`` once its load sends (requests on disk)."""
    from bench.results.store import part_files

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_json = out / "run.json"
        if run_json.exists():
            try:
                run = json.loads(run_json.read_text())
            except json.JSONDecodeError:
                run = {}
            if run.get("status") == "running" and part_files(out, "requests"):
                return dict(run)
        time.sleep(0.1)
    pytest.fail("run never reached the load phase")


def _counted_ok(scraped: str) -> bool:
    """Whether a scrape of the metrics endpoint counts successful client requests."""
    from prometheus_client.parser import text_string_to_metric_families

    return any(s.name.endswith("_total") and s.labels.get("outcome") == "ok" and s.value > 0 for f in text_string_to_metric_families(scraped) if f.name == "lbbench_client_requests" for s in f.samples)


@dataclass
class SmokeRun:
    """One `bench run` of the smoke scenario through the CLI, and what was seen while it ran."""

    out: Path
    junit: Path
    returncode: int
    stdout: str
    stderr: str
    project: str
    down_refused: subprocess.CompletedProcess[str]  # `bench down PROJECT` during the run
    status: subprocess.CompletedProcess[str]  # `bench status` during the run
    scraped: str  # the metrics endpoint, once it counted requests


@pytest.fixture(scope="session")
def smoke_cli_run(node_image: str, tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """A 15 s smoke run by `bench run` with thresholds (one fails on purpose), --metrics-port and --junit.

    Shared by the tests that only read it (test_run's end-to-end checks, test_collectors' sample
    tables): one lab instead of one per file. Everything that must happen while it runs is done here.
    """
    tmp = tmp_path_factory.mktemp("smoke-cli")
    out = tmp / "smoke"
    scenario = tmp / "smoke-slo.yaml"
    scenario.write_text("extends: smoke\nthresholds:\n  errors.pct: '< 50'\n  latency_ms.p50: '< 0.001'\n")
    port = free_port()
    junit = tmp / "slo.xml"
    cmd = [*BENCH, "run", str(scenario), "--duration", "15s", "--out", str(out), "--metrics-port", str(port), "--junit", str(junit)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scraped = ""
    try:
        run = wait_running(out)
        project = run["lab"]["project"]
        down_refused = bench_cli("down", project)
        status = bench_cli("status")
        # until it has counted successful requests (the live view reads the flushed samples once a second,
        # so a scrape in the load's first second or two can still say 0: it once did, at 1.15 s), bounded
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _counted_ok(scraped):
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                scraped = answer.read().decode()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return SmokeRun(out, junit, proc.returncode, stdout, stderr, project, down_refused, status, scraped)
