"""A real smoke run records every sample table the analysis needs (bench/collect/)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.collect import netns
from bench.results.store import read_table
from bench.results.tables import TABLES

from .conftest import SmokeRun

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke_run(smoke_cli_run: SmokeRun) -> Path:
    """The session's shared smoke run (`bench run`, 15 s; test_run checks the rest of it)."""
    said = smoke_cli_run.stderr.splitlines()
    failures = [m for m in said if m.startswith("collectors:")]
    assert not failures, failures
    return smoke_cli_run.out


def table(run_dir: Path, name: str) -> pd.DataFrame:
    df = read_table(run_dir, name)
    assert tuple(df.columns) == TABLES[name].names, name
    assert not df.empty, f"{name} is empty"
    return df


def test_cpu_per_core_for_every_container_host_and_loadgen(smoke_run: Path) -> None:
    run = json.loads((smoke_run / "run.json").read_text())
    meta = json.loads((smoke_run / "samples" / "collectors.json").read_text())
    assert meta["errors"] == {}
    cpu = table(smoke_run, "cpu")
    per_core = meta["cgroup_version"] == 1  # cgroup v2 has a total only (cpu -1)
    for service in run["lab"]["services"]:
        rows = cpu[cpu["container"] == service]
        assert not rows.empty, service
        assert ((rows["cpu"] >= 0) if per_core else (rows["cpu"] == -1)).all(), service
    roles = cpu.groupby("container")["role"].first()
    assert roles["lb-a-frontend"] == "frontend" and roles["lb-a-backend1"] == "backend"
    assert roles["lb-a"] == "node" and roles["lb-a-keepalived"] == "keepalived" and roles["srv1"] == "server"
    host = cpu[cpu["container"] == "host"]
    assert sorted(host["cpu"].unique()) == list(range(host["cpu"].nunique()))
    loadgen = cpu[cpu["container"] == "loadgen"]
    assert not loadgen.empty and (loadgen["role"] == "loadgen").all()
    # cumulative: Locust did work, and its cgroup is gone after the run
    used = loadgen.groupby("cpu")["usage_s"].agg(lambda s: s.iloc[-1] - s.iloc[0]).sum()
    assert used > 0
    assert meta["loadgen_cgroup"] and not Path(meta["loadgen_cgroup"]).exists()
    frontend = cpu[cpu["container"] == "lb-a-frontend"].groupby("cpu")["usage_s"]
    assert (frontend.agg(lambda s: s.iloc[-1] - s.iloc[0]) >= 0).all()
    assert frontend.agg(lambda s: s.iloc[-1] - s.iloc[0]).sum() > 0


def test_haproxy_counters_from_every_process(smoke_run: Path) -> None:
    run = json.loads((smoke_run / "run.json").read_text())
    haproxy_services = [s for s in run["lab"]["services"] if s not in ("lb-a", "lb-b") and not s.endswith("-keepalived")]
    info = table(smoke_run, "haproxy_info")
    assert set(info["service"]) == set(haproxy_services)
    assert set(info["kind"]) == {"frontend", "backend", "server"}
    cum = info[info["metric"] == "CumReq"].sort_values("t")
    for service in haproxy_services:
        series = cum[cum["service"] == service]["value"]
        assert series.is_monotonic_increasing, service
    for service in ["lb-a-frontend", "lb-a-backend1", "lb-a-backend2", "srv1", "srv2", "srv3"]:
        series = cum[cum["service"] == service]["value"]
        assert series.iloc[-1] > series.iloc[0], f"{service} served no request"
    for metric in ("ConnRate", "SessRate", "SslRate", "SslFrontendKeyRate", "CurrConns", "CurrSslConns", "Idle_pct"):
        assert metric in set(info["metric"]), metric
    stat = table(smoke_run, "haproxy_stat")
    fe = stat[(stat["service"] == "lb-a-frontend") & (stat["pxname"] == "clients") & (stat["svname"] == "FRONTEND")]
    assert not fe.empty and fe["req_tot"].iloc[-1] > 0 and (fe["type"] == 0).all()
    servers = stat[(stat["service"] == "lb-a-backend1") & (stat["type"] == 2)]
    assert set(servers["svname"]) == {"srv1", "srv2", "srv3"}


