"""The lean engine's HTTP/1.1 response reader, without sockets.

Property tests build valid responses (sizes, chunked with random chunk splits,
extensions and trailers, random extra headers in random case, Connection:
close, HTTP/1.0, interim 1xx, no-body statuses), feed them in random
fragmentations, and check the reader against what was built; truncated streams
must fail as "closed"; the short path, and the lean engine's receive fast
path (``complete_simple``), must agree with the general reader.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.load import http1
from bench.load.http1 import IncompleteResponse, ProtocolError, Response, read_response

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FRAMING = {"content-length", "transfer-encoding", "connection"}


def feeder(data: bytes, cuts: list[int]):
    """A recv() returning ``data`` split at ``cuts``, then b"" forever; and a way to see what is left."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]]
    state = {"i": 0}

    def recv() -> bytes:
        i = state["i"]
        state["i"] += 1
        return pieces[i] if i < len(pieces) else b""

    def unread() -> bytes:
        return b"".join(pieces[state["i"] :])

    return recv, unread


def random_case(draw, name: str) -> str:
    flips = draw(st.integers(0, (1 << len(name)) - 1))  # bit i upper-cases letter i: every casing, in one draw (was one per letter)
    return "".join(c.upper() if flips >> i & 1 else c for i, c in enumerate(name))


@dataclass
class Built:
    wire: bytes  # the bytes of the response
    status: int
    minor: int
    body: bytes
    keep_alive: bool
    until_close: bool  # the body ends where the stream ends
    head_len: int  # bytes up to and including the final response's CRLF CRLF
    usual: bool = False  # what complete_simple must take: HTTP/1.1, Content-Length, no interim, not 204/304


@st.composite
def responses(draw) -> Built:
    minor = draw(st.sampled_from([1, 1, 1, 0]))
    status = draw(st.sampled_from([200, 200, 201, 204, 206, 301, 304, 404, 429, 500, 503]) | st.integers(200, 599))
    framing = draw(st.sampled_from(["length", "chunked", "close"] if minor == 1 else ["length", "close"]))
    conn_close = draw(st.booleans()) if minor == 1 else False
    conn_keep = draw(st.booleans()) if minor == 0 else False
    no_body = status in (204, 304)
    body = b"" if no_body else draw(st.binary(max_size=3000) | st.sampled_from([b"", b"x", b"\r\n\r\n", b"0\r\n\r\n"]))
    headers: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.text(TOKEN_CHARS, min_size=1, max_size=12))
        if name.lower() in FRAMING:
            continue
        value = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
        headers.append((name, value))
    if (not no_body or (status == 304 and draw(st.booleans()))) and framing == "length":
        headers.insert(draw(st.integers(0, len(headers))), (random_case(draw, "content-length"), f"{draw(st.sampled_from(['', ' ', '  ']))}{len(body)}"))
    if framing == "chunked" and not no_body:
        headers.insert(draw(st.integers(0, len(headers))), (random_case(draw, "transfer-encoding"), draw(st.sampled_from(["chunked", "Chunked", " chunked "]))))
    if minor == 1 and draw(st.booleans()):
        # Connection fields without a "close" token (the connection stays), before or after the one with it
        for value in draw(st.lists(st.sampled_from(["keep-alive", "Keep-Alive", "foo, bar", "closed", "x-close", "close-ish", " ,"]), min_size=1, max_size=2)):
            headers.insert(draw(st.integers(0, len(headers))), (random_case(draw, "connection"), value))
    if conn_close:
        close_values = ["close", "Close", "keep-alive, close", " close ", "foo ,\tCLOSE", "close,", "a,close,b"]
        headers.append((random_case(draw, "connection"), draw(st.sampled_from(close_values))))
    if conn_keep:
        headers.append((random_case(draw, "connection"), "keep-alive"))
    reason = draw(st.sampled_from(["OK", "", "Some Reason", "x"]))
    status_line = f"HTTP/1.{minor} {status}" + (f" {reason}" if reason or draw(st.booleans()) else "")
    head = "\r\n".join([status_line, *(f"{n}:{' ' if draw(st.booleans()) else ''}{v}" for n, v in headers)]) + "\r\n\r\n"
    interim = b""
    if minor == 1 and draw(st.booleans()):
        interim = b"HTTP/1.1 100 Continue\r\n\r\n" * draw(st.integers(1, 2))
    if no_body:
        payload = b""
    elif framing == "chunked":
        payload = b""
        rest = body
        while rest:
            n = draw(st.integers(1, max(1, len(rest))))
            ext = draw(st.sampled_from(["", ";a=b", " ;x"]))
            payload += f"{n:x}{ext}\r\n".encode() + rest[:n] + b"\r\n"
            rest = rest[n:]
        payload += b"0\r\n"
        if draw(st.booleans()):
            payload += b"X-Trailer: yes\r\n"
        payload += b"\r\n"
    else:
        payload = body
    until_close = framing == "close" and not no_body
    if no_body:
        keep = not conn_close and (minor == 1 or conn_keep)
    else:
        keep = not conn_close and not until_close and (minor == 1 or conn_keep)
    wire = interim + head.encode("latin-1") + payload
    usual = minor == 1 and not interim and framing == "length" and status not in (204, 304)
    return Built(wire, status, minor, body, keep, until_close, len(interim) + len(head), usual)


cuts = st.lists(st.integers(0, 4000), max_size=12)


