"""The lean engine's client against tiny servers on loopback (threads, no Docker).

Covers keep-alive and connection reuse, requests per connection, TLS session
resumption, CA verification, and the error kinds (refused, reset, timeout, tls,
http_4xx/5xx, closed, other) as they come out of real sockets. Importing Locust
monkey-patches the process, so these tests use :mod:`bench.load.leanclient`,
which does not; the Locust side runs in a subprocess test below.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.load.http1 import IncompleteResponse, ProtocolError
from bench.load.leanclient import LeanClient, LeanSettings, LeanTimeout, Watchdog, check_target, error_kind, lab_tls_context

ROOT = Path(__file__).resolve().parents[2]


class FakeCapture:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def record(self, t, latency_ms, nbytes, status, error, name, conn_new=None) -> None:
        self.rows.append((t, latency_ms, nbytes, status, error, name, conn_new))


Handler = Callable[[socket.socket, bytes], bool]  # (conn, request) -> keep going?


class Server:
    """A threaded loopback server: TLS (with the test CA's cert) or plain; ``handler`` answers each request."""

    def __init__(self, handler: Handler, ctx: ssl.SSLContext | None):
        self.handler = handler
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        try:
            raw.settimeout(5)
            if self.ctx is not None:
                conn = self.ctx.wrap_socket(raw, server_side=True)
            buf = b""
            for _ in range(10_000):
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                request, _, buf = buf.partition(b"\r\n\r\n")
                if not self.handler(conn, request) or self.stop.is_set():
                    return
        except Exception:  # noqa: BLE001 - a test server never raises into the test run
            pass
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


def ok(body: bytes = b"hello", status: int = 200) -> Handler:
    def handle(conn: socket.socket, request: bytes) -> bool:
        close = b"connection: close" in request.lower()
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        conn.sendall(head.encode() + body)
        return not close

    return handle


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.ECDSA).configure_cert(server_ctx)
    other = trustme.CA()
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return folder / "ca.pem", server_ctx, folder / "other-ca.pem"


@pytest.fixture
def serve(pki) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, tls: bool = True) -> Server:
        server = Server(handler, pki[1] if tls else None)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def client_for(port: int, ca: Path | None, scheme: str = "https", **kw) -> LeanClient:
    s = LeanSettings.from_settings(f"{scheme}://127.0.0.1:{port}", {"ca": str(ca) if ca else None, "path": "/x", **kw})
    ctx = lab_tls_context(s.ca) if scheme == "https" else None
    return LeanClient(s, ctx, capture=FakeCapture())


def run(client: LeanClient, n: int, timeout: float = 20.0) -> list[tuple]:
    """n requests in a greenlet (with a watchdog), the captured rows back."""
    dog = Watchdog()

    def go() -> None:
        dog.add(client, min(client._s.timeout, client._s.connect_timeout))
        try:
            for _ in range(n):
                client.request()
        finally:
            dog.discard(client)
            client.close()

    gevent.spawn(go).get(timeout=timeout)
    return client.capture.rows  # type: ignore[union-attr]


def kinds(rows: list[tuple]) -> list[str]:
    return [r[4] for r in rows]


def test_keep_alive_reuses_one_connection(serve, pki) -> None:
    server = serve(ok(b"x" * 1000))
    client = client_for(server.port, pki[0])
    rows = run(client, 20)
    assert kinds(rows) == [""] * 20
    assert [r[6] for r in rows] == [True] + [False] * 19
    assert {r[2] for r in rows} == {1000} and {r[3] for r in rows} == {200}
    assert server.accepted == 1 and client.connections == 1
    # the statistics lists hold the same requests
    ts, ms, nb, failures = client._lists
    assert len(ts) == len(ms) == len(nb) == 20 and not failures


@pytest.mark.parametrize(("rpc", "connections"), [(1, 12), (3, 4), (0, 1)])
def test_requests_per_connection(serve, pki, rpc: int, connections: int) -> None:
    server = serve(ok())
    client = client_for(server.port, pki[0], requests_per_connection=rpc)
    rows = run(client, 12)
    assert kinds(rows) == [""] * 12
    assert client.connections == connections == sum(1 for r in rows if r[6])


