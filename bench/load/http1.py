"""A minimal, strict HTTP/1.1 response reader for the lean load engine.

It reads exactly one response from a byte source and says how long the body
was and whether the connection may carry another request; it never keeps the
body unless asked. No sockets here: the source is any ``recv()`` callable that
returns the next bytes (``b""`` at end of stream), so tests can feed it any
fragmentation of any response.

What it implements (RFC 9112):

- status line ``HTTP/1.x NNN reason``; interim 1xx responses (except 101) are skipped;
- header fields ``name: value`` (CRLF line ends; obsolete line folding and
  whitespace before the colon are protocol errors);
- body length: none for HEAD, 1xx, 204 and 304; ``Transfer-Encoding: chunked``
  (chunk extensions and trailers skipped; it wins over ``Content-Length``, and
  such a connection is not reused); ``Content-Length`` (several equal values
  are fine, differing ones are an error); otherwise until the server closes;
- persistence: HTTP/1.1 keeps the connection unless ``Connection: close``;
  HTTP/1.0 only with ``Connection: keep-alive``; a body delimited by the close
  never leaves a reusable connection.

A stream that ends before the response is complete raises
:class:`IncompleteResponse` (error kind ``closed``); a malformed one raises
:class:`ProtocolError` (error kind ``other``).

>>> chunks = iter([b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhel", b"lo"])
>>> response, rest = read_response(lambda: next(chunks, b""))
>>> response.status, response.body_bytes, response.keep_alive, rest
(200, 5, True, b'')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

#: Largest status line + header block we accept.
MAX_HEAD = 65536
#: Largest chunk-size line (size, extensions) we accept.
MAX_CHUNK_LINE = 4096
#: Most interim (1xx) responses we skip before the final one.
MAX_INTERIM = 16

Recv = Callable[[], bytes]


class HTTPError(Exception):
    """Base of the errors of this module."""


class ProtocolError(HTTPError):
    """The response is not valid HTTP/1.x (error kind ``other``)."""


class IncompleteResponse(HTTPError):
    """The stream ended before the response was complete (error kind ``closed``).

    ``started`` is False when the server closed without sending a single byte
    of the response (for example an idle keep-alive connection it had just
    timed out), True when it stopped part-way (in the head or the body).
    """

    def __init__(self, message: str, started: bool = True):
        super().__init__(message)
        self.started = started


class Response(NamedTuple):
    """One parsed response."""

    status: int
    version: int  # minor version: 1 for HTTP/1.1, 0 for HTTP/1.0
    reason: bytes
    head: bytes  # the raw header lines, each ending in CRLF (parse with headers())
    body_bytes: int
    keep_alive: bool  # the connection may carry another request
    body: bytes | None  # only with keep_body=True

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Header fields in order: (lower-cased name, value without surrounding whitespace)."""
        return parse_header_block(self.head)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers():
            if key == name:
                return value
        return None


_NO_BODY_STATUS = frozenset((204, 304))

# The whole head in one C-level match: status line, then header lines "token:value".
# Anything else (obsolete line folding, whitespace before the colon, bare CR or LF,
# a bad status line) fails to match and is a protocol error.
_HEAD = re.compile(
    rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*\r\n)*)\r\n"
)


_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_OTHER_FIELD = rb"(?!(?i:content-length|transfer-encoding):)" + _TOKEN + rb":[^\r\n]*\r\n"
# The usual response in one match: HTTP/1.1, exactly one Content-Length, no
# Transfer-Encoding. Groups: status, reason, header block, length.
_SIMPLE_HEAD = re.compile(
    rb"HTTP/1\.1 ([0-9]{3})(?: ([^\r\n]*))?\r\n"
    rb"((?:" + _OTHER_FIELD + rb")*(?i:content-length):[ \t]*([0-9]+)[ \t]*\r\n(?:" + _OTHER_FIELD + rb")*)\r\n"
)
# A Connection field (at the start of a header line) one of whose comma-separated
# tokens is "close", in any case, with optional whitespace around it.
_CONNECTION_CLOSE = re.compile(rb"(?<=\n)(?i:connection):(?:[^\r\n]*,)?[ \t]*(?i:close)[ \t]*(?:,[^\r\n]*)?\r\n")


