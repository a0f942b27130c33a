"""The lean engine against real HAProxy: the parser on real responses, error kinds, Locust runs.

One loopback HAProxy of the lab image (``bench.calibrate.loopback_haproxy``)
serves: the lab's dummy server (``?size=N``, ``?status=N``), a Lua service
that answers chunked (no Content-Length, so HAProxy chunks it), and a proxy to
a Python server on loopback that closes in the middle of a body. Then short
Locust runs with ``LeanHttpsUser`` (one and two processes). A full lab driven
by the lean engine: test_load_models.py (keep-alive, open, rate models).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from bench.calibrate import Endpoint, loopback_haproxy
from bench.load.http1 import Response, read_response
from bench.load.leanclient import Connection, LeanClient, LeanSettings, Watchdog, lab_tls_context
from bench.results.store import read_table

pytestmark = pytest.mark.integration

CHUNKED_LUA = """
core.register_service("chunked", "http", function(applet)
    local size = 0
    for k, v in (applet.qs or ""):gmatch("([^&=]+)=([^&]*)") do
        if k == "size" then size = math.floor(tonumber(v) or 0) end
    end
    applet:set_status(200)
    applet:add_header("content-type", "application/octet-stream")
    applet:start_response()
    local piece = string.rep("c", 7000)
    local left = size
    while left > 0 do
        local n = math.min(left, 7000)
        applet:send(piece:sub(1, n))
        left = left - n
    end
end)
"""

EXTRA = """
frontend dummy
    bind 127.0.0.1:{port_dummy} ssl crt {mount}/server.pem
    http-request use-service lua.dummy

frontend chunked
    bind 127.0.0.1:{port_chunked} ssl crt {mount}/server.pem
    http-request use-service lua.chunked

frontend broken
    bind 127.0.0.1:{port_broken} ssl crt {mount}/server.pem
    default_backend half_server

backend half_server
    server py 127.0.0.1:PYPORT
"""

HALF_BODY = 20_000


class HalfServer:
    """Plain HTTP on loopback: promises 100000 bytes, sends HALF_BODY, closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                buf = b""
                while b"\r\n\r\n" not in buf and len(buf) < 65536:
                    data = conn.recv(65536)
                    if not data:
                        break
                    buf += data
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"h" * HALF_BODY)
                time.sleep(0.1)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def endpoint(node_image: str) -> Iterator[tuple[Endpoint, HalfServer]]:
    half = HalfServer()
    try:
        with loopback_haproxy(
            extra_config=EXTRA.replace("PYPORT", str(half.port)),
            extra_ports=("dummy", "chunked", "broken"),
            extra_files={"chunked.lua": CHUNKED_LUA},
            global_extra="    lua-load /usr/local/share/lbbench/dummy.lua\n    lua-load {mount}/chunked.lua\n",
        ) as ep:
            yield ep, half
    finally:
        half.close()


def in_greenlet(fn, timeout: float = 60.0):
    return gevent.spawn(fn).get(timeout=timeout)


def fetch_many(ep: Endpoint, listener: str, paths: list[str], close_last: bool = False) -> list[Response]:
    """GET each path on ONE connection (keep-alive), keeping the bodies."""
    ctx = lab_tls_context(str(ep.ca_pem))

    def go() -> list[Response]:
        conn = Connection.open(("127.0.0.1", ep.ports[listener]), ctx, "127.0.0.1")
        out = []
        try:
            for i, path in enumerate(paths):
                close = close_last and i == len(paths) - 1
                conn.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode())
                response, conn.buf = read_response(conn.recv, conn.buf, keep_body=True)
                out.append(response)
        finally:
            conn.close()
        return out

    return in_greenlet(go)


SIZES = [0, 1, 100, 16_383, 16_384, 16_385, 100_000, 1 << 20]


def test_dummy_server_sizes_on_one_connection(endpoint) -> None:
    ep, _ = endpoint
    responses = fetch_many(ep, "dummy", [f"/?size={n}" for n in SIZES])
    for n, r in zip(SIZES, responses, strict=True):
        assert r.status == 200 and r.keep_alive
        assert r.header(b"content-length") == str(n).encode()
        assert r.body_bytes == n and r.body == b"x" * n


def test_chunked_from_haproxy(endpoint) -> None:
    ep, _ = endpoint
    sizes = [0, 1, 6999, 7000, 7001, 100_000, 1 << 20]
    responses = fetch_many(ep, "chunked", [f"/?size={n}" for n in sizes])
    for n, r in zip(sizes, responses, strict=True):
        assert r.header(b"transfer-encoding") == b"chunked", r.headers()
        assert r.header(b"content-length") is None
        assert r.body_bytes == n and r.body == b"c" * n and r.keep_alive