@pytest.mark.parametrize("resumption", [True, False])
def test_session_resumption(serve, pki, resumption: bool) -> None:
    server = serve(ok())
    client = client_for(server.port, pki[0], requests_per_connection=1, resumption=resumption)
    rows = run(client, 6)
    assert kinds(rows) == [""] * 6
    assert client.connections == 6
    # the first handshake is always full; with resumption, the others resume
    assert client.resumed == (5 if resumption else 0)


def test_wrong_ca_is_a_tls_error(serve, pki) -> None:
    server = serve(ok())
    rows = run(client_for(server.port, pki[2]), 2)
    assert kinds(rows) == ["tls", "tls"]
    assert all(r[3] == 0 for r in rows)


def test_no_ca_is_refused_up_front(pki) -> None:
    with pytest.raises(ValueError, match="always verifies TLS"):
        lab_tls_context(None)


def test_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        rows = run(client_for(port, None, scheme="http"), 2)
    assert kinds(rows) == ["refused", "refused"]


def test_http_errors(serve, pki) -> None:
    for status, kind in ((404, "http_4xx"), (503, "http_5xx")):
        server = serve(ok(b"no", status=status))
        rows = run(client_for(server.port, pki[0]), 2)
        assert kinds(rows) == [kind, kind] and rows[0][3] == status
        assert server.accepted == 1  # an HTTP error does not cost the connection


def test_closed_mid_body(serve, pki) -> None:
    def half(conn: socket.socket, _request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        return False

    server = serve(half)
    rows = run(client_for(server.port, pki[0]), 3)
    assert kinds(rows) == ["closed"] * 3
    assert server.accepted == 3  # a failed connection is not reused


def test_reset(serve) -> None:
    def rst(conn: socket.socket, _request: bytes) -> bool:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False  # close with linger 0: the client sees a reset

    server = serve(rst, tls=False)
    rows = run(client_for(server.port, None, scheme="http"), 2)
    assert set(kinds(rows)) <= {"reset", "closed"} and "reset" in kinds(rows)


def test_response_timeout(serve, pki) -> None:
    hold = threading.Event()

    def silent(_conn: socket.socket, _request: bytes) -> bool:
        hold.wait(5)
        return False

    server = serve(silent)
    client = client_for(server.port, pki[0], timeout=0.3)
    try:
        rows = run(client, 2)
    finally:
        hold.set()
    assert kinds(rows) == ["timeout", "timeout"]
    assert all(r[1] < 3000 for r in rows)  # bounded by the timeout, not by the server


def test_garbage_is_other(serve, pki) -> None:
    def garbage(conn: socket.socket, _request: bytes) -> bool:
        conn.sendall(b"SPDY/9 what\r\n\r\n")
        return False

    server = serve(garbage)
    assert kinds(run(client_for(server.port, pki[0]), 1)) == ["other"]


def test_only_lab_or_loopback_targets() -> None:
    check_target("127.0.0.1")
    check_target("198.19.255.1")
    for host in ("10.0.0.1", "192.168.1.1", "8.8.8.8", "example.com", "198.20.0.1"):
        with pytest.raises(ValueError):
            check_target(host)
    with pytest.raises(ValueError):
        LeanClient(LeanSettings.from_settings("http://10.1.2.3", {"ca": None}), None)


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (None, 200, ""),
        (None, 302, ""),
        (None, 404, "http_4xx"),
        (None, 503, "http_5xx"),
        (IncompleteResponse("closed mid-body"), 0, "closed"),
        (IncompleteResponse("nothing", started=False), 0, "closed"),
        (ProtocolError("bad status line"), 0, "other"),
        (LeanTimeout("response timeout (5s)"), 0, "timeout"),
        (socket.timeout("timed out"), 0, "timeout"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), 0, "refused"),
        (OSError(errno.EHOSTUNREACH, "unreachable"), 0, "refused"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), 0, "reset"),
        (BrokenPipeError(errno.EPIPE, "pipe"), 0, "reset"),
        (ssl.SSLCertVerificationError("certificate verify failed"), 0, "tls"),
        (ssl.SSLEOFError("EOF during the TLS handshake"), 0, "tls"),
        (RuntimeError("surprise"), 0, "other"),
    ],
)
def test_error_kinds(exc: BaseException | None, status: int, kind: str) -> None:
    assert error_kind(exc, status) == kind


