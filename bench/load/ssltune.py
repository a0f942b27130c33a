"""Two OpenSSL settings Python's ``ssl`` module does not expose, for the lean engine's TLS.

- **Read-ahead** (``SSL_CTX_set_read_ahead``) on a client context: a TLS
  socket reads what the kernel has in one ``read()`` (several records at
  once) instead of one ``read()`` for a record's 5-byte header and another
  for its body. A keep-alive response then costs one read system call, as
  with the memory BIOs before. What OpenSSL read ahead is still read first by
  the next ``SSLSocket.read()``, so the engine always reads before it waits.
- **Keeping the record buffers** (``SSL_clear_mode(SSL_MODE_RELEASE_BUFFERS)``)
  on one connection: Python sets ``SSL_MODE_RELEASE_BUFFERS`` on every
  context, so OpenSSL allocates and frees a 16 KiB buffer for every record it
  reads or writes (about 1.1k instructions per keep-alive request). A
  keep-alive connection keeps them (about 34 KiB); held connections, which
  idle and can be many, do not.

Both are set through :mod:`ctypes` on the C objects the ``ssl`` module made,
from the libssl that ``_ssl`` itself is linked to. CPython's layout of those
objects (``PySSLContext``: the ``SSL_CTX *`` right after the object header;
``PySSLSocket``: the ``SSL *`` after the header and one pointer) has not
changed since 3.7; it is only used on CPython 3.11 to 3.14, and only once the
pointer it finds is checked: the context's options and verify mode read
through OpenSSL must be the ones Python reports, and a connection's ``SSL *``
must belong to that context. Anything else (another interpreter, a libssl
without the functions) leaves OpenSSL's settings as Python made them: the
engine works the same, with one more ``read()`` per response and a buffer
allocation per record. :func:`status` says which applies.
"""

from __future__ import annotations

import _ssl
import ctypes
import platform
import ssl
import sys
import weakref
from typing import Any

# OpenSSL's SSL_ctrl / SSL_CTX_ctrl commands and mode bits (ssl.h; stable ABI since 1.0)
_SSL_CTRL_MODE = 33
_SSL_CTRL_GET_READ_AHEAD = 40
_SSL_CTRL_SET_READ_AHEAD = 41
_SSL_CTRL_CLEAR_MODE = 78
SSL_MODE_RELEASE_BUFFERS = 0x10

_HEAD = object.__basicsize__  # PyObject_HEAD
_PTR = ctypes.sizeof(ctypes.c_void_p)


def _load() -> Any:
    """libssl's functions as ``_ssl`` sees them (dlsym on ``_ssl`` finds its libssl), or None."""
    if platform.python_implementation() != "CPython" or not (3, 11) <= sys.version_info[:2] <= (3, 14):
        return None
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        for name, res, args in (
            ("SSL_CTX_ctrl", ctypes.c_long, [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]),
            ("SSL_ctrl", ctypes.c_long, [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]),
            ("SSL_CTX_get_options", ctypes.c_uint64, [ctypes.c_void_p]),
            ("SSL_CTX_get_verify_mode", ctypes.c_int, [ctypes.c_void_p]),
            ("SSL_get_SSL_CTX", ctypes.c_void_p, [ctypes.c_void_p]),
        ):
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load()
#: the SSL_CTX pointers of the contexts :func:`tune_context` checked
_CONTEXTS: weakref.WeakKeyDictionary[ssl.SSLContext, int] = weakref.WeakKeyDictionary()


def _ctx_pointer(ctx: ssl.SSLContext) -> int | None:
    """The context's ``SSL_CTX *``, once checked against what Python reports of it; else None."""
    if _LIB is None:
        return None
    ptr = ctypes.c_void_p.from_address(id(ctx) + _HEAD).value
    if not ptr:
        return None
    options = int(_ssl._SSLContext.options.__get__(ctx))  # type: ignore[attr-defined]  # a C-level property
    verify = int(_ssl._SSLContext.verify_mode.__get__(ctx))  # type: ignore[attr-defined]
    if _LIB.SSL_CTX_get_options(ptr) != options or (_LIB.SSL_CTX_get_verify_mode(ptr) & 3) != (0, 1, 3)[verify]:
        # (CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED are SSL_VERIFY_NONE, _PEER, _PEER | _FAIL_IF_NO_PEER_CERT)
        return None
    return ptr


def tune_context(ctx: ssl.SSLContext) -> bool:
    """Read-ahead on for ``ctx`` (a client context); True when set (see the module's doc)."""
    ptr = _ctx_pointer(ctx)
    if ptr is None:
        return False
    _LIB.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_READ_AHEAD, 1, None)
    _CONTEXTS[ctx] = ptr
    return bool(_LIB.SSL_CTX_ctrl(ptr, _SSL_CTRL_GET_READ_AHEAD, 0, None))


def _pointers(tls: Any, ctx: ssl.SSLContext) -> tuple[int, int] | None:
    """(``SSL *`` of the connection ``tls``, ``SSL_CTX *`` of ``ctx``) when ``ctx`` was tuned and ``tls`` is its connection."""
    ctx_ptr = _CONTEXTS.get(ctx)
    if ctx_ptr is None:
        return None
    ssl_ptr = ctypes.c_void_p.from_address(id(tls) + _HEAD + _PTR).value
    if not ssl_ptr or _LIB.SSL_get_SSL_CTX(ssl_ptr) != ctx_ptr:
        return None
    return ssl_ptr, ctx_ptr


def keep_buffers(tls: Any, ctx: ssl.SSLContext) -> bool:
    """Have the connection ``tls`` (what ``ctx._wrap_socket`` made) keep its record buffers; True when done."""
    pointers = _pointers(tls, ctx)
    if pointers is None:
        return False
    _LIB.SSL_ctrl(pointers[0], _SSL_CTRL_CLEAR_MODE, SSL_MODE_RELEASE_BUFFERS, None)
    return True


def modes(tls: Any, ctx: ssl.SSLContext) -> tuple[int, int] | None:
    """(the connection's SSL mode bits, the context's read-ahead) of a tuned context's connection, for tests; else None."""
    pointers = _pointers(tls, ctx)
    if pointers is None:
        return None
    ssl_ptr, ctx_ptr = pointers
    return int(_LIB.SSL_ctrl(ssl_ptr, _SSL_CTRL_MODE, 0, None)), int(_LIB.SSL_CTX_ctrl(ctx_ptr, _SSL_CTRL_GET_READ_AHEAD, 0, None))


def status() -> str:
    """One line: whether the settings above apply in this interpreter."""
    if _LIB is None:
        return f"not available ({platform.python_implementation()} {platform.python_version()}): one read() per TLS record header and body"
    return "read-ahead and kept record buffers available"
