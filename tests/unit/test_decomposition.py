"""The latency decomposition (bench/analysis/decomposition.py) and the timers' log lines, on data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.decomposition import PARTS, decomposition_summary, joined, requested_delay_ms, str_value_counts
from bench.collect.timers import QLEN_SYSCTL, TABLE, TimerReceiver, datagram_socket, parse_line
from bench.results.store import as_read, read_table

T0 = 1_800_000_000.0
WORKER = "gen:42"


def traced_run(n: int = 200, seed: int = 1, split: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Requests and timers lines whose hops are drawn at random: the truth to recover."""
    rng = np.random.default_rng(seed)
    hops = {
        "up": rng.uniform(0.1, 0.5, n), "fb_up": rng.uniform(0.05, 0.2, n) if split else np.zeros(n),
        "queue": rng.integers(0, 3, n).astype(float), "connect": rng.integers(0, 2, n).astype(float),
        "bs_up": rng.uniform(0.1, 0.3, n), "server": 50.0 + rng.uniform(0.0, 0.8, n),
        "bs_down": rng.uniform(0.1, 0.3, n), "fb_down": rng.uniform(0.05, 0.2, n) if split else np.zeros(n), "down": rng.uniform(0.1, 0.6, n),
    }  # fmt: skip
    c0 = T0 + np.arange(n) * 0.1
    f_req = c0 + hops["up"] / 1e3
    b_req = f_req + hops["fb_up"] / 1e3
    s_req = b_req + (hops["queue"] + hops["connect"] + hops["bs_up"]) / 1e3
    s_resp = s_req + hops["server"] / 1e3
    b_resp = s_resp + hops["bs_down"] / 1e3
    f_resp = b_resp + hops["fb_down"] / 1e3
    c1 = f_resp + hops["down"] / 1e3
    req = pd.DataFrame({"t": c0, "latency_ms": (c1 - c0) * 1e3, "error": "", "worker": WORKER, "trace_id": pd.array(np.arange(1, n + 1), dtype="Int64")})
    rows = []
    us = lambda x: round(x * 1e6)  # noqa: E731 - HAProxy logs microseconds
    for i in range(n):
        rid = f"{WORKER}/{i + 1}"
        fe_kind = "frontend" if split else "monolith"
        fq, fw, fc = (0, 0, 0) if split else (0, int(hops["queue"][i]), int(hops["connect"][i]))
        rows.append(f"lbb1 lb-a-fe {fe_kind} {rid} {us(f_req[i])} {us(f_resp[i])} {us(c1[i])} 0 0 {fq} {fw} {fc} 50 51 200 1024 -- be1-1")
        if split:
            rows.append(f"lbb1 lb-a-backend1 backend {rid} {us(b_req[i])} {us(b_resp[i])} {us(f_resp[i])} 0 0 0 {int(hops['queue'][i])} {int(hops['connect'][i])} 50 51 200 1024 -- srv1")
        rows.append(f"lbb1 srv1 server {rid} {us(s_req[i])} {us(s_resp[i])} {us(b_resp[i])} 0 0 0 -1 -1 -1 51 200 1024 -- <NOSRV>")
    timers = pd.DataFrame([parse_line(line) for line in rows])
    # as a run directory gives them back (strings as categories)
    return as_read("requests", req), as_read("request_timers", timers), hops


@pytest.mark.parametrize("split", [True, False])
def test_hops_are_recovered_and_add_up_to_the_client_latency(split: bool) -> None:
    req, timers, truth = traced_run(split=split)
    d = joined(req, timers)
    assert len(d) == len(req)
    assert np.allclose(d["client_frontend"], truth["up"] + truth["down"], atol=2e-3)
    assert np.allclose(d["frontend_backend"], truth["fb_up"] + truth["fb_down"], atol=2e-3)
    assert np.allclose(d["queue"], truth["queue"]) and np.allclose(d["connect"], truth["connect"])
    assert np.allclose(d["backend_server"], truth["bs_up"] + truth["bs_down"], atol=2e-3)
    assert np.allclose(d["server"], truth["server"], atol=2e-3)
    assert np.allclose(d[list(PARTS)].sum(axis=1), d["latency_ms"], atol=1e-6)
    assert np.allclose(d["lb_added"], d["frontend_backend"] + d["connect"] + d["backend_server"])