def test_request_bytes() -> None:
    s = LeanSettings.from_settings("https://198.18.0.100", {"ca": "x", "path": "/?size=10"})
    assert s.request_bytes(close=False) == b"GET /?size=10 HTTP/1.1\r\nHost: 198.18.0.100\r\nUser-Agent: lbbench-lean\r\n\r\n"
    s = LeanSettings.from_settings("http://127.0.0.1:8080", {"path": "/"})
    assert b"Host: 127.0.0.1:8080\r\n" in s.request_bytes(close=True) and b"Connection: close\r\n" in s.request_bytes(close=True)
    with pytest.raises(ValueError):
        LeanSettings.from_settings("ftp://127.0.0.1", {})
    with pytest.raises(ValueError):
        LeanSettings.from_settings("https://127.0.0.1", {"requests_per_connection": -1})


STATS_SCRIPT = r"""
import json, random, sys
from locust.stats import RequestStats, bucket_response_time
from bench.load.leanclient import StatsBatch

lat = json.loads(sys.argv[1])
rng = random.Random(1)
ours, theirs = RequestStats(use_response_times_cache=False), RequestStats(use_response_times_cache=False)
batch = StatsBatch()
ts, ms, nb, failures = batch.lists("GET /")
t0 = 1_700_000_000.0
for i, ms_ in enumerate(lat):
    t = t0 + i * 0.01
    ts.append(t); ms.append(ms_); nb.append(i)
    if i % 7 == 3:
        failures.append((t, "closed: IncompleteResponse"))
        theirs.log_error("GET", "GET /", "closed: IncompleteResponse")
    theirs.log_request("GET", "GET /", ms_, i)
batch.flush(ours)
a, b = ours.entries[("GET /", "GET")], theirs.entries[("GET /", "GET")]
out = {
  "requests": [a.num_requests, b.num_requests],
  "failures": [a.num_failures, b.num_failures],
  "buckets": [sorted(a.response_times.items()), sorted(b.response_times.items())],
  "bytes": [a.total_content_length, b.total_content_length],
  "minmax": [[a.min_response_time, a.max_response_time], [b.min_response_time, b.max_response_time]],
  "total_rt": [a.total_response_time, b.total_response_time],
  "per_sec": sum(a.num_reqs_per_sec.values()),
  "errors": [[e.occurrences for e in ours.errors.values()], [e.occurrences for e in theirs.errors.values()]],
  "total": [ours.total.num_requests, theirs.total.num_requests],
  "empty_after": len(ts),
}
print(json.dumps(out))
"""


@settings(max_examples=5, deadline=None)
@given(st.lists(st.floats(0, 120_000, allow_nan=False).filter(lambda v: abs(v * 2 - round(v * 2)) > 1e-6 or v < 100), min_size=1, max_size=300))
def test_stats_batch_matches_locust(latencies: list[float]) -> None:
    """Batched merging gives Locust the same statistics as one log_request per request.

    Runs in a subprocess: importing Locust monkey-patches the process.
    """
    out = subprocess.run(
        [sys.executable, "-c", STATS_SCRIPT, json.dumps(latencies)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    for key in ("requests", "failures", "buckets", "bytes", "minmax", "errors", "total"):
        assert r[key][0] == r[key][1], key
    assert r["total_rt"][0] == pytest.approx(r["total_rt"][1])
    assert r["per_sec"] == len(latencies) and r["empty_after"] == 0
