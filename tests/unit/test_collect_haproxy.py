"""HAProxy stats socket answers (recorded from a real lab, HAProxy 2.6) parse by name, not by position."""

from __future__ import annotations

import math
import socket
import threading
from pathlib import Path

import pytest

from bench.collect import haproxy
from bench.collect.tables import TableBuffer
from bench.results.store import read_table
from bench.results.tables import HAPROXY_STAT, STAT_FIELDS

DATA = Path(__file__).parent / "data" / "collect"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def test_show_info_keeps_every_numeric_field_and_skips_text() -> None:
    info, _ = haproxy.split_info_stat(recorded("haproxy_frontend.txt"))
    values = haproxy.parse_show_info(info)
    for name in ("ConnRate", "SessRate", "SslRate", "SslFrontendKeyRate", "SslFrontendSessionReuse_pct",
                 "CurrConns", "CurrSslConns", "CumConns", "CumReq", "CumSslConns", "Idle_pct", "Unstoppable Jobs"):  # fmt: skip
        assert name in values, name
    assert values["Nbthread"] == 1.0
    assert values["CumReq"] == 242.0
    for text_field in ("Name", "Version", "Release_date", "Uptime", "node", "Build info"):
        assert text_field not in values


def test_show_stat_is_parsed_by_header() -> None:
    _, stat = haproxy.split_info_stat(recorded("haproxy_backend1.txt"))
    rows = {(r["pxname"], r["svname"]): r for r in haproxy.parse_show_stat(stat)}
    assert set(rows) == {
        ("from_frontend", "FRONTEND"),
        ("servers", "srv1"),
        ("servers", "srv2"),
        ("servers", "srv3"),
        ("servers", "BACKEND"),
    }
    fe = rows[("from_frontend", "FRONTEND")]
    assert fe["type"] == 0 and fe["status"] == "OPEN"
    assert fe["scur"] == 11 and fe["stot"] == 121 and fe["req_tot"] == 148 and fe["hrsp_4xx"] == 39
    assert math.isnan(fe["econ"])  # frontends leave server-side fields empty
    srv = rows[("servers", "srv1")]
    assert srv["type"] == 2 and srv["status"] == "UP"
    assert srv["scur"] == 2 and srv["slim"] == 100 and srv["rtime"] == 293 and srv["ttime"] == 432
    assert srv["connect"] == 37 and srv["used_conn_cur"] == 2  # columns beyond the `-` separator too
    assert rows[("servers", "BACKEND")]["type"] == 1
    assert all(set(STAT_FIELDS) <= set(r) for r in rows.values())


def test_frontend_tls_session_counters() -> None:
    _, stat = haproxy.split_info_stat(recorded("haproxy_frontend.txt"))
    rows = {(r["pxname"], r["svname"]): r for r in haproxy.parse_show_stat(stat)}
    clients = rows[("clients", "FRONTEND")]
    assert clients["ssl_sess"] == 13 and clients["ssl_reused_sess"] == 0
    assert {r["type"] for r in rows.values()} == {0, 1, 2}


def test_show_stat_survives_reordered_and_missing_columns() -> None:
    text = "# svname,pxname,type,status,rate,scur\nBACKEND,be,1,UP,7,3\n"
    (row,) = haproxy.parse_show_stat(text)
    assert (row["pxname"], row["svname"], row["type"], row["status"]) == ("be", "BACKEND", 1, "UP")
    assert row["rate"] == 7.0 and row["scur"] == 3.0
    assert math.isnan(row["qtime"]) and math.isnan(row["hrsp_5xx"])


def test_show_stat_fields_that_are_no_number_or_cut_short_read_as_nan() -> None:
    text = "# pxname,svname,type,status,rate,scur,qtime,\nfe,FRONTEND,0,OPEN,-,4\nbe,BACKEND,x,UP,7,3,12,\n"
    columns = haproxy.parse_show_stat_columns(text)
    assert columns["pxname"] == ["fe", "be"] and columns["type"] == [0, -1]
    assert math.isnan(columns["rate"][0]) and columns["scur"][0] == 4.0 and math.isnan(columns["qtime"][0])  # "-", cut short
    assert columns["rate"][1] == 7.0 and columns["qtime"][1] == 12.0
    assert all(len(columns[name]) == 2 for name in haproxy.STAT_COLUMNS)


def test_server_answer_has_info_and_stat() -> None:
    info, stat = haproxy.split_info_stat(recorded("haproxy_srv1.txt"))
    assert haproxy.parse_show_info(info)["CumReq"] > 0
    assert [r["svname"] for r in haproxy.parse_show_stat(stat)] == ["FRONTEND"]


def test_sample_writes_long_info_and_wide_stat(tmp_path: Path) -> None:
    answer = recorded("haproxy_backend1.txt").encode()
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            assert conn.recv(100) == haproxy.COMMAND
            conn.sendall(answer)

    thread = threading.Thread(target=serve)
    thread.start()
    info, stat = TableBuffer(tmp_path, "haproxy_info"), TableBuffer(tmp_path, "haproxy_stat")
    haproxy.sample(haproxy.HAProxyTarget("lb-a-backend1", "lb-a", "backend", path), info, stat)
    thread.join()
    server.close()
    info.flush()
    stat.flush()
    df_info = read_table(tmp_path, "haproxy_info")
    assert set(df_info["service"]) == {"lb-a-backend1"} and set(df_info["kind"]) == {"backend"}
    assert df_info.set_index("metric").loc["CumReq", "value"] == 115.0
    df_stat = read_table(tmp_path, "haproxy_stat")
    assert tuple(df_stat.columns) == HAPROXY_STAT.names
    assert len(df_stat) == 5 and df_stat["t"].nunique() == 1
    assert str(df_stat["type"].dtype) == "int32"


def test_dead_socket_raises_oserror(tmp_path: Path) -> None:
    info, stat = TableBuffer(tmp_path, "haproxy_info"), TableBuffer(tmp_path, "haproxy_stat")
    with pytest.raises(FileNotFoundError):
        haproxy.sample(haproxy.HAProxyTarget("x", "", "server", tmp_path / "missing.sock"), info, stat)