def test_error_statuses_and_connection_close(endpoint) -> None:
    ep, _ = endpoint
    r404, r503, r200 = fetch_many(ep, "dummy", ["/?status=404&size=10", "/?status=503", "/?size=5"], close_last=True)
    assert (r404.status, r404.body_bytes, r404.keep_alive) == (404, 10, True)
    assert (r503.status, r503.keep_alive) == (503, True)
    assert r200.status == 200 and r200.body_bytes == 5 and not r200.keep_alive  # we asked to close


def lean_client(ep: Endpoint, listener: str, path: str = "/", **kw) -> tuple[LeanClient, list]:
    rows: list[tuple] = []

    class Rec:
        def record(self, *args) -> None:
            rows.append(args)

    s = LeanSettings.from_settings(ep.url(listener), {"ca": str(ep.ca_pem), "path": path, **kw})
    return LeanClient(s, lab_tls_context(s.ca), capture=Rec()), rows  # type: ignore[arg-type]


def drive(client: LeanClient, n: int) -> None:
    dog = Watchdog()

    def go() -> None:
        dog.add(client, 5.0)
        try:
            for _ in range(n):
                client.request()
        finally:
            dog.discard(client)
            client.close()

    in_greenlet(go)


def test_error_kinds_through_haproxy(endpoint) -> None:
    ep, _ = endpoint
    for path, kind in (("/?status=503", "http_5xx"), ("/?status=404", "http_4xx"), ("/?size=1000", "")):
        client, rows = lean_client(ep, "dummy", path)
        drive(client, 3)
        assert [r[4] for r in rows] == [kind] * 3
        assert client.connections == 1


def test_server_closing_mid_body(endpoint) -> None:
    ep, _ = endpoint
    client, rows = lean_client(ep, "broken", "/")
    drive(client, 3)
    assert {r[4] for r in rows} <= {"closed", "reset"}, rows
    assert len(rows) == 3 and client.connections == 3


@pytest.mark.parametrize(("listener", "resumption", "resumed"), [("resume", True, 9), ("resume", False, 0), ("full", True, 0)])
def test_resumption_against_haproxy(endpoint, listener: str, resumption: bool, resumed: int) -> None:
    ep, _ = endpoint
    client, rows = lean_client(ep, listener, requests_per_connection=1, resumption=resumption)
    drive(client, 10)
    assert [r[4] for r in rows] == [""] * 10 and all(r[6] for r in rows)
    assert client.connections == 10 and client.resumed == resumed


def run_locust(ep: Endpoint, run_dir: Path, seconds: float, **load) -> None:
    from bench.load.runner import start_locust
    from bench.spec import Load, Scenario

    scenario = Scenario(name="lean-test", duration=seconds, ramp_up=0.5, load=Load(engine="lean", path="/", **load))
    locust = start_locust(scenario, ep.url("full"), ep.ca_pem, run_dir, seconds)
    code = locust.wait(seconds + 60)
    if code is None:
        locust.stop()
    assert code == 0, locust.log_tail(20)


def test_locust_run_records_requests_with_conn_new(endpoint, tmp_path: Path) -> None:
    ep, _ = endpoint
    users = 5
    run_locust(ep, tmp_path, 2, users=users, spawn_rate=50, requests_per_connection=10)
    df = read_table(tmp_path, "requests")
    assert len(df) > 100
    assert (df["error"] == "").all(), df["error"].value_counts()
    assert (df["status"] == 200).all()
    new = int(df["conn_new"].sum())
    # every 10th request of each user opens a connection: ceil(r_u / 10) per user
    assert len(df) / 10 <= new <= len(df) / 10 + users
    stats = (tmp_path / "locust" / "locust_stats.csv").read_text().splitlines()
    assert stats[0].startswith("Type,Name,Request Count") and any(line.startswith("GET,GET /,") for line in stats)


def test_locust_two_processes(endpoint, tmp_path: Path) -> None:
    ep, _ = endpoint
    run_locust(ep, tmp_path, 3, users=6, spawn_rate=50, processes=2)
    df = read_table(tmp_path, "requests")
    assert len(df) > 100 and (df["error"] == "").all()
    assert df["worker"].nunique() == 2  # both forked workers sent load
    assert int(df["conn_new"].sum()) == 6  # one keep-alive connection per user