def _joined_by_strings(requests: pd.DataFrame, timers: pd.DataFrame) -> pd.DataFrame:
    """The join as the X-Lbbench-Id strings say it: ``<worker>/<trace_id>`` = ``id``, each process's first line."""
    req = requests[requests["trace_id"].notna() & (requests["error"] == "")]
    req = req.assign(id=(req["worker"].astype(str) + "/" + req["trace_id"].astype("int64").astype(str)).to_numpy())
    out = req[["id", "t"]]
    for prefix, kinds in (("f", ("frontend", "monolith")), ("b", ("backend",)), ("s", ("server",))):
        first = timers[timers["kind"].isin(kinds)].assign(id=lambda d: d["id"].astype(str)).drop_duplicates("id")
        out = out.merge(first[["id", "t_req", "t_resp"]].rename(columns={"t_req": f"{prefix}_req", "t_resp": f"{prefix}_resp"}), on="id", how="inner")
    return out.dropna()


def test_the_join_matches_the_ids_strings_whatever_the_lines_order_duplicates_and_junk() -> None:
    """Integer keys give what joining the id strings gives: the same requests, in their order, each process's first line."""
    req, timers, _ = traced_run(n=300, seed=3)
    req, timers = req.astype({"worker": object, "error": object}), timers.astype({"kind": object})
    rng = np.random.default_rng(5)
    other = req.assign(worker="gen:43", t=req["t"] + 0.05)  # a second writer with the same trace numbers
    req = pd.concat([req, other]).iloc[rng.permutation(2 * len(req))].reset_index(drop=True)
    req.loc[rng.choice(len(req), 20, replace=False), "error"] = "timeout"
    req.loc[rng.choice(len(req), 20, replace=False), "trace_id"] = None
    timers = pd.concat([timers, timers.assign(id=timers["id"].str.replace(WORKER, "gen:43"))])
    dup = timers.sample(50, random_state=1).assign(t_req=1.0)  # a repeated line comes later: the first one counts
    junk = timers.head(6).assign(id=["gen:42/007", "gen:42/x", "gen:99/1", "gen:42", None, "gen:42/-3"], t_req=2.0)  # ids no request has
    timers = pd.concat([junk, timers.iloc[rng.permutation(len(timers))], dup]).reset_index(drop=True)
    timers = timers[~((timers["kind"] == "backend") & timers["id"].isin(["gen:42/5", "gen:43/9"]))]
    req, timers = as_read("requests", req), as_read("request_timers", timers)  # as a run directory gives them back
    d = joined(req, timers)
    want = _joined_by_strings(req, timers)
    assert len(d) == len(want) > 500
    assert np.array_equal(d["t"].to_numpy(), want["t"].to_numpy())  # the same requests, in the requests' order
    assert np.allclose(d["server"], (want["s_resp"] - want["s_req"]) * 1e3)
    assert np.allclose(d["frontend_backend"], ((want["b_req"] - want["f_req"]) + (want["f_resp"] - want["b_resp"])) * 1e3)
    assert joined(req, timers.astype({"id": "category"})).equals(d)  # ids read as categories: the same join


def test_summary_percentiles_requested_vs_served_and_missing_hops() -> None:
    req, timers, truth = traced_run()
    # an untraced request and a traced one whose server line never came
    req = pd.concat([req, pd.DataFrame({"t": [T0 + 30], "latency_ms": [1.0], "error": [""], "worker": [WORKER], "trace_id": pd.array([None], dtype="Int64")})])
    timers = timers[~((timers["kind"] == "server") & (timers["id"] == f"{WORKER}/7"))]
    run = {"scenario": {"load": {"path": "/?size=0&delay_ms=50", "trace_every": None}}, "topology": {"lb": {"layout": "split"}}}
    s = decomposition_summary(req, timers, (T0, T0 + 100), run, dropped_logs=0)
    assert s["requests"] == 199 and s["traced"] == 200 and s["sampled_pct"] == pytest.approx(100 * 200 / 201, abs=0.01)
    assert s["hops_ms"]["server"]["p50"] == pytest.approx(np.median(np.delete(truth["server"], 6)), abs=2e-3)
    assert s["requested_delay_ms"] == 50.0 and 0 < s["served_over_requested_ms"]["p50"] < 0.8
    assert abs(s["sum_p50_diff_ms"]) < 1.0
    assert s["termination"]["frontend"] == {"--": 199}


