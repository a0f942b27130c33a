"""Analysis functions on small hand-written DataFrames (no run directory, no docker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis import bottleneck, checks, common, cpu, haproxy, ports, requests, traffic, vrrp
from bench.results.events import read_events
from bench.results.histogram import Histogram, buckets_of
from bench.results.store import as_read, empty_frame

T0 = 1_700_000_000.0


def reqs(rows: list[tuple]) -> pd.DataFrame:
    """Requests table from (t_offset, latency_ms, error[, status[, conn_new]]) tuples."""
    out = []
    for r in rows:
        t, lat, err = r[:3]
        status = r[3] if len(r) > 3 else (200 if err == "" else 0)
        conn_new = r[4] if len(r) > 4 else None
        out.append({"t": T0 + t, "latency_ms": lat, "bytes": 100, "status": status, "error": err, "name": "GET /", "worker": "w:1", "conn_new": conn_new})
    return as_read("requests", pd.DataFrame(out, columns=["t", "latency_ms", "bytes", "status", "error", "name", "worker", "conn_new"]))


def hist_of(req: pd.DataFrame) -> pd.DataFrame:
    ok = req[req["error"] == ""]
    d = pd.DataFrame({"t": np.floor(ok["t"]).astype("int64"), "worker": ok["worker"], "bucket": buckets_of(ok["latency_ms"].to_numpy()).astype("int32")})
    return d.groupby(["t", "worker", "bucket"]).size().rename("count").reset_index()


# ------------------------------------------------------------------ common


def test_counter_rates_per_group_and_drops_resets() -> None:
    df = pd.DataFrame({"k": ["a", "a", "a", "b", "b"], "t": [0.0, 1.0, 2.0, 0.0, 2.0], "v": [0.0, 2.0, 1.0, 10.0, 14.0]})
    r = common.counter_rates(df, ["k"], "v")
    assert list(r.columns) == ["k", "t", "rate"]
    # stamped at the middle of each interval
    assert r.to_dict("records") == [{"k": "a", "t": 0.5, "rate": 2.0}, {"k": "b", "t": 1.0, "rate": 2.0}]


def test_sum_across_holds_a_missed_second() -> None:
    df = pd.DataFrame({"s": ["a", "a", "a", "b", "b"], "t": [0.1, 1.1, 2.1, 0.2, 2.2], "v": [1.0, 1.0, 1.0, 5.0, 7.0]})
    s = common.sum_across(df, ["s"], "v")
    assert s.to_dict() == {0.0: 6.0, 1.0: 6.0, 2.0: 8.0}


def test_sum_across_is_the_per_second_pivot() -> None:
    """The numpy sum_across against its definition in pandas: last value per group and second, ffill, sum."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"k": rng.choice(["a", "b", "c"], 3000), "t": np.sort(rng.uniform(0, 500, 3000)), "v": rng.random(3000)})
    df.loc[rng.random(3000) < 0.5, "v"] = np.nan
    for limit in (1, 2):
        d = df.assign(t=np.floor(df["t"]))
        ps = d.groupby(["k", "t"])["v"].agg("last").reset_index()
        wide = ps.pivot_table(index="t", columns="k", values="v", aggfunc="last")
        wide = wide.reindex(np.arange(wide.index.min(), wide.index.max() + 1.0)).ffill(limit=limit)
        expected = wide.sum(axis=1, min_count=1)
        got = common.sum_across(df, ["k"], "v", fill_limit=limit)
        assert np.array_equal(got.index.to_numpy(), expected.index.to_numpy())
        assert np.allclose(got.to_numpy(), expected.to_numpy(), equal_nan=True, rtol=0, atol=1e-12)


def test_group_codes_are_groupby_ngroup() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": pd.Categorical(rng.choice(["x", "y", "z", None], 1000), categories=["z", "x", "y", "w"]), "b": rng.choice(["p", "q"], 1000)})
    for frame in (df, df.assign(b=df["b"].astype("category"))):
        expected = frame.groupby(["a", "b"], sort=True, dropna=False, observed=True).ngroup().to_numpy()
        assert np.array_equal(common.group_codes(frame, ["a", "b"]), expected)


def test_steady_window_drops_ramp_and_tail() -> None:
    run = {"load_window": {"start": 100.0, "end": 120.0}, "scenario": {"ramp_up": 2.0}}
    assert common.steady_window(run, empty_frame("requests")) == (102.0, 119.0)
    short = {"load_window": {"start": 100.0, "end": 102.5}, "scenario": {"ramp_up": 2.0}}
    assert common.steady_window(short, empty_frame("requests")) == (100.0, 102.5)