def complete_simple(buf: bytes | bytearray, n: int) -> tuple[int, int, int, bool] | None:
    """``(status, head length, body length, keep-alive)`` when ``buf[:n]`` is exactly one usual response, else None.

    "Usual" is what :func:`read_response`'s short path takes: HTTP/1.1, exactly
    one Content-Length, no Transfer-Encoding field, a final status other than
    204 and 304. It keeps the connection unless a Connection field says
    ``close``. "Exactly" means the head and its Content-Length body bytes,
    nothing before or after. ``buf`` may be longer than ``n`` (a reusable
    receive buffer).

    None says nothing is wrong, only that this function cannot tell: read the
    bytes with :func:`read_response`, which gives the same status, length and
    keep-alive for anything this accepts (the property tests hold it to that).

    >>> complete_simple(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi", 40)
    (200, 38, 2, True)
    >>> complete_simple(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n", 57)
    (200, 57, 0, False)
    """
    # Matching up to n, not up to the first CRLF CRLF, is the same: no header line
    # can be empty, so a match always ends at the first empty line.
    m = _SIMPLE_HEAD.match(buf, 0, n)
    if m is None:
        return None
    status = int(m.group(1))
    head = m.end()
    length = int(m.group(4))
    if head + length != n or status < 200 or status == 204 or status == 304 or head - 4 > MAX_HEAD:
        return None
    return status, head, length, _CONNECTION_CLOSE.search(buf, m.start(3), head) is None


def parse_header_block(block: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines (each ending in CRLF, as matched by the head pattern) as (name, value) pairs."""
    out = []
    for line in block.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        out.append((name.lower(), value.strip(b" \t")))
    return out


def _bad_head(head: bytes) -> ProtocolError:
    """A ProtocolError naming what is wrong with a head that did not match."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not re.fullmatch(rb"HTTP/1\.[01] [0-9]{3}(?: [^\r\n]*)?", status_line):
        return ProtocolError(f"bad status line {status_line[:80]!r}")
    for line in lines[1:]:
        if line and not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*", line):
            return ProtocolError(f"bad header line {line[:80]!r}")
    return ProtocolError(f"bad response head {head[:80]!r}")


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip(b" \t").lower() for t in value.split(b",") if t.strip(b" \t")]


def read_response(
    recv: Recv,
    buf: bytes = b"",
    head_request: bool = False,
    keep_body: bool = False,
) -> tuple[Response, bytes]:
    """Read one response; return it and the bytes that arrived after it.

    ``buf`` holds bytes already received (the rest of an earlier read).
    ``head_request`` says the request was HEAD (no body follows whatever the
    headers say); ``keep_body`` keeps the body in :attr:`Response.body`.
    Raises :class:`IncompleteResponse` or :class:`ProtocolError`; exceptions of
    ``recv`` (timeouts, resets) pass through.

    The usual response (HTTP/1.1, one Content-Length, no Transfer-Encoding
    field) takes a short path; everything
    else, and every error, goes through the general reader. Both give the same
    result for the same bytes (the property tests hold them to it).
    """
    if not buf:
        buf = recv()
        if not buf:
            raise IncompleteResponse("connection closed before any response byte", started=False)
    end = buf.find(b"\r\n\r\n")
    if end < 0 or head_request or keep_body or end > MAX_HEAD:
        return _read_general(recv, buf, head_request, keep_body)
    m = _SIMPLE_HEAD.match(buf, 0, end + 4)
    if m is not None:
        code, reason, block, value = m.groups()
        status = int(code)
        if status >= 200 and status != 204 and status != 304:
            length = int(value)
            have = len(buf) - end - 4
            keep = _CONNECTION_CLOSE.search(buf, m.start(3), m.end()) is None
            if have == length:  # the whole response in hand, nothing after it
                return Response(status, 1, reason or b"", block, length, keep, None), b""
            if have < length:
                _, rest = _read_length(recv, buf[end + 4 :], length, None)
                return Response(status, 1, reason or b"", block, length, keep, None), rest
    return _read_general(recv, buf, head_request, keep_body)


