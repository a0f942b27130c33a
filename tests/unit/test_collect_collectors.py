"""The collector loop without Docker: a lab whose processes are all missing still gives a clean run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.collect.collectors import Collectors
from bench.collect.tables import TableBuffer
from bench.results.store import read_part, read_stream, read_table
from bench.results.tables import TABLES
from bench.topology.plan import Server


class FakeLab:
    """A lab with one dummy server whose container and stats socket do not exist."""

    def __init__(self, tmp: Path):
        self.project = "lbbench-unit"
        self.plan = SimpleNamespace(
            nodes=(),
            servers=(Server("srv1", "198.18.1.21"),),
            vip="198.18.0.100",
            client_subnet="198.18.0.0/24",
            server_subnet="198.18.1.0/24",
        )
        self.run = tmp

    def containers(self) -> dict[str, Any]:
        return {}

    def socket_path(self, service: str) -> Path:
        return self.run / f"{service}.sock"


def test_failing_samplers_log_once_and_the_rest_goes_on(tmp_path: Path) -> None:
    said: list[str] = []
    run_dir = tmp_path / "run"
    with Collectors(run_dir, FakeLab(tmp_path), interval=0.05, log=said.append) as collectors:
        assert read_table(run_dir, "collector_self").shape[0] >= 1  # start() returns after the first sample
        time.sleep(0.3)
    assert collectors.ticks >= 3
    failures = [m for m in said if "failed" in m]
    # the sources that failed in one tick are one line, said once for the whole run
    assert len(failures) == 1 and "2 source(s) failed" in failures[0], said
    assert "haproxy srv1" in failures[0] and "cpu srv1" in failures[0]
    host = read_table(run_dir, "cpu")
    assert set(host["container"]) == {"host"} and (host["cpu"] >= 0).all()
    per_core = host.sort_values("t").groupby("cpu")["usage_s"]
    assert (per_core.diff().dropna() >= 0).all()  # cumulative
    me = read_table(run_dir, "collector_self")
    assert len(me) == collectors.ticks and me["usage_s"].is_monotonic_increasing
    meta = json.loads((run_dir / "samples" / "collectors.json").read_text())
    assert meta["schema_version"] == 1 and meta["ticks"] == collectors.ticks
    assert set(meta["errors"]) >= {"haproxy srv1", "cpu srv1"}
    collectors.stop()  # idempotent


def test_every_flush_is_one_complete_batch_of_the_stream(tmp_path: Path) -> None:
    buf = TableBuffer(tmp_path, "vrrp")
    assert buf.flush() is None  # nothing buffered, nothing written
    buf.add(t=1.0, node="lb-a", holds_vip=True)
    first = buf.flush()
    buf.add(t=2.0, node="lb-a", holds_vip=False)
    second = buf.flush()
    assert first is not None and first == second  # one stream per writer
    rows, batches, sealed = read_stream(first)
    assert rows.schema.equals(TABLES["vrrp"].schema) and batches == 2 and not sealed
    assert list(read_table(tmp_path, "vrrp")["holds_vip"]) == [True, False]
    buf.close()
    assert read_stream(first)[2] and read_part(first).num_rows == 2


class _EndingAccount:
    """A container's CPU account that reads twice, then its cgroup is gone (the container ended)."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> list[tuple[int, float]]:
        self.reads += 1
        if self.reads > 2:
            raise FileNotFoundError("/sys/fs/cgroup/cpuacct/docker/x/cpuacct.usage_percpu")
        return [(0, 0.1 * self.reads)]


def test_a_load_generator_worker_that_ends_is_not_a_lost_source(tmp_path: Path) -> None:
    lost: list[dict[str, str]] = []
    said: list[str] = []
    run_dir = tmp_path / "run"
    with Collectors(run_dir, FakeLab(tmp_path), interval=0.05, log=said.append) as collectors:
        collectors.watch = SimpleNamespace(sources_lost=lambda t, failed: lost.append(dict(failed)), vip_sample=lambda t, h: None)
        worker, lab_server = _EndingAccount(), _EndingAccount()
        collectors.track_container("loadgen-worker1", "loadgen", None)
        collectors.cpu_targets[-1].account = worker
        collectors.track_container("srv9", "server", None)
        collectors.cpu_targets[-1].account = lab_server
        deadline = time.monotonic() + 10
        while (worker.reads < 3 or lab_server.reads < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert worker.reads == 3, "a worker whose container ended is no longer sampled"
    assert not any("cpu loadgen-worker1" in failed for failed in lost), lost
    assert any("cpu srv9" in failed for failed in lost), "a lab container that vanishes is still a lost source"
    rows = read_table(run_dir, "cpu")
    assert set(rows.loc[rows["container"] == "loadgen-worker1", "usage_s"]) == {0.1, 0.2}