def test_events_frame_has_its_columns_even_without_events(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(json.dumps({"t": 5.0, "kind": "fault", "name": "crash", "id": 1}) + "\n")
    assert common.events_frame(read_events(tmp_path)).to_dict("records") == [{"t": 5.0, "kind": "fault", "name": "crash"}]
    assert list(common.events_frame(read_events(tmp_path / "none")).columns) == ["t", "kind", "name"]


def test_num_is_json_safe() -> None:
    assert common.num(float("nan")) is None
    assert common.num(None) is None
    assert common.num(1.23456, 2) == 1.23


# ------------------------------------------------------------------ requests


def test_request_and_error_summary() -> None:
    req = reqs([(0.5, 1.0, ""), (1.5, 2.0, ""), (2.5, 3.0, "timeout"), (3.5, 4.0, ""), (9.0, 5.0, "refused")])
    w = (T0 + 1.0, T0 + 4.0)
    assert requests.request_summary(req, w) == {"total": 5, "ok": 3, "steady": 3, "per_s": 0.7}
    e = requests.error_summary(req, w)
    assert e == {"total": 2, "by_kind": {"refused": 1, "timeout": 1}, "steady": 1, "per_s": 0.333, "pct": 40.0}


def test_latency_prefers_histograms_and_falls_back_to_requests() -> None:
    req = reqs([(1.0 + i / 100, float(i + 1), "") for i in range(100)])
    w = (T0, T0 + 5.0)
    from_req = requests.latency_summary(req, empty_frame("latency_hist"), w)
    assert from_req["source"] == "requests" and from_req["p50"] == pytest.approx(50.5)
    from_hist = requests.latency_summary(req, hist_of(req), w)
    assert from_hist["source"] == "latency_hist"
    for key in ("p50", "p90", "p99", "p999"):
        assert from_hist[key] == pytest.approx(from_req[key], rel=0.02)
    assert from_hist["max"] == 100.0 and from_hist["mean"] == 50.5
    empty = requests.latency_summary(req.iloc[0:0], empty_frame("latency_hist"), w)
    assert empty["p50"] is None and empty["source"] is None


def test_merged_histogram_keeps_whole_seconds_only() -> None:
    hist = pd.DataFrame({"t": [10, 10, 11, 12], "worker": ["a", "b", "a", "a"], "bucket": [5, 5, 6, 7], "count": [1, 2, 3, 4]})
    h = requests.merged_histogram(hist, (10.0, 12.0))
    assert dict(h.counts) == {5: 3, 6: 3}
    assert isinstance(h, Histogram)


def test_client_connections_null_when_unknown() -> None:
    assert requests.client_connections(reqs([(1.0, 1.0, "")]), (T0, T0 + 2))["per_s"] is None
    req = reqs([(0.5, 1.0, "", 200, True), (1.0, 1.0, "", 200, False), (1.5, 1.0, "", 200, True)])
    assert requests.client_connections(req, (T0 + 0.75, T0 + 2.75)) == {"total": 2, "steady": 1, "per_s": 0.5}


def test_timeline_bins_and_gaps() -> None:
    req = reqs([(0.01, 1.0, ""), (0.05, 3.0, ""), (0.12, 2.0, "reset"), (0.35, 4.0, "")])
    tl = requests.timeline(req)
    assert list(tl.columns) == requests.TIMELINE_COLUMNS
    assert tl["requests"].tolist() == [2, 1, 0, 1]
    assert tl["errors"].tolist() == [0, 1, 0, 0]
    assert tl["max_ms"].iloc[0] == 3.0 and np.isnan(tl["p50_ms"].iloc[1])
    assert tl["t"].iloc[1] == pytest.approx(T0 + 0.1)
    assert list(requests.timeline(req.iloc[0:0]).columns) == requests.TIMELINE_COLUMNS


def test_group_quantiles_are_pandas_quantiles_exactly() -> None:
    rng = np.random.default_rng(3)
    g = rng.integers(0, 500, 20_000)
    v = np.round(rng.lognormal(2, 1, g.size), 3)  # exact ties
    v[::97] = -v[::97]
    v[::89] *= 1 + 1e-12  # equal as float32, not as float64
    order = requests.sort_by_group_and_value(g, v)
    assert np.array_equal(v[order], v[np.lexsort((v, g))]) and np.array_equal(g[order], np.sort(g))
    groups, q, top = requests.group_quantiles(g, v, [0.5, 0.9, 0.99])
    expected = pd.DataFrame({"g": g, "v": v}).groupby("g")["v"].quantile([0.5, 0.9, 0.99]).unstack()
    assert np.array_equal(groups, expected.index.to_numpy()) and np.array_equal(q, expected.to_numpy())
    assert np.array_equal(top, pd.Series(v).groupby(g).max().to_numpy())


def test_per_second_requests() -> None:
    req = reqs([(0.2, 1.0, ""), (0.4, 2.0, "timeout"), (2.5, 3.0, "")])
    ps = requests.per_second_requests(req, hist_of(req))
    assert ps["t"].tolist() == [T0, T0 + 1, T0 + 2]
    assert ps["requests"].tolist() == [2, 0, 1]
    assert ps["errors"].tolist() == [1, 0, 0]
    assert ps["p50_ms"].iloc[0] == pytest.approx(1.0, rel=0.01) and np.isnan(ps["p50_ms"].iloc[1])
    assert ps["conn_new"].isna().all()


# ------------------------------------------------------------------ haproxy


def info_rows(rows: list[tuple]) -> pd.DataFrame:
    """haproxy_info from (t_offset, service, kind, metric, value)."""
    return as_read("haproxy_info", pd.DataFrame([{"t": T0 + t, "node": s.split("-")[0] + "-" + s.split("-")[1], "service": s, "kind": k, "metric": m, "value": float(v)} for t, s, k, m, v in rows]))


def stat_rows(rows: list[dict]) -> pd.DataFrame:
    base = {"node": "lb-a", "status": "OPEN", "svname": "FRONTEND", "scur": 0.0, "conn_tot": np.nan, "req_tot": np.nan, "req_rate": np.nan, "conn_rate": np.nan, "qcur": 0.0}
    return as_read("haproxy_stat", pd.DataFrame([{**base, **r, "t": T0 + r["t"]} for r in rows]))


def split_stat() -> pd.DataFrame:
    rows = []
    for t in range(5):
        rows += [
            {"t": t, "service": "lb-a-frontend", "kind": "frontend", "pxname": "clients", "type": 0, "scur": 20 + t, "conn_tot": 100.0 + 10 * t, "req_tot": 1000.0 + 500 * t},
            {"t": t, "service": "lb-a-frontend", "kind": "frontend", "pxname": "monitor", "type": 0, "scur": 1, "conn_tot": 50.0 + t, "req_tot": 50.0 + t},
            {"t": t, "service": "lb-a-backend1", "kind": "backend", "pxname": "from_frontend", "type": 0, "scur": 3},
            {"t": t, "service": "lb-a-backend2", "kind": "backend", "pxname": "from_frontend", "type": 0, "scur": 4},
            {"t": t, "service": "lb-a-backend1", "kind": "backend", "pxname": "servers", "type": 2, "svname": "srv1", "scur": 2, "econ": 0.0},
            {"t": t, "service": "lb-a-backend1", "kind": "backend", "pxname": "servers", "type": 1, "svname": "BACKEND", "scur": 2, "qcur": float(t % 2)},
            {"t": t, "service": "lb-a-frontend", "kind": "frontend", "pxname": "backend_processes", "type": 2, "svname": "be1-1", "scur": 9},
        ]
    return stat_rows(rows)


def test_connection_series_per_hop() -> None:
    cs = haproxy.connection_series(split_stat())
    assert list(cs.columns) == ["t", *haproxy.CONNECTION_COLUMNS]
    assert cs["client"].tolist() == [20, 21, 22, 23, 24]  # monitor frontend left out
    assert cs["frontend_backend"].tolist() == [7] * 5
    assert cs["backend_server"].tolist() == [2] * 5  # the frontend's own server rows are the other hop


def test_connections_summary_uses_the_client_frontend() -> None:
    info = info_rows([(t, "lb-a-frontend", "frontend", "CumConns", 500 + 100 * t) for t in range(5)])
    s = haproxy.connections_summary(info, split_stat(), (T0 + 1, T0 + 3.5))
    assert s == {"per_s": 10.0, "per_s_source": "haproxy_stat.conn_tot", "client_max": 23.0, "backend_max": 7.0, "server_max": 2.0}
    only_info = haproxy.connections_summary(info, empty_frame("haproxy_stat"), (T0 + 1, T0 + 3.5))
    assert only_info["per_s"] == 100.0 and only_info["per_s_source"] == "haproxy_info.CumConns"
    assert only_info["backend_max"] is None


def test_tls_summary_resumption_from_rates() -> None:
    rows = []
    for t in range(4):
        rows += [(t, "lb-a-frontend", "frontend", "SslFrontendKeyRate", 10), (t, "lb-a-frontend", "frontend", "SslRate", 40), (t, "lb-a-frontend", "frontend", "CurrSslConns", 100 + t)]
        rows += [(t, "lb-b-frontend", "frontend", "SslFrontendKeyRate", 0), (t, "lb-b-frontend", "frontend", "SslRate", 0)]
    s = haproxy.tls_summary(info_rows(rows), (T0, T0 + 3.5))
    assert s == {"handshakes_per_s": 10.0, "connections_per_s": 40.0, "resumption_pct": 75.0, "connections_max": 103.0}
    none = haproxy.tls_summary(info_rows([(0, "lb-a-frontend", "frontend", "SslRate", 0)]), (T0, T0 + 3.5))
    assert none["resumption_pct"] is None and none["handshakes_per_s"] is None


def test_tls_resumption_prefers_ssl_session_counters() -> None:
    info = info_rows([(t, "lb-a-frontend", "frontend", m, v) for t in range(3) for m, v in (("SslFrontendKeyRate", 10), ("SslRate", 10))])
    stat = stat_rows([{"t": t, "service": "lb-a-frontend", "kind": "frontend", "pxname": "clients", "type": 0, "ssl_sess": 100.0 + 30 * t, "ssl_reused_sess": 10.0 * t} for t in range(3)])
    assert haproxy.ssl_session_counts(stat, (T0, T0 + 2.5)) == (60.0, 20.0)
    assert haproxy.tls_summary(info, (T0, T0 + 2.5), stat)["resumption_pct"] == 25.0
    all_resumed = stat.assign(ssl_sess=100.0)
    assert haproxy.tls_summary(info, (T0, T0 + 2.5), all_resumed)["resumption_pct"] == 100.0
    assert haproxy.tls_summary(info, (T0, T0 + 2.5))["resumption_pct"] == 0.0  # from the rates
    assert haproxy.ssl_session_counts(split_stat(), (T0, T0 + 2.5)) is None


def test_haproxy_summary() -> None:
    info = info_rows([(t, "lb-a-frontend", "frontend", "Idle_pct", 80 - 10 * t) for t in range(4)])
    s = haproxy.haproxy_summary(info, split_stat(), (T0, T0 + 3.5))
    assert s["requests_per_s"] == 500.0
    assert s["idle_pct"] == {"lb-a-frontend": {"mean": 65.0, "min": 50.0}}
    assert s["queue_max"] == 1.0
    assert s["server_errors"]["econ"] == 0.0 and s["server_errors"]["eresp"] is None


def test_haproxy_series_columns() -> None:
    info = info_rows([(t, "lb-a-frontend", "frontend", "SslFrontendKeyRate", 3) for t in range(3)])
    hs = haproxy.haproxy_series(info, split_stat())
    assert list(hs.columns) == ["t", "conn_rate", "req_rate", "ssl_key_rate", "ssl_rate", *haproxy.CONNECTION_COLUMNS]
    assert hs["ssl_key_rate"].iloc[0] == 3.0 and hs["ssl_rate"].isna().all()


# ------------------------------------------------------------------ cpu


def cpu_rows(container: str, role: str, per_core: list[list[float]], node: str = "lb-a") -> list[dict]:
    """Cumulative rows: per_core[i] = usage_s at t=0,1,2... for core i (core -1 when only one list and name endswith '*')."""
    rows = []
    for core, values in enumerate(per_core):
        for t, v in enumerate(values):
            rows.append({"t": T0 + t, "container": container, "role": role, "node": node, "cpu": core, "usage_s": v})
    return rows


def test_cpu_pct_adds_totals_and_keeps_total_only_containers() -> None:
    rows = cpu_rows("lb-a-frontend", "frontend", [[0, 0.5, 1.0], [0, 0.25, 0.5]])
    rows += [{"t": T0 + t, "container": "srv1", "role": "server", "node": "", "cpu": -1, "usage_s": 0.1 * t} for t in range(3)]
    pct = cpu.cpu_pct(pd.DataFrame(rows))
    assert list(pct.columns) == cpu.CPU_COLUMNS
    fe_total = pct[(pct["container"] == "lb-a-frontend") & (pct["cpu"] == -1)]["pct"].tolist()
    assert fe_total == [75.0, 75.0]
    assert pct[pct["container"] == "srv1"]["pct"].round(6).tolist() == [10.0, 10.0]
    assert set(pct[pct["container"] == "srv1"]["cpu"]) == {-1}


def test_cpu_summary_host_and_containers() -> None:
    rows = cpu_rows("host", "host", [[0, 0.9, 1.8], [0, 0.1, 0.2]], node="")
    rows += cpu_rows("loadgen", "loadgen", [[0, 0.5, 1.5], [0, 0, 0]], node="")
    s = cpu.cpu_summary(cpu.cpu_pct(pd.DataFrame(rows)), (T0, T0 + 2))
    assert s["host_per_core_pct"] == [90.0, 10.0]
    assert s["host_mean_pct"] == 50.0
    lg = s["by_container"]["loadgen"]
    assert lg == {"role": "loadgen", "node": "", "mean_pct": [75.0, 0.0], "max_pct": [100.0, 0.0], "total_mean_pct": 75.0, "total_max_pct": 100.0}
    assert cpu.cpu_summary(cpu.cpu_pct(empty_frame("cpu")), (T0, T0 + 2)) == {"host_per_core_pct": None, "host_mean_pct": None, "by_container": {}}


def test_collector_overhead() -> None:
    cs = pd.DataFrame({"t": [T0, T0 + 1, T0 + 2], "usage_s": [1.0, 1.02, 1.04], "tick_s": [0.01] * 3})
    # a run from before the per-collector columns: the total only
    assert cpu.collector_overhead(cs, (T0, T0 + 2)) == {"cpu_pct": 2.0, "by_collector": {}}
    assert cpu.collector_overhead(empty_frame("collector_self"), (T0, T0 + 2)) == {"cpu_pct": None, "by_collector": {}}
    cs = cs.assign(sockets_s=[0.5, 0.505, 0.51], write_s=[0.1, 0.11, 0.12])
    assert cpu.collector_overhead(cs, (T0, T0 + 2)) == {"cpu_pct": 2.0, "by_collector": {"sockets": 0.5, "write": 1.0}}


def test_socket_table() -> None:
    """Own only when every LB namespace had a table of its own; the smallest size; unknown without the column."""
    def rows(**tcp_hash: float) -> pd.DataFrame:
        return pd.DataFrame({"t": [T0] * len(tcp_hash), "node": list(tcp_hash), "low": 32768, "high": 60999, "tcp_hash": list(tcp_hash.values())})

    assert cpu.socket_table(rows(**{"lb-a": 262144, "lb-b": 65536})) == {"socket_table": "own", "socket_table_buckets": 65536}
    assert cpu.socket_table(rows(**{"lb-a": 262144, "lb-b": -262144})) == {"socket_table": "shared", "socket_table_buckets": 262144}
    assert cpu.socket_table(rows(**{"lb-a": -262144})) == {"socket_table": "shared", "socket_table_buckets": 262144}
    unknown = {"socket_table": None, "socket_table_buckets": None}
    assert cpu.socket_table(rows(**{"lb-a": float("nan")})) == unknown  # Linux < 6.1
    assert cpu.socket_table(rows(**{"lb-a": 1}).drop(columns="tcp_hash")) == unknown  # a run from before the column
    assert cpu.socket_table(empty_frame("port_range")) == unknown


# ------------------------------------------------------------------ ports


def sockets_rows() -> pd.DataFrame:
    rows = []
    for t in range(3):
        rows += [
            {"t": T0 + t, "node": "lb-a", "state": "ESTABLISHED", "direction": "out", "src": "127.0.0.1", "lport": 0, "dst": "127.0.0.1", "dport": 8001, "count": 10 * (t + 1)},
            {"t": T0 + t, "node": "lb-a", "state": "TIME_WAIT", "direction": "out", "src": "127.0.0.1", "lport": 0, "dst": "127.0.0.1", "dport": 8002, "count": 5},
            {"t": T0 + t, "node": "lb-a", "state": "ESTABLISHED", "direction": "in", "src": "198.18.0.100", "lport": 443, "dst": "198.18.0.1", "dport": 0, "count": 20},
        ]
        if t == 0:
            rows.append({"t": T0 + t, "node": "lb-a", "state": "ESTABLISHED", "direction": "out", "src": "198.18.1.11", "lport": 0, "dst": "198.18.1.21", "dport": 8080, "count": 3})
    rows.append({"t": T0, "node": "lb-b", "state": "ESTABLISHED", "direction": "in", "src": "127.0.0.1", "lport": 8404, "dst": "127.0.0.1", "dport": 0, "count": 1})
    return pd.DataFrame(rows)


PORT_RANGE = pd.DataFrame({"t": [T0, T0], "node": ["lb-a", "lb-b"], "low": [1000, 1000], "high": [1099, 1199]})


def test_ports_in_use_counts_outgoing_sockets_per_pair() -> None:
    p = ports.ports_in_use(sockets_rows(), PORT_RANGE)
    assert list(p.columns) == ports.PORT_COLUMNS
    # the range is a budget per (source, destination:port): two destinations, two budgets
    to_8001 = p[(p["src"] == "127.0.0.1") & (p["dport"] == 8001)]
    assert to_8001["in_use"].tolist() == [10.0, 20.0, 30.0]
    to_8002 = p[(p["src"] == "127.0.0.1") & (p["dport"] == 8002)]
    assert to_8002["in_use"].tolist() == [5.0, 5.0, 5.0]
    assert to_8002["time_wait"].tolist() == [5.0, 5.0, 5.0]
    srv = p[p["src"] == "198.18.1.11"]
    assert srv["in_use"].tolist() == [3.0, 0.0, 0.0]  # a pair that stopped shows 0, not a gap
    assert set(p["node"]) == {"lb-a"} and p["range_size"].iloc[0] == 100


def test_ports_fall_back_to_the_range_without_direction() -> None:
    # a run recorded before the sockets table had `direction`: it reads as null
    rows = [{"t": T0, "node": "lb-a", "state": "ESTABLISHED", "src": "10.0.0.1", "lport": lp, "dst": "10.0.0.2", "dport": 80, "count": 1} for lp in (443, 1000, 1050, 2000)]
    s = as_read("sockets", pd.DataFrame(rows))
    assert ports.ports_in_use(s, PORT_RANGE)["in_use"].tolist() == [2.0]


def test_established_by_hop() -> None:
    hops = ports.established_by_hop(sockets_rows())
    assert list(hops.columns) == ["t", *ports.HOP_SOCKET_COLUMNS]
    assert hops["client_sockets"].tolist() == [20.0, 20.0, 20.0]
    assert hops["frontend_backend_sockets"].tolist() == [10.0, 20.0, 30.0]  # TIME_WAIT and "in" sides left out
    assert hops["backend_server_sockets"].tolist() == [3.0, 0.0, 0.0]
    assert ports.sockets_summary(hops, (T0, T0 + 2.5)) == {"client_max": 20, "backend_max": 30, "server_max": 3}
    assert ports.sockets_summary(hops, (T0, T0 + 2.5), split=False)["backend_max"] is None
    assert ports.established_by_hop(sockets_rows().assign(direction=None)).empty


def test_ports_summary() -> None:
    p = ports.ports_in_use(sockets_rows(), PORT_RANGE)
    s = ports.ports_summary(p, PORT_RANGE, load_start=T0)
    assert s["max_in_use"] == 30 and s["range_size"] == 100 and s["max_utilisation_pct"] == 30.0
    assert s["exhausted"] is False and s["first_exhaustion_at"] is None and s["exhausted_pairs"] == []
    assert s["by_source"]["lb-a"]["127.0.0.1"] == {
        "max_in_use": 30,
        "max_time_wait": 5,
        "max_utilisation_pct": 30.0,
        "destinations": {"127.0.0.1:8001": 30, "127.0.0.1:8002": 5},
    }
    empty = ports.ports_summary(ports.ports_in_use(empty_frame("sockets"), PORT_RANGE), PORT_RANGE)
    assert empty["max_in_use"] is None and empty["exhausted"] is None and empty["by_source"] == {}


def test_ports_exhaustion_onset() -> None:
    rows = sockets_rows()
    rows.loc[(rows["dport"] == 8001) & (rows["t"] == T0 + 1), "count"] = 99  # 99 of 100: at the limit
    rows.loc[(rows["dport"] == 8001) & (rows["t"] == T0 + 2), "count"] = 100
    s = ports.ports_summary(ports.ports_in_use(rows, PORT_RANGE), PORT_RANGE, load_start=T0 - 5)
    assert s["exhausted"] is True
    assert s["first_exhaustion_at"] == T0 + 1 and s["first_exhaustion_after_s"] == 6.0
    assert s["exhausted_pairs"] == ["lb-a 127.0.0.1 -> 127.0.0.1:8001"]
    assert s["max_utilisation_pct"] == 100.0


def test_pair_sampling_interval_and_the_per_second_bound() -> None:
    # pairs read at 0, 5, 10 s (and the last at 12 s); totals every second, the peak between two reads
    s = pd.DataFrame([{**r, "t": T0 + dt} for dt in (0, 5, 10, 12) for r in sockets_rows()[lambda d: d["t"] == T0].to_dict("records")])
    totals = pd.DataFrame(
        [{"t": T0 + i, "node": n, "tcp_inuse": 30, "tcp6_inuse": 0, "time_wait": (40 if (n, i) == ("lb-a", 7) else 5), "pairs_read": i in (0, 5, 10, 12)} for i in range(13) for n in ("lb-a", "lb-b")]
    )
    got = ports.pair_sampling(s, totals, PORT_RANGE)
    assert got == {"pairs_every_s": 5.0, "max_sockets": 70, "max_sockets_pct": 70.0}  # 70 of lb-a's 100 ports
    every_second = ports.pair_sampling(sockets_rows(), totals, PORT_RANGE)
    assert every_second["pairs_every_s"] == 1.0
    none = ports.pair_sampling(empty_frame("sockets"), empty_frame("socket_totals"), PORT_RANGE)
    assert none == {"pairs_every_s": None, "max_sockets": None, "max_sockets_pct": None}


# ------------------------------------------------------------------ traffic


def test_traffic_rates_and_summary() -> None:
    rows = []
    for t in range(3):
        rows.append({"t": T0 + t, "node": "lb-a", "iface": "eth0", "network": "client", "rx_bytes": 125_000 * t, "tx_bytes": 1_250_000 * t, "rx_packets": 10 * t, "tx_packets": 20 * t})
        rows.append({"t": T0 + t, "node": "lb-a", "iface": "eth1", "network": "server", "rx_bytes": 1_250_000 * t, "tx_bytes": 125_000 * t, "rx_packets": 0, "tx_packets": 0})
        rows.append({"t": T0 + t, "node": "lb-b", "iface": "eth0", "network": "client", "rx_bytes": 125_000 * t, "tx_bytes": 0, "rx_packets": 0, "tx_packets": 0})
    r = traffic.traffic_rates(pd.DataFrame(rows))
    assert list(r.columns) == traffic.TRAFFIC_COLUMNS
    s = traffic.traffic_summary(r, (T0, T0 + 2))
    assert s["client_mbps"] == {"in": 2.0, "out": 10.0, "in_max": 2.0, "out_max": 10.0}
    assert s["server_mbps"] == {"in": 10.0, "out": 1.0, "in_max": 10.0, "out_max": 1.0}
    assert traffic.traffic_summary(traffic.traffic_rates(empty_frame("netdev")), (T0, T0 + 2))["client_mbps"]["in"] is None


# ------------------------------------------------------------------ vrrp


def test_vrrp_holders_and_changes() -> None:
    held = {0: ("lb-a",), 1: ("lb-a",), 2: (), 3: ("lb-b",), 4: ("lb-a", "lb-b")}
    rows = [{"t": T0 + t + 0.3, "node": n, "holds_vip": n in h} for t, h in held.items() for n in ("lb-a", "lb-b")]
    h = vrrp.vip_holders(pd.DataFrame(rows))
    assert h["holder"].tolist() == ["lb-a", "lb-a", "", "lb-b", "lb-a+lb-b"]
    s = vrrp.vrrp_summary(pd.DataFrame(rows), pd.DataFrame({"t": [T0], "node": ["lb-b"], "state": ["MASTER"]}))
    assert s == {"holders": ["lb-a", "lb-b"], "changes": 3, "seconds_without_holder": 1, "seconds_with_two_holders": 1, "state_changes": 1}


# ------------------------------------------------------------------ bottleneck


RUN = {
    "machine": {"cpus": 2},
    "scenario": {"load": {"processes": 1}},
    "topology": {"lb": {"frontend": {"nbthread": 1, "cpus": None}, "backend": {"nbthread": 1}}, "servers": {"nbthread": 1}},
}


def container(role: str, mean: float) -> dict:
    return {"role": role, "node": "", "mean_pct": None, "max_pct": None, "total_mean_pct": mean, "total_max_pct": mean}


def test_capacities_respect_threads_pins_and_host() -> None:
    run = {**RUN, "topology": {"lb": {"frontend": {"nbthread": 4, "cpus": "0-2"}, "backend": {"nbthread": 8}}, "servers": {}}}
    caps = bottleneck.capacities(run)
    assert caps["frontend"] == 2.0 and caps["backend"] == 2.0 and caps["server"] == 1.0 and caps["host"] == 2.0
    assert bottleneck.capacities({**RUN, "topology": {"lb": {"frontend": {"nbthread": 4, "cpus": "1"}}}})["frontend"] == 1.0


def test_bottleneck_loadgen_wins_when_saturated() -> None:
    cpu_s = {"host_mean_pct": 95.0, "host_per_core_pct": [95.0, 95.0], "by_container": {"loadgen": container("loadgen", 98.0), "lb-a-frontend": container("frontend", 40.0)}}
    b = bottleneck.find_bottleneck(RUN, cpu_s, {"lb-a-frontend": {"mean": 55.0, "min": 40.0}}, {"max_utilisation_pct": 1.0, "range_size": 100})
    assert b["component"] == "loadgen" and b["saturated"] == ["loadgen"]
    assert b["utilisation_pct"] == {"frontend": 40.0, "loadgen": 98.0}
    assert any("Idle_pct 55%" in e for e in b["evidence"])
    assert "load generator" in b["verdict"]


def test_bottleneck_idle_pct_host_none_and_unknown() -> None:
    cpu_s = {"host_mean_pct": 50.0, "host_per_core_pct": [50.0, 50.0], "by_container": {"lb-a-frontend": container("frontend", 70.0)}}
    b = bottleneck.find_bottleneck(RUN, cpu_s, {"lb-a-frontend": {"mean": 5.0, "min": 0.0}}, {})
    assert b["component"] == "frontend" and b["utilisation_pct"]["frontend"] == 95.0
    assert bottleneck.find_bottleneck(RUN, cpu_s, {}, {})["component"] == "none"
    busy = {**cpu_s, "host_mean_pct": 85.0}
    contended = bottleneck.find_bottleneck(RUN, busy, {}, {})
    assert contended["component"] == "contended" and contended["contended"] is True and "85% busy" in contended["verdict"]
    ports_full = bottleneck.find_bottleneck(RUN, cpu_s, {}, {"max_utilisation_pct": 100.0, "range_size": 200})
    assert ports_full["component"] == "ports"
    unknown = bottleneck.find_bottleneck(RUN, {"host_mean_pct": None, "by_container": {}}, {}, {})
    assert unknown["component"] is None and unknown["saturated"] == []


# ------------------------------------------------------------------ checks


def test_make_check_tolerances() -> None:
    assert checks.make_check("requests", 1000, 1015, "n")["ok"] is True
    bad = checks.make_check("requests", 1000, 1100, "n")
    assert bad["ok"] is False and bad["diff_pct"] == -9.09
    assert checks.make_check("requests", 1, 3, "n")["ok"] is True  # within 2 absolute
    assert checks.make_check("requests", 0, 0, "n")["diff_pct"] == 0.0
    na = checks.make_check("connections", None, 10, "n")
    assert na["ok"] is None and set(na) == {"name", "ok", "client", "haproxy", "diff_pct", "note"}


def test_checks_against_haproxy_counters() -> None:
    stat = split_stat()
    info_list = []
    for t in range(5):
        info_list += [(t, "lb-a-frontend", "frontend", "CumReq", 1050 + 502 * t), (t, "lb-a-frontend", "frontend", "SslFrontendKeyRate", 10 if t else 0)]
    info = info_rows(info_list)
    # 2000 answered requests inside the sampled span [T0, T0+4]; 40 opened a connection; 3 never answered
    rows = [(0.001 * i, 1.0, "", 200, i % 50 == 0) for i in range(2000)] + [(0.5, 1.0, "refused", 0, True)] * 3 + [(9.0, 1.0, "")]
    req = reqs(rows)
    run = {"scenario": {"load": {"scheme": "https"}}}
    res = {c["name"]: c for c in checks.run_checks(req, info, stat, run)}
    assert [c["name"] for c in checks.run_checks(req, info, stat, run)] == ["requests", "connections", "handshakes"]
    assert res["requests"]["client"] == 2000 and res["requests"]["haproxy"] == 2000 and res["requests"]["ok"] is True
    assert "health-check" in res["requests"]["note"] and "3 requests without an answer" in res["requests"]["note"]
    assert res["connections"]["client"] == 43 and res["connections"]["haproxy"] == 40 and res["connections"]["ok"] is False
    assert res["handshakes"]["haproxy"] == 40 and res["handshakes"]["client"] == 43
    plain = checks.check_handshakes(req, info, stat, {"scenario": {"load": {"scheme": "http"}}}, (T0, T0 + 4))
    assert plain["ok"] is None and "not a TLS run" in plain["note"]
    assert checks.run_checks(req, empty_frame("haproxy_info"), empty_frame("haproxy_stat"), run)[0]["ok"] is None


def test_handshake_check_follows_client_resumption() -> None:
    info = info_rows([(t, "lb-a-frontend", "frontend", m, v) for t in range(3) for m, v in (("SslFrontendKeyRate", 4), ("SslRate", 10))])
    stat = stat_rows([{"t": t, "service": "lb-a-frontend", "kind": "frontend", "pxname": "clients", "type": 0, "ssl_sess": 4.0 * t, "ssl_reused_sess": 6.0 * t} for t in range(3)])
    req = reqs([(0.01 * i, 1.0, "", 200, True) for i in range(20)])
    lean = {"scenario": {"load": {"scheme": "https", "engine": "lean", "resumption": True}}}
    assert checks.client_resumes(lean) and not checks.client_resumes({"scenario": {"load": {"engine": "fasthttp"}}})
    assert not checks.client_resumes({**lean, "topology": {"tls": {"resumption": False}}})
    resuming = checks.check_handshakes(req, info, stat, lean, (T0, T0 + 2.5))
    assert (resuming["client"], resuming["haproxy"], resuming["ok"]) == (20.0, 20.0, True)
    assert "8 full (ssl_sess) + 12 resumed" in resuming["note"] and "about 8" in resuming["note"]
    full = checks.check_handshakes(req, info, stat, {"scenario": {"load": {"scheme": "https", "engine": "lean", "resumption": False}}}, (T0, T0 + 2.5))
    assert (full["client"], full["haproxy"], full["ok"]) == (20.0, 8.0, False)
    no_counters = checks.check_handshakes(req, info, empty_frame("haproxy_stat"), lean, (T0, T0 + 2.5))
    assert no_counters["haproxy"] == 20.0 and "SslRate" in no_counters["note"]


def test_window_rate_interpolates_at_the_edges_and_survives_restarts() -> None:
    rows = pd.DataFrame({"s": ["a"] * 4, "t": [0.0, 1.0, 2.0, 3.0], "v": [0.0, 10.0, 30.0, 30.0]})
    assert haproxy.window_rate(rows, ["s"], "v", (0.5, 2.5)) == 12.5
    restarted = rows.assign(v=[50.0, 60.0, 20.0, 20.0])  # 10, then a restart counting 20
    assert haproxy.window_rate(restarted, ["s"], "v", (0.0, 3.0)) == 10.0
    assert haproxy.window_rate(rows, ["s"], "v", (5.0, 6.0)) is None


def test_one_steady_window_definition() -> None:
    """start <= t < end everywhere: adjacent windows split requests without counting one twice or losing one."""
    t = np.array([0.0, 0.5, 1.0, 1.999, 2.0, 3.0])
    parts = [common.inside(t, (a, a + 1.0)) for a in (0.0, 1.0, 2.0)]
    assert (np.sum(parts, axis=0)[:-1] == 1).all() and not any(p[-1] for p in parts)  # 3.0 is past the last window
    req = pd.DataFrame({"t": T0 + t, "error": [""] * t.size, "latency_ms": 1.0, "status": 200, "bytes": 0, "name": "GET /", "worker": "w"})
    steady = [requests.request_summary(req, (T0 + a, T0 + a + 1.0))["steady"] for a in (0.0, 1.0, 2.0)]
    assert steady == [2, 2, 1]
    # per-second rows: a second overlaps a window, or lies wholly inside it
    secs = np.array([1.0, 2.0, 3.0])
    assert common.seconds_overlapping(secs, (1.5, 3.0)).tolist() == [True, True, False]
    assert common.seconds_inside(secs, (1.5, 3.0)).tolist() == [False, True, False]


def test_no_analysis_module_filters_the_window_its_own_way() -> None:
    """Every window filter goes through bench.analysis.common (inside, in_window, seconds_*)."""
    import re
    from pathlib import Path

    folder = Path(common.__file__).parent
    own = re.compile(r"[<>]=?\s*(window|span|w)\[[01]\]|(window|span|w)\[[01]\]\s*[<>]=?")
    offenders = [f"{p.name}:{i}" for p in sorted(folder.glob("*.py")) if p.name != "common.py" for i, line in enumerate(p.read_text().splitlines(), 1) if own.search(line)]
    assert not offenders, offenders


@pytest.mark.parametrize("spread", [1, 10**4])  # few seconds and buckets (a dense grid of cells), or many (sorted cells)
def test_per_second_histograms_are_the_group_by_sums(spread: int) -> None:
    """Summed over processes per (second, bucket), sorted, zero counts kept: what pandas' group-by gives."""
    rng = np.random.default_rng(2)
    n = 5000
    hist = as_read("latency_hist", pd.DataFrame({
        "t": 1_800_000_000 + rng.integers(0, 300 * spread, n), "worker": rng.choice(["a:1", "b:2", "c:3"], n),
        "bucket": rng.integers(0, 200 * spread, n), "count": rng.integers(0, 4, n),
    }))  # fmt: skip
    got = common.per_second_histograms(hist)
    want = hist.groupby(["t", "bucket"])["count"].sum().reset_index()
    assert (got["count"] == 0).any() and (len(got) < n) == (spread == 1)
    assert np.array_equal(got["t"].to_numpy(), want["t"].to_numpy())
    assert np.array_equal(got["bucket"].to_numpy(), want["bucket"].to_numpy())
    assert np.array_equal(got["count"].to_numpy(), want["count"].to_numpy())
    assert common.per_second_histograms(got).equals(got) and common.per_second_histograms(hist.iloc[:0]).empty
    # a merged frame (or a subset of its rows) is not merged again; the same rows unmarked merge to themselves
    some = got[got["count"] > 0]
    assert common.per_second_histograms(got) is got and common.per_second_histograms(some) is some
    assert common.per_second_histograms(pd.DataFrame({c: got[c].to_numpy() for c in got})).equals(got)
