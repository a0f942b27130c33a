"""Locust users that drive the lab through its VIP.

Settings arrive in the ``LBBENCH_LOAD`` environment variable (JSON) written by
:mod:`bench.load.runner`, so the same locustfile serves every scenario:

    {"ca": "/path/ca.pem", "path": "/?size=1024", "think_time": 0.0,
     "run_dir": "/path/to/run", "timeout": 5.0}

TLS is always verified against the run's CA (no ``insecure``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.ssl
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from .capture import TRACE_HEADER


def settings() -> dict[str, Any]:
    """The load settings of this Locust process."""
    return json.loads(os.environ.get("LBBENCH_LOAD", "{}"))


def check_lab_host(host: str) -> None:
    """Refuse any target outside the lab range (198.18.0.0/15) or loopback."""
    name = urlsplit(host).hostname or ""
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        raise StopUser(f"lbbench only sends load to lab addresses, got host {name!r}") from None
    if not (addr in ipaddress.ip_network("198.18.0.0/15") or addr.is_loopback):
        raise StopUser(f"lbbench only sends load to 198.18.0.0/15 or loopback, got {addr}")


_S = settings()


def lab_ssl_context(*_args: Any, **_kwargs: Any) -> gevent.ssl.SSLContext:
    """A verifying TLS context trusting only the run's CA.

    geventhttpclient passes its own ``cafile`` (certifi's bundle); ignore it, the
    lab's CA is the only one that may vouch for the VIP.
    """
    ctx = gevent.ssl.create_default_context(cafile=_S.get("ca"))
    if _S.get("server_name"):
        # A user's own certificate names a host, not the lab's VIP, and geventhttpclient
        # sends no SNI for an address: the chain is still verified against the user's CA
        # (CERT_REQUIRED); the lean engine checks the name too.
        ctx.check_hostname = False
    return ctx


def _track_new_connections() -> None:
    """Mark the running greenlet whenever geventhttpclient opens a connection.

    A FastHttpUser sends its requests from its own greenlet, one at a time, and
    Locust fires the request event in that greenlet right after the response, so
    a flag on the greenlet tells the capture whether this request opened a
    connection (``conn_new``).
    """
    from geventhttpclient.connectionpool import ConnectionPool

    if getattr(ConnectionPool, "_lbbench_tracked", False):
        return
    original = ConnectionPool.after_connect

    def after_connect(self: Any, sock: Any) -> None:
        gevent.getcurrent().lbbench_conn_new = True
        original(self, sock)

    ConnectionPool.after_connect = after_connect  # type: ignore[method-assign]
    ConnectionPool._lbbench_tracked = True  # type: ignore[attr-defined]


_track_new_connections()


class KeepAliveUser(FastHttpUser):
    """Keep-alive HTTPS client: one connection per user, reused for every request (Locust FastHttpUser)."""

    insecure = False
    max_retries = 0
    network_timeout = float(_S.get("timeout", 5.0))
    connection_timeout = float(_S.get("timeout", 5.0))
    wait_time = constant(float(_S.get("think_time", 0.0)))
    ssl_context_factory = staticmethod(lab_ssl_context)

    def on_start(self) -> None:
        check_lab_host(self.host or "")

    @task
    def get(self) -> None:
        glet = gevent.getcurrent()
        glet.lbbench_conn_new = False
        headers = None
        trace_id = None
        trace = TRACE
        if trace.tracer is not None:
            trace.left -= 1
            if trace.left == 0:
                # traced through every hop (bench/load/capture.py Tracer); the capture reads the id off the greenlet
                trace_id = trace.tracer.take()
                glet.lbbench_trace = trace_id
                headers = {TRACE_HEADER: trace.tracer.value(trace_id)}
                trace.left = trace.tracer.countdown()
        name = _S.get("name", "GET")
        t0 = time.time()
        try:
            self.client.get(_S.get("path", "/"), name=name, headers=headers)
        except gevent.GreenletExit:
            # Locust stopped this user mid-request (the load ended): no request event will come for it
            capture = TRACE.capture
            if capture is not None:
                if trace_id is not None:
                    glet.lbbench_trace = None
                capture.unfinished(t0, name, "", glet.lbbench_conn_new or None, None, trace_id)
            raise


class _Countdown:
    """The process's requests until the next traced one (FastHttpUser side of a Tracer)."""

    def __init__(self) -> None:
        self.tracer: Any = None
        self.left = -1
        #: the process's RequestCapture, for the requests a stopped user drops unanswered (None: not recorded)
        self.capture: Any = None

    def attach(self, tracer: Any) -> None:
        self.tracer = tracer
        self.left = tracer.countdown()


#: Attached by the locustfile once the capture exists (no tracer: no tracing, e.g. without a run directory).
TRACE = _Countdown()


def attach_tracer(tracer: Any) -> None:
    """Trace FastHttpUser requests with ``tracer`` (a :class:`bench.load.capture.Tracer`)."""
    TRACE.attach(tracer)


def attach_capture(capture: Any) -> None:
    """FastHttpUser requests go to ``capture`` (a :class:`bench.load.capture.RequestCapture`): traced by its
    tracer, and those a stopped user drops unanswered as unfinished (its request events record the others)."""
    TRACE.attach(capture.tracer)
    TRACE.capture = capture