def test_sockets_and_port_range_per_node(smoke_run: Path) -> None:
    run = json.loads((smoke_run / "run.json").read_text())
    vip = run["lab"]["vip"]
    sockets = table(smoke_run, "sockets")
    assert set(sockets["node"]) == {"lb-a", "lb-b"}
    assert "LISTEN" not in set(sockets["state"])
    client = sockets[(sockets["node"] == "lb-a") & (sockets["state"] == "ESTABLISHED") & (sockets["src"] == vip)]
    assert not client.empty, sockets.groupby(["node", "state", "direction", "src", "lport"])["count"].max()
    assert set(client["lport"]) <= {443, 80} and (client["direction"] == "in").all() and (client["dport"] == 0).all()
    peak = client.groupby("t")["count"].sum().max()
    assert peak >= run["scenario"]["load"]["users"] // 2, f"only {peak} client connections at most"
    fe_be = sockets[(sockets["node"] == "lb-a") & (sockets["direction"] == "out") & sockets["dst"].str.startswith("127.")]
    assert not fe_be.empty and (fe_be["lport"] == 0).all() and (fe_be["dport"] > 0).all()
    server_net = ipaddress.ip_network(run["lab"]["server_subnet"])
    in_server_net = sockets["dst"].map(lambda a: bool(a) and ipaddress.ip_address(a) in server_net)
    be_srv = sockets[(sockets["node"] == "lb-a") & (sockets["direction"] == "out") & in_server_net]
    if be_srv.empty:
        # With http-server-close each server connection lives about a millisecond and
        # HAProxy closes it without TIME_WAIT, so a 1 Hz sample may never catch one;
        # then the servers' own counters must show they were used.
        stat = table(smoke_run, "haproxy_stat")
        served = stat[(stat["kind"] == "server") & (stat["svname"] == "FRONTEND")].groupby("service")["stot"].max()
        assert (served > 0).all(), sockets[sockets["node"] == "lb-a"].groupby(["state", "direction", "dst", "dport"])["count"].max()
    else:
        assert (be_srv["dport"] == 8080).all()
    ranges = table(smoke_run, "port_range")
    assert set(ranges["node"]) == {"lb-a", "lb-b"}
    assert ((ranges["low"] > 1023) & (ranges["high"] >= ranges["low"])).all()
    if netns.TCP_CHILD_EHASH_ENTRIES.exists():  # Linux >= 6.1: each namespace's TCP hash table is known
        assert ranges["tcp_hash"].notna().all() and (ranges["tcp_hash"] != 0).all(), ranges
        own = bool((ranges["tcp_hash"] > 0).all())
        collectors = json.loads((smoke_run / "summary.json").read_text())["collectors"]
        assert collectors["socket_table"] == ("own" if own else "shared")
        assert collectors["socket_table_buckets"] == int(ranges["tcp_hash"].abs().min())


def test_netdev_has_client_and_server_networks(smoke_run: Path) -> None:
    netdev = table(smoke_run, "netdev")
    for node in ("lb-a", "lb-b"):
        assert {"client", "server", "lo"} <= set(netdev[netdev["node"] == node]["network"]), node
    client = netdev[(netdev["node"] == "lb-a") & (netdev["network"] == "client")].sort_values("t")
    assert client["tx_bytes"].iloc[-1] > client["tx_bytes"].iloc[0]  # responses went out to the clients


def test_vrrp_owner_samples_and_events(smoke_run: Path) -> None:
    vrrp = table(smoke_run, "vrrp")
    assert vrrp[vrrp["node"] == "lb-a"]["holds_vip"].all()
    assert not vrrp[vrrp["node"] == "lb-b"]["holds_vip"].any()
    events = table(smoke_run, "vrrp_events").sort_values("t")
    # lb-a ends the election as MASTER (lb-b may hold the VIP for a moment while the lab starts)
    assert events[events["node"] == "lb-a"]["state"].iloc[-1] == "MASTER"
    assert set(events["instance"]) == {"lbbench"}


def test_collector_self_and_samples_span_the_load(smoke_run: Path) -> None:
    run = json.loads((smoke_run / "run.json").read_text())
    me = table(smoke_run, "collector_self")
    assert me["usage_s"].is_monotonic_increasing and me["usage_s"].iloc[-1] > 0
    # idle baseline before the load, final state after it
    assert me["t"].min() < run["load_window"]["start"] and me["t"].max() > run["load_window"]["end"]