def check(built: Built, response: Response) -> None:
    assert response.status == built.status
    assert response.version == built.minor
    assert response.body_bytes == len(built.body)
    assert response.keep_alive == built.keep_alive


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), cuts, st.booleans())
def test_reads_every_fragmentation(built: Built, splits: list[int], keep_body: bool) -> None:
    recv, unread = feeder(built.wire, splits)
    response, rest = read_response(recv, keep_body=keep_body)
    check(built, response)
    if keep_body:
        assert response.body == built.body
    assert rest + unread() == b""


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), responses(), cuts)
def test_leaves_the_next_response_alone(first: Built, second: Built, splits: list[int]) -> None:
    """Bytes after a response (pipelined, or the next one) come back untouched."""
    if first.until_close:
        return  # such a body runs to the end of the stream by definition
    recv, unread = feeder(first.wire + second.wire, splits)
    response, rest = read_response(recv)
    check(first, response)
    assert rest + unread() == second.wire
    # ... and the next response parses from there.
    recv2, _ = feeder(unread(), [])
    response2, _ = read_response(recv2, rest)
    check(second, response2)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), cuts, st.data())
def test_truncated_stream_is_closed(built: Built, splits: list[int], data) -> None:
    """A stream cut before the response ends fails as IncompleteResponse (kind `closed`)."""
    cut = data.draw(st.integers(0, len(built.wire) - 1))
    recv, _ = feeder(built.wire[:cut], splits)
    if built.until_close and cut >= built.head_len:
        # The end of the stream *is* the end of such a body: a shorter body, no error.
        response, _ = read_response(recv)
        assert response.body_bytes == cut - built.head_len
        assert not response.keep_alive
        return
    with pytest.raises(IncompleteResponse) as info:
        read_response(recv)
    assert info.value.started == (cut > 0)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), cuts)
def test_short_path_agrees_with_general_reader(built: Built, splits: list[int]) -> None:
    recv_a, unread_a = feeder(built.wire, splits)
    recv_b, unread_b = feeder(built.wire, splits)
    a, rest_a = read_response(recv_a)
    b, rest_b = http1._read_general(recv_b, b"", False, False)
    assert a == b
    assert rest_a + unread_a() == rest_b + unread_b()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), cuts, st.binary(max_size=40), st.data())
def test_complete_simple_agrees_with_reader(built: Built, splits: list[int], junk: bytes, data) -> None:
    """The lean engine's fast path (one whole usual response in a receive buffer) takes exactly
    the usual responses, only whole, and says what the general reader says about them."""
    wire = built.wire
    fast = http1.complete_simple(wire, len(wire))
    assert (fast is not None) == built.usual
    # the same in a larger, reused buffer with other bytes after the response
    assert http1.complete_simple(bytearray(wire + junk), len(wire)) == fast
    if fast is not None:
        status, head, length, keep = fast
        assert keep == built.keep_alive
        recv, unread = feeder(wire, splits)
        response, rest = read_response(recv)
        assert (response.status, response.body_bytes, response.keep_alive) == (status, length, keep)
        assert rest + unread() == b""
        assert head == built.head_len and head + length == len(wire)
    # a part of a response is never a whole one, nor is a response with more after it
    cut = data.draw(st.integers(0, len(wire) - 1))
    assert http1.complete_simple(wire, cut) is None
    assert http1.complete_simple(wire + b"x", len(wire) + 1) is None


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_complete_simple_on_garbage(data: bytes) -> None:
    """Any bytes: None, or a verdict the general reader shares."""
    fast = http1.complete_simple(data, len(data))
    if fast is not None:
        response, rest = read_response(feeder(data, [])[0])
        assert (response.status, response.body_bytes, response.keep_alive, rest) == (fast[0], fast[2], fast[3], b"")


@settings(max_examples=500)
@given(st.binary(max_size=300), cuts)
def test_garbage_never_crashes(data: bytes, splits: list[int]) -> None:
    """Any bytes: a response or an HTTPError, never another exception (recv is finite)."""
    recv, _ = feeder(data, splits)
    with contextlib.suppress(http1.HTTPError):
        read_response(recv)


@settings(max_examples=200)
@given(st.integers(0, 100_000), cuts)
def test_head_request_reads_no_body(length: int, splits: list[int]) -> None:
    wire = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode() + b"NEXT"
    recv, unread = feeder(wire, splits)
    response, rest = read_response(recv, head_request=True)
    assert response.body_bytes == 0 and response.keep_alive
    assert rest + unread() == b"NEXT"


def one(wire: bytes, **kw) -> Response:
    return read_response(feeder(wire, [])[0], **kw)[0]


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ],
)
def test_accepts(wire: bytes) -> None:
    assert one(wire).status == 200


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 099 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\nContent-Length: 0\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 0\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n", "not followed by CRLF"),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.0"),
    ],
)
def test_rejects(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        one(wire)


def test_chunked_wins_over_length_and_closes() -> None:
    r = one(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert r.body_bytes == 3 and not r.keep_alive


def test_other_final_coding_reads_until_close() -> None:
    r = one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabcdef")
    assert r.body_bytes == 6 and not r.keep_alive


def test_close_before_any_byte() -> None:
    with pytest.raises(IncompleteResponse) as info:
        one(b"")
    assert not info.value.started


def test_headers_are_parsed_on_demand() -> None:
    r = one(b"HTTP/1.1 503 Service Unavailable\r\nX-Lbbench-Server: srv1\r\ncontent-length: 2\r\n\r\nno")
    assert r.status == 503 and r.reason == b"Service Unavailable"
    assert r.header(b"x-lbbench-server") == b"srv1"
    assert r.headers() == [(b"x-lbbench-server", b"srv1"), (b"content-length", b"2")]


def test_large_chunk_is_counted_without_keeping() -> None:
    size = 1 << 20
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{size:x}\r\n".encode() + b"y" * size + b"\r\n0\r\n\r\n"
    recv, _ = feeder(wire, list(range(100, len(wire), 16384)))
    response, rest = read_response(recv)
    assert response.body_bytes == size and response.keep_alive and rest == b""