def test_requested_delay_from_the_path() -> None:
    assert requested_delay_ms("/?size=1&delay_ms=50") == 50.0 and requested_delay_ms("/?delay_ms=7&x=1") == 7.0
    assert requested_delay_ms("/?size=1") is None and requested_delay_ms(None) is None


def test_log_lines_parse_and_junk_is_refused() -> None:
    row = parse_line("lbb1 lb-a-frontend frontend gen:1/7 1800000000123456 1800000000173456 1800000000174000 3 0 0 0 0 50 51 200 1024 -- be1-1\n")
    assert row is not None and row["id"] == "gen:1/7" and row["t_req"] == pytest.approx(1800000000.123456) and row["Th"] == 3 and row["server"] == "be1-1"
    assert parse_line("lbb1 srv1 server - - - 1800000000174000 0 0 0 -1 -1 -1 1 200 1 -- -") is None  # untraced
    assert parse_line("hello") is None and parse_line("") is None


def test_the_receiver_streams_lines_from_a_unix_socket(tmp_path: Path) -> None:
    import socket
    import time

    path = tmp_path / "timers.sock"
    r = TimerReceiver(tmp_path, path)
    r.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for i in range(50):
            s.sendto(f"lbb1 srv1 server gen:1/{i} 1800000000000000 1800000000050000 1800000000050100 0 0 0 -1 -1 -1 50 200 1 -- -".encode(), str(path))
        s.sendto(b"not a timer line", str(path))
    deadline = time.monotonic() + 5
    while r.lines + r.rejected < 51 and time.monotonic() < deadline:
        time.sleep(0.02)
    meta = r.stop()
    assert meta["lines"] == 50 and meta["rejected"] == 1 and not path.exists()
    got = read_table(tmp_path, TABLE)
    assert len(got) == 50 and set(got["kind"]) == {"server"}


def test_the_timers_socket_holds_more_lines_than_the_hosts_queue_where_it_may(tmp_path: Path) -> None:
    # a unix datagram socket queues net.unix.max_dgram_qlen datagrams of its namespace (10 by default):
    # the receiver's own namespace lifts it to what it asked for (root), the host's setting stays
    import os
    import socket

    host_qlen = int(QLEN_SYSCTL.read_text())
    sock, qlen = datagram_socket(64)
    path = tmp_path / "q.sock"
    with sock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sock.bind(str(path))
        sender.setblocking(False)
        queued = 0
        while queued < 1000:
            try:
                sender.sendto(b"x" * 200, str(path))
            except BlockingIOError:  # EAGAIN: the queue is full
                break
            queued += 1
    assert int(QLEN_SYSCTL.read_text()) == host_qlen
    if os.geteuid() == 0:
        assert qlen == 64 and queued == 65, (qlen, queued)
    else:  # no namespace of its own: the host's queue
        assert qlen == host_qlen and queued == host_qlen + 1, (qlen, queued)
    # the receiver says which queue it had
    r = TimerReceiver(tmp_path, tmp_path / "timers.sock")
    r.start()
    assert r.stop()["queue"] == r.qlen and r.qlen is not None