def _read_general(recv: Recv, buf: bytes, head_request: bool, keep_body: bool) -> tuple[Response, bytes]:
    """The general reader: interim responses, every framing, every check."""
    received = len(buf)
    for _ in range(MAX_INTERIM + 1):
        # ---- head
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
            data = recv()
            if not data:
                if received:
                    raise IncompleteResponse(f"connection closed in the response head ({received} bytes)")
                raise IncompleteResponse("connection closed before any response byte", started=False)
            received += len(data)
            # Search only the new bytes (and the 3 before them) for the end of the head.
            start = len(buf) - 3 if len(buf) > 3 else 0
            buf += data
            end = buf.find(b"\r\n\r\n", start)
        if end > MAX_HEAD:
            raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
        m = _HEAD.match(buf, 0, end + 4)
        if m is None:
            raise _bad_head(buf[:end])
        minor_text, status_text, reason, block = m.groups()
        status = int(status_text)
        buf = buf[end + 4 :]
        if status < 100:
            raise ProtocolError(f"bad status code {status}")
        if 100 <= status < 200 and status != 101:
            continue  # interim response: the final one follows
        break
    else:
        raise ProtocolError(f"more than {MAX_INTERIM} interim responses")
    minor = 1 if minor_text == b"1" else 0
    reason = reason or b""

    # ---- framing
    length = -1
    te_seen = False
    codings: list[bytes] = []
    close = minor == 0 or status == 101
    for name, value in parse_header_block(block):
        if name == b"content-length":
            if not value.isdigit():
                # "5, 5" is allowed when every value is the same
                parts = {p.strip(b" \t") for p in value.split(b",")}
                if len(parts) != 1 or not next(iter(parts)).isdigit():
                    raise ProtocolError(f"bad Content-Length {value[:40]!r}")
                n = int(next(iter(parts)))
            else:
                n = int(value)
            if length >= 0 and n != length:
                raise ProtocolError(f"conflicting Content-Length values {length} and {n}")
            length = n
        elif name == b"transfer-encoding":
            te_seen = True
            codings += _tokens(value)  # several fields form one list
        elif name == b"connection":
            tokens = _tokens(value)
            if b"close" in tokens:
                close = True
            elif minor == 0 and b"keep-alive" in tokens:
                close = False
    chunked = bool(codings) and codings[-1] == b"chunked"
    if te_seen:
        if minor == 0:
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 response")
        if length >= 0:
            close = True  # both framings present: do not trust this connection again

    body_parts: list[bytes] | None = [] if keep_body else None
    if head_request or status in _NO_BODY_STATUS or status < 200:
        nbytes = 0
    elif te_seen and chunked:
        nbytes, buf = _read_chunked(recv, buf, body_parts)
    elif te_seen:
        # a final coding other than chunked: the body ends when the server closes
        nbytes, buf = _read_to_close(recv, buf, body_parts)
        close = True
    elif length >= 0:
        nbytes, buf = _read_length(recv, buf, length, body_parts)
    else:
        nbytes, buf = _read_to_close(recv, buf, body_parts)
        close = True
    body = b"".join(body_parts) if body_parts is not None else None
    return Response(status, minor, reason, block, nbytes, not close, body), buf


def _read_length(recv: Recv, buf: bytes, length: int, parts: list[bytes] | None) -> tuple[int, bytes]:
    have = len(buf)
    if have >= length:
        if parts is not None:
            parts.append(buf[:length])
        return length, buf[length:]
    if parts is not None:
        parts.append(buf)
    while True:
        data = recv()
        if not data:
            raise IncompleteResponse(f"connection closed after {have} of {length} body bytes")
        n = len(data)
        if have + n >= length:
            take = length - have
            if parts is not None:
                parts.append(data[:take])
            return length, data[take:]
        have += n
        if parts is not None:
            parts.append(data)


def _read_to_close(recv: Recv, buf: bytes, parts: list[bytes] | None) -> tuple[int, bytes]:
    total = len(buf)
    if parts is not None:
        parts.append(buf)
    while True:
        data = recv()
        if not data:
            return total, b""
        total += len(data)
        if parts is not None:
            parts.append(data)


def _read_line(recv: Recv, buf: bytes, what: str) -> tuple[bytes, bytes]:
    """One CRLF-terminated line from ``buf`` + ``recv``: (line without CRLF, rest)."""
    end = buf.find(b"\r\n")
    while end < 0:
        if len(buf) > MAX_CHUNK_LINE:
            raise ProtocolError(f"{what} longer than {MAX_CHUNK_LINE} bytes")
        data = recv()
        if not data:
            raise IncompleteResponse(f"connection closed in a {what}")
        start = max(0, len(buf) - 1)
        buf += data
        end = buf.find(b"\r\n", start)
    return buf[:end], buf[end + 2 :]


def _read_chunked(recv: Recv, buf: bytes, parts: list[bytes] | None) -> tuple[int, bytes]:
    total = 0
    while True:
        line, buf = _read_line(recv, buf, "chunk-size line")
        size_text = line.split(b";", 1)[0].strip(b" \t")
        try:
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise ValueError
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
        if size == 0:
            break
        # chunk data, then CRLF
        while len(buf) < size + 2:
            data = recv()
            if not data:
                raise IncompleteResponse(f"connection closed in a chunk ({total} body bytes so far)")
            if parts is None and len(buf) + len(data) < size:
                # Large chunk: count the bytes without keeping them.
                size -= len(buf) + len(data)
                total += len(buf) + len(data)
                buf = b""
                continue
            buf += data
        if buf[size : size + 2] != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF")
        if parts is not None:
            parts.append(buf[:size])
        total += size
        buf = buf[size + 2 :]
    # trailer section: header lines up to an empty line
    for _ in range(256):
        line, buf = _read_line(recv, buf, "trailer line")
        if not line:
            return total, buf
        if b":" not in line:
            raise ProtocolError(f"bad trailer line {line[:80]!r}")
    raise ProtocolError("too many trailer lines")
