"""`bench run --metrics-port N`: the run's live figures as Prometheus / OpenMetrics text.

Served on ``http://HOST:N/metrics`` (HOST defaults to 127.0.0.1) from the
moment ``bench run`` starts until it exits, by prometheus_client's server (it
answers OpenMetrics when the scraper asks for it in ``Accept``). Every family
is computed at scrape time from the live view's latest snapshot
(:mod:`bench.live.state`), so scraping costs the load generator nothing.
The families are listed in docs/metrics.md.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ..errors import UserError
from ..results.histogram import bucket_bounds
from .state import WINDOW_S, LiveState, Snapshot

#: Upper bounds (seconds) of the request-latency histogram exported to Prometheus.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: `show stat` fields exported per proxy/server: (field, family suffix, help, counter?).
STAT_FIELDS = (
    ("scur", "current_sessions", "current sessions", False),
    ("qcur", "current_queue", "requests waiting in the queue", False),
    ("stot", "sessions", "sessions", True),
    ("req_tot", "http_requests", "HTTP requests", True),
    ("conn_tot", "connections", "connections", True),
    ("econ", "connection_errors", "errors connecting to a server", True),
    ("eresp", "response_errors", "response errors", True),
    ("hrsp_5xx", "http_responses_5xx", "HTTP 5xx responses", True),
    ("bin", "bytes_in", "bytes in", True),
    ("bout", "bytes_out", "bytes out", True),
)
_TYPES = {0: "frontend", 1: "backend", 2: "server", 3: "listener"}


class RunCollector(Collector):
    """prometheus_client collector over the current run's :class:`LiveState`."""

    def __init__(self) -> None:
        self.state: LiveState | None = None
        self.snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def watch(self, state: LiveState | None) -> None:
        with self._lock:
            self.state, self.snapshot = state, None

    def update(self, snap: Snapshot) -> None:
        """A sink of the live view: keep the newest snapshot."""
        with self._lock:
            self.snapshot = snap

    def collect(self) -> Iterator[Any]:
        with self._lock:
            state, snap = self.state, self.snapshot
        if state is None or snap is None:
            up = GaugeMetricFamily("lbbench_run_active", "1 while a run's load phase is being watched", value=0)
            yield up
            return
        labels = {"run": snap.run_id or "", "lab": snap.lab or ""}
        ln, lv = list(labels), list(labels.values())

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily | None:
            if value is None:
                return None
            g = GaugeMetricFamily(name, doc, labels=ln)
            g.add_metric(lv, float(value))
            return g

        active = GaugeMetricFamily("lbbench_run_active", "1 while a run's load phase is being watched", labels=[*ln, "phase"])
        active.add_metric([*lv, snap.phase], 1.0)
        yield active
        for fam in (
            gauge("lbbench_run_elapsed_seconds", "seconds since the load started", snap.elapsed_s),
            gauge("lbbench_run_left_seconds", "seconds of load left", snap.left_s),
            gauge("lbbench_load_target", "the load model's target now (req/s, conn/s or handshakes/s)", snap.target),
            gauge("lbbench_client_requests_per_second", f"client requests started per second, the load's last {WINDOW_S} s (fewer in its first seconds)", snap.requests_per_s),
            gauge("lbbench_client_new_connections_per_second", f"client connections opened per second, the load's last {WINDOW_S} s (fewer in its first seconds)", snap.conn_new_per_s),
        ):
            if fam is not None:
                yield fam
        q = GaugeMetricFamily("lbbench_client_latency_window_seconds", f"latency of successful requests, the load's last {WINDOW_S} s (fewer in its first seconds)", labels=[*ln, "quantile"])
        for quant, v in (("0.5", snap.p50_ms), ("0.99", snap.p99_ms)):
            if v is not None:
                q.add_metric([*lv, quant], v / 1000.0)
        yield q
        t = snap.totals
        req = CounterMetricFamily("lbbench_client_requests", "client requests by outcome (ok, or the error kind)", labels=[*ln, "outcome"])
        req.add_metric([*lv, "ok"], float(t["ok"]))
        for kind, count in sorted(t["errors"].items()):
            req.add_metric([*lv, kind], float(count))
        yield req
        conn = CounterMetricFamily("lbbench_client_new_connections", "client connections opened", labels=ln)
        conn.add_metric(lv, float(t["conn_new"]))
        yield conn
        yield self._histogram(state, ln, lv, t)
        if snap.cpu_by_container:
            cpu = GaugeMetricFamily("lbbench_cpu_percent", "CPU of each container, % of one core (last sample)", labels=[*ln, "container", "role"])
            for name, (role, pct) in sorted(snap.cpu_by_container.items()):
                cpu.add_metric([*lv, name, role], pct)
            yield cpu
        vip = GaugeMetricFamily("lbbench_vip_holder", "1 for each LB node holding the VIP", labels=[*ln, "node"])
        for node in snap.vip_holders:
            vip.add_metric([*lv, node], 1.0)
        yield vip
        faults = CounterMetricFamily("lbbench_fault_events", "fault injections and recoveries so far", labels=[*ln, "kind"])
        for kind in ("fault", "recovery"):
            faults.add_metric([*lv, kind], float(sum(1 for e in snap.events if e.get("kind") == kind)))
        yield faults
        if snap.thresholds:
            th = GaugeMetricFamily("lbbench_threshold_ok", "1 when a threshold holds on the live figures, 0 when not (absent: judged at the end)", labels=[*ln, "threshold"])
            for r in snap.thresholds:
                if r["status"] in ("pass", "fail"):
                    th.add_metric([*lv, r["threshold"]], 1.0 if r["status"] == "pass" else 0.0)
            yield th
        yield from self._haproxy(state, ln, lv)

    @staticmethod
    def _histogram(state: LiveState, ln: list[str], lv: list[str], t: dict[str, Any]) -> HistogramMetricFamily:
        with state._lock:
            counts = dict(state.total_hist.counts)
        cum = [0] * len(LATENCY_BUCKETS_S)
        for bucket, count in counts.items():
            upper_s = bucket_bounds(bucket)[1] / 1000.0
            for i, le in enumerate(LATENCY_BUCKETS_S):
                if upper_s <= le + 1e-12:
                    cum[i] += count
        buckets = [(f"{le:g}", c) for le, c in zip(LATENCY_BUCKETS_S, cum, strict=True)]
        buckets.append(("+Inf", sum(counts.values())))
        h = HistogramMetricFamily("lbbench_client_latency_seconds", "latency of successful requests", labels=ln)
        h.add_metric(lv, buckets, sum_value=float(t["latency_sum_s"]))
        return h

    @staticmethod
    def _haproxy(state: LiveState, ln: list[str], lv: list[str]) -> Iterator[Any]:
        with state._lock:
            info = {s: dict(v) for s, v in state.haproxy.items()}
            kinds = dict(state.haproxy_kind)
            stat = {k: dict(v) for k, v in state.haproxy_stat.items()}
        if info:
            gauge = GaugeMetricFamily("lbbench_haproxy_info", "HAProxy `show info` figures per process (ConnRate, SslFrontendKeyRate ...)", labels=[*ln, "service", "kind", "field"])
            for service, metrics in sorted(info.items()):
                for metric, value in sorted(metrics.items()):
                    gauge.add_metric([*lv, service, kinds.get(service, ""), metric], value)
            yield gauge
        for field, suffix, doc, counter in STAT_FIELDS:
            cls: type[CounterMetricFamily] | type[GaugeMetricFamily] = CounterMetricFamily if counter else GaugeMetricFamily
            fam = cls(f"lbbench_haproxy_{suffix}", f"HAProxy `show stat` {doc}", labels=[*ln, "service", "proxy", "server", "type"])
            for (service, px, sv), row in sorted(stat.items()):
                v = row.get(field)
                if v is not None and v == v:  # NaN: HAProxy left the field empty for this row
                    fam.add_metric([*lv, service, px, sv, _TYPES.get(int(row.get("type", -1.0)), "")], v)
            yield fam


class MetricsServer:
    """The endpoint; bind it with :meth:`start` before anything else starts (a port in use is one clear line)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        if not 0 < port < 65536:
            raise UserError(f"--metrics-port {port}: not a TCP port", "use a port between 1 and 65535, e.g. --metrics-port 9464")
        self.port, self.host = port, host
        self.collector = RunCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server: Any = None

    def start(self) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--metrics-port {self.port}: {self.host}:{self.port} is already in use", "pick another port, or stop what listens there") from None
            if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
                raise UserError(f"--metrics-host {self.host} --metrics-port {self.port}: cannot listen there ({exc.strerror or exc})", "use an address of this machine and a free port") from None
            raise

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