def test_the_report_shows_the_decomposition_and_opens_with_a_changed_lab(tmp_path: Path) -> None:
    import json

    from bench.report import build_report
    from bench.results.store import ChunkWriter
    from bench.results.tables import REQUEST_TIMERS, REQUESTS
    from tests.unit.test_report import T0 as RT0
    from tests.unit.test_report import make_run

    change = {"t": RT0 + 4.0, "kind": "integrity", "name": "container-exited", "subject": "srv2", "message": "srv2 exited (code 137) at +4.0 s, not a planned fault"}
    run_dir = make_run(tmp_path, requests=False, events=[change])
    req, timers, _ = traced_run(n=50)
    shift = RT0 + 0.5 - T0  # into the synthetic run's load window
    req = req.assign(t=req["t"] + shift, bytes=128, status=200, name="GET /", conn_new=None, intended_t=None, latency_corrected_ms=None)
    for col in ("t", "t_req", "t_resp"):
        timers[col] = timers[col] + shift
    ChunkWriter(run_dir, REQUESTS, "1").write({k: req[k].astype(object).where(req[k].notna(), None).tolist() for k in REQUESTS.schema.names})
    ChunkWriter(run_dir, REQUEST_TIMERS, "timers").write({k: timers[k].astype(object).where(timers[k].notna(), None).tolist() for k in REQUEST_TIMERS.schema.names})
    build_report(run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["decomposition"]["requests"] > 0 and s["integrity"]["ok"] is False
    html = (run_dir / "report.html").read_text()
    assert html.index("INVALID: the lab changed during the run") < html.index("<b>Bottleneck:</b>")
    assert "srv2 exited (code 137)" in html and "<h2>Latency decomposition</h2>" in html
    assert "latency by hop (p50)" in html
    assert (run_dir / "plots" / "decomposition.png").stat().st_size > 1000


def test_automatic_tracing_keeps_about_100_traced_requests_a_second() -> None:
    from bench.load.capture import AUTO_START, TRACE_PER_S, Tracer

    auto = Tracer("w:1")
    assert auto.every == AUTO_START and auto.countdown() == AUTO_START
    auto.adapt(requests=5000, seconds=1.0)
    assert auto.every == 50 and 5000 / auto.every == TRACE_PER_S
    auto.adapt(requests=40, seconds=1.0)
    assert auto.every == 1
    fixed = Tracer("w:1", 7)
    fixed.adapt(requests=5000, seconds=1.0)
    assert fixed.every == 7
    assert Tracer("w:1", 0).countdown() == -1  # off: the countdown never reaches zero
    assert auto.header_line(auto.take()) == b"X-Lbbench-Id: w:1/1\r\n"


_FASTHTTP_TRACE = """
import json, sys
from types import SimpleNamespace

import locust  # noqa: F401 - monkey-patches first, as in a Locust worker

import gevent

from bench.load import users
from bench.load.capture import RequestCapture, Tracer

capture = RequestCapture(sys.argv[1])
capture.tracer = Tracer("w:1", 4)
sent = []


def get(path, name, headers=None):
    sent.append(headers)
    capture.on_request("GET", name, 1.0, 10, response=SimpleNamespace(status_code=200), start_time=1.0)


user = SimpleNamespace(client=SimpleNamespace(get=get))
users.TRACE = users._Countdown()
users.attach_tracer(capture.tracer)
gevent.spawn(lambda: [users.KeepAliveUser.get(user) for _ in range(12)]).get(timeout=10)
print(json.dumps({"sent": sent, "traced": capture._traced}))
"""


def test_fasthttp_users_trace_one_in_n_and_the_capture_marks_their_rows(tmp_path: Path) -> None:
    # Locust monkey-patches the interpreter when imported: in its own process, never in pytest's.
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FASTHTTP_TRACE, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    sent = got["sent"]
    assert [h for h in sent if h] == [{"X-Lbbench-Id": f"w:1/{i}"} for i in (1, 2, 3)]
    assert [i for i, h in enumerate(sent) if h] == [3, 7, 11]
    assert [tuple(x) for x in got["traced"]] == [(3, 1), (7, 2), (11, 3)]


def test_termination_counts_by_code_are_value_counts_of_the_strings() -> None:
    """The termination states are counted on a categorical's codes: the same pairs, in the same order, as
    ``astype(str).value_counts()`` (most first, ties in the order first seen, missing left out)."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        cats = ["--", "CD", "SD", "LR", "sH", "cD", "PR"][: rng.integers(1, 8)]
        values = rng.choice([*cats, None], rng.integers(0, 40))  # small: counts often tie
        col = pd.Series(pd.Categorical(values, categories=cats))
        expected = [(str(k), int(v)) for k, v in col.astype(str).value_counts().items()]
        assert str_value_counts(col) == expected
        plain = pd.Series(values, dtype=object)  # a column read without categories: the strings' own counts
        assert str_value_counts(plain) == [(str(k), int(v)) for k, v in plain.astype(str).value_counts().items()]
