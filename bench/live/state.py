"""What a run looks like right now, read from its growing run directory.

The load generator (Locust, in its own processes) and the collectors already
append everything to ``samples/<table>/`` (one Arrow stream per writer, a batch
per second) and to ``events.jsonl``. :class:`LiveState` reads only the batches
appended since its last look (a few columns each), so watching a run costs the load
generator nothing but the page cache: no extra socket, no message, no lock in
its hot path. The live view (:mod:`bench.live.view`) and the metrics endpoint
(:mod:`bench.live.metrics`) both draw from one :class:`Snapshot`.

Client figures are per whole second of request start, over the last
:data:`WINDOW_S` seconds that are complete (a second is complete
:data:`SETTLE_S` seconds after it ended: the flush interval plus slack).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..results import store
from ..results.histogram import Histogram, buckets_of
from ..results.layout import RunDir

#: Seconds of client figures the live rates and percentiles cover.
WINDOW_S = 5
#: A second of requests is complete this long after it ended (1 s flush + slack).
SETTLE_S = 2.5
#: Columns read from each new requests chunk.
REQUEST_COLUMNS = ["t", "latency_ms", "error", "conn_new"]
#: HAProxy `show info` figures the live view and the metrics endpoint use.
INFO_METRICS = ("ConnRate", "SessRate", "SslRate", "SslFrontendKeyRate", "CurrConns", "CurrSslConns", "CumReq", "CumConns", "Idle_pct")
#: A sample (VIP, HAProxy, CPU) older than this, behind the newest of its kind, is stale: its node stopped answering.
STALE_S = 2.5
#: Roles of CPU shown, in this order.
CPU_ROLES = ("frontend", "backend", "monolith", "server", "keepalived", "loadgen", "loadgen-worker", "host")


class RunTail:
    """New rows of a run directory's tables, and new lines of its events file."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.layout = RunDir(self.run_dir)
        self._tails: dict[str, store.TableTail] = {}
        self._events_at = 0

    def new_chunks(self, table: str, columns: list[str] | None = None) -> list[dict[str, np.ndarray]]:
        """The rows of ``table`` written since the last call, as column name -> numpy array (none when nothing came).

        The first call returns what the table holds so far (a finished run: all of it,
        from its compacted file); later ones the batches its writers appended since.
        """
        tail = self._tails.get(table)
        if tail is None:
            tail = self._tails[table] = store.TableTail(self.run_dir, table, columns)
        try:
            tbl = tail.read_new()
        except (OSError, ValueError, KeyError, store.StoreError):
            return []  # a damaged file: the report names it
        return [self._columns(tbl)] if tbl.num_rows else []

    @staticmethod
    def _columns(tbl: pa.Table) -> dict[str, np.ndarray]:
        out = {}
        for name in tbl.column_names:
            col = tbl.column(name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            out[name] = col.to_numpy(zero_copy_only=False)
        return out

    def new_events(self) -> list[dict[str, Any]]:
        """Events appended to events.jsonl since the last call (a torn last line waits for the next call)."""
        path = self.layout.events
        try:
            with open(path, "rb") as fh:
                fh.seek(self._events_at)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._events_at += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


@dataclass
class _Second:
    """Requests that started in one second."""

    count: int = 0
    ok: int = 0
    conn_new: int = 0
    errors: Counter = field(default_factory=Counter)
    hist: Counter = field(default_factory=Counter)


@dataclass
class Snapshot:
    """Everything the live view and the metrics endpoint show, at one moment."""

    t: float
    phase: str
    load_phase: str | None
    elapsed_s: float | None
    left_s: float | None
    duration_s: float | None
    # client, over the last complete WINDOW_S seconds
    window_s: int
    requests_per_s: float | None
    ok_per_s: float | None
    errors_per_s: float | None
    errors_window: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    conn_new_per_s: float | None
    target: float | None
    target_field: str | None
    # client, cumulative
    totals: dict[str, Any]
    # lab
    haproxy: dict[str, float]
    cpu_pct: dict[str, float]
    cpu_by_container: dict[str, tuple[str, float]]
    host_cores: int
    vip_holders: list[str]
    vip_changes: int
    events: list[dict[str, Any]]
    thresholds: list[dict[str, Any]]
    run_id: str | None = None
    lab: str | None = None
    vip: str | None = None


class LiveState:
    """Aggregates of a growing run directory; :meth:`poll` reads what is new, :meth:`snapshot` sums it up.

    Thread-safe: one thread polls, any thread may take a snapshot.
    """

    def __init__(self, run_dir: Path, run: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.tail = RunTail(self.run_dir)
        self.run = run or {}
        self._lock = threading.Lock()
        self.seconds: dict[int, _Second] = defaultdict(_Second)
        self.total = _Second()
        self.steady = _Second()
        self.steady_hist = Histogram()
        self.total_hist = Histogram()
        self.latency_max_ms = 0.0
        self.latency_sum_s = 0.0
        self.steady_start: float | None = None
        self.load_start: float | None = None
        self.load_end: float | None = None
        self.phase = "starting"
        self.events: list[dict[str, Any]] = []
        self.target_phases: list[dict[str, Any]] = []
        self.cpu_last: dict[str, tuple[float, float, str]] = {}  # container -> (t, usage_s, role)
        self.cpu_pct: dict[str, tuple[str, float]] = {}  # container -> (role, pct)
        self.host_cores = 0
        self.haproxy: dict[str, dict[str, float]] = {}  # service -> metric -> value (latest)
        self.haproxy_kind: dict[str, str] = {}
        self.haproxy_t: dict[str, float] = {}  # service -> time of its latest sample
        self.haproxy_stat: dict[tuple[str, str, str], dict[str, float]] = {}
        self.vrrp: dict[str, tuple[float, bool]] = {}
        self.vip_changes = 0
        self._holders: tuple[str, ...] | None = None
        self.thresholds: list[Any] = []
        scenario = self.run.get("scenario") or {}
        if scenario.get("thresholds"):
            from ..thresholds import parse_thresholds

            try:
                self.thresholds = parse_thresholds(scenario["thresholds"])
            except ValueError:
                self.thresholds = []

    # ------------------------------------------------------------------ feeding

    def set_phase(self, phase: str, t: float | None = None) -> None:
        """The run's stage: ``lab up``, ``load``, ``stopping``, ``report``, ``done``."""
        with self._lock:
            self.phase = phase
            if phase == "load" and self.load_start is None:
                self.load_start = t or time.time()
            elif phase not in ("lab up", "load") and self.load_start is not None and self.load_end is None:
                self.load_end = t or time.time()

    def poll(self) -> None:
        """Read every new chunk and event (call about once a second)."""
        requests = self.tail.new_chunks("requests", REQUEST_COLUMNS)
        cpu = self.tail.new_chunks("cpu", ["t", "container", "role", "usage_s"])
        info = self.tail.new_chunks("haproxy_info", ["t", "service", "kind", "metric", "value"])
        stat = self.tail.new_chunks("haproxy_stat")
        vrrp = self.tail.new_chunks("vrrp", ["t", "node", "holds_vip"])
        events = self.tail.new_events()
        with self._lock:
            for ev in events:
                self._event(ev)
            for chunk in requests:
                self._requests(chunk)
            for chunk in cpu:
                self._cpu(chunk)
            for chunk in info:
                self._info(chunk)
            for chunk in stat:
                self._stat(chunk)
            for chunk in vrrp:
                self._vrrp(chunk)

    def _event(self, ev: dict[str, Any]) -> None:
        kind, name, t = ev.get("kind"), str(ev.get("name", "")), float(ev.get("t") or 0.0)
        if kind == "phase":
            if name == "load" and self.load_start is None:
                self.load_start = t
            if name == "steady":
                self.steady_start = t
            if ev.get("target") is not None:
                self.target_phases.append(ev)
        self.events.append(ev)

    def _requests(self, c: dict[str, np.ndarray]) -> None:
        t = np.asarray(c["t"], dtype=float)
        if not t.size:
            return
        lat = np.asarray(c["latency_ms"], dtype=float)
        err = c["error"].astype(str)
        ok = err == ""
        new = c.get("conn_new")
        newb = np.zeros(t.size, dtype=bool) if new is None else np.asarray([bool(x) for x in new], dtype=bool) if new.dtype == object else new.astype(bool)
        sec = np.floor(t).astype(np.int64)
        buckets = buckets_of(lat)
        steady = t >= self.steady_start if self.steady_start is not None else np.zeros(t.size, dtype=bool)
        for s in np.unique(sec).tolist():
            m = sec == s
            self._add(self.seconds[s], m, ok, newb, err, buckets)
        self._add(self.total, np.ones(t.size, dtype=bool), ok, newb, err, None)
        self._add(self.steady, steady, ok, newb, err, None)
        if ok.any():
            b, n = np.unique(buckets[ok], return_counts=True)
            self.total_hist.merge(Histogram(dict(zip(b.tolist(), n.tolist(), strict=True))))
        okl = lat[ok & steady]
        if okl.size:
            b, n = np.unique(buckets[ok & steady], return_counts=True)
            self.steady_hist.merge(Histogram(dict(zip(b.tolist(), n.tolist(), strict=True))))
            self.latency_max_ms = max(self.latency_max_ms, float(okl.max()))
        self.latency_sum_s += float(lat[ok].sum()) / 1000.0

    @staticmethod
    def _add(into: _Second, m: np.ndarray, ok: np.ndarray, new: np.ndarray, err: np.ndarray, buckets: np.ndarray | None) -> None:
        into.count += int(m.sum())
        into.ok += int((m & ok).sum())
        into.conn_new += int((m & new).sum())
        bad = m & ~ok
        if bad.any():
            kinds, n = np.unique(err[bad], return_counts=True)
            into.errors.update(dict(zip(kinds.tolist(), n.tolist(), strict=True)))
        if buckets is not None and (m & ok).any():
            b, n = np.unique(buckets[m & ok], return_counts=True)
            into.hist.update(dict(zip(b.tolist(), n.tolist(), strict=True)))

    def _cpu(self, c: dict[str, np.ndarray]) -> None:
        # one sample = one row per core of a container at one t: sum the cores
        sums: dict[tuple[str, float], list] = {}
        for t, name, role, usage in zip(c["t"].tolist(), c["container"].tolist(), c["role"].tolist(), c["usage_s"].tolist(), strict=True):
            key = (name, t)
            if key not in sums:
                sums[key] = [0.0, role, 0]
            sums[key][0] += usage
            sums[key][2] += 1
        for (name, t), (usage, role, cores) in sorted(sums.items(), key=lambda kv: kv[0][1]):
            if role == "host":
                self.host_cores = max(self.host_cores, cores)
            last = self.cpu_last.get(name)
            if last is not None and t > last[0]:
                self.cpu_pct[name] = (role, max(0.0, 100.0 * (usage - last[1]) / (t - last[0])))
            self.cpu_last[name] = (t, usage, role)

    def _info(self, c: dict[str, np.ndarray]) -> None:
        for t, service, kind, metric, value in zip(c["t"].tolist(), c["service"].tolist(), c["kind"].tolist(), c["metric"].tolist(), c["value"].tolist(), strict=True):
            if metric in INFO_METRICS:
                self.haproxy.setdefault(service, {})[metric] = float(value)
                self.haproxy_kind[service] = kind
                self.haproxy_t[service] = max(self.haproxy_t.get(service, 0.0), float(t))

    def _stat(self, c: dict[str, np.ndarray]) -> None:
        names = [k for k in c if k not in ("t", "node", "service", "kind", "pxname", "svname", "type", "status")]
        n = len(c["t"])
        for i in range(n):
            key = (str(c["service"][i]), str(c["pxname"][i]), str(c["svname"][i]))
            row = {k: float(c[k][i]) for k in names if c[k][i] is not None}
            row["type"] = float(c["type"][i]) if c["type"][i] is not None else -1.0  # 0 frontend, 1 backend, 2 server
            self.haproxy_stat[key] = row

    def _vrrp(self, c: dict[str, np.ndarray]) -> None:
        for t, node, holds in sorted(zip(c["t"].tolist(), c["node"].tolist(), c["holds_vip"].tolist(), strict=True)):
            self.vrrp[node] = (t, bool(holds))
            # a node whose namespace can no longer be read (crashed, frozen) keeps its last sample: not a holder
            newest = max(at for at, _ in self.vrrp.values())
            holders = tuple(sorted(n for n, (at, h) in self.vrrp.items() if h and at >= newest - STALE_S))
            if self._holders is not None and holders != self._holders and holders:
                self.vip_changes += 1
                self.events.append({"t": t, "kind": "vip", "name": f"VIP on {', '.join(holders)}"})
            if holders:
                self._holders = holders

    # ------------------------------------------------------------------ reading

    def _target_at(self, t: float) -> tuple[float | None, str | None]:
        current = None
        for ph in self.target_phases:
            if float(ph["t"]) <= t:
                current = ph
        if current is None:
            load = (self.run.get("scenario") or {}).get("load") or {}
            for f in ("requests_per_s", "connections_per_s", "handshakes_per_s"):
                if isinstance(load.get(f), int | float) and not load.get("stages") and not load.get("find_max"):
                    return float(load[f]), f
            return None, None
        end, start_v, end_v = current.get("end"), current.get("target_start"), float(current["target"])
        if current.get("ramp") and end and start_v is not None and float(end) > float(current["t"]):
            frac = min(max((t - float(current["t"])) / (float(end) - float(current["t"])), 0.0), 1.0)
            return float(start_v) + frac * (end_v - float(start_v)), current.get("field")
        return end_v, current.get("field")

    def snapshot(self, now: float | None = None) -> Snapshot:
        """The figures at ``now`` (default: the wall clock)."""
        now = time.time() if now is None else now
        with self._lock:
            if self.load_end is not None:
                now = min(now, self.load_end + SETTLE_S + 1.0)  # after the load: its last seconds, not the idle ones
            last = math.floor(now - SETTLE_S) - 1  # the newest second that ended SETTLE_S ago
            if self.load_end is not None:
                last = min(last, math.floor(self.load_end) - 1)  # the second the load ended in is partial
            first = last - WINDOW_S + 1
            if self.load_start is not None:
                first = max(first, math.ceil(self.load_start))  # so is the one it started in: never divide by idle time
            span = last - first + 1
            secs = [self.seconds[s] for s in range(first, last + 1) if s in self.seconds]
            have = span > 0 and (bool(secs) or self.total.count > 0)
            count = sum(s.count for s in secs)
            ok = sum(s.ok for s in secs)
            new = sum(s.conn_new for s in secs)
            errors: Counter = Counter()
            hist = Histogram()
            for s in secs:
                errors.update(s.errors)
                hist.merge(Histogram(s.hist))
            w = float(max(span, 1))
            target, tfield = self._target_at((first + last + 1) / 2)
            scenario = self.run.get("scenario") or {}
            duration = scenario.get("duration")
            elapsed = left = None
            if self.load_start is not None:
                elapsed = (self.load_end or now) - self.load_start
                if duration:
                    left = max(float(duration) - elapsed, 0.0)
            load_phase = None
            for ev in self.events:
                if ev.get("kind") == "phase" and float(ev.get("t") or 0) <= now and ev.get("name") not in ("load", "end"):
                    load_phase = str(ev.get("name"))
            # a process that stopped answering (its node crashed) keeps its last sample: leave it out
            fresh_info = max(self.haproxy_t.values(), default=0.0) - STALE_S
            fe = [s for s, k in self.haproxy_kind.items() if k in ("frontend", "monolith") and self.haproxy_t.get(s, 0.0) >= fresh_info]
            fresh_cpu = max((t for t, _, _ in self.cpu_last.values()), default=0.0) - STALE_S
            hap = {m: sum(self.haproxy[s].get(m, 0.0) for s in fe) for m in INFO_METRICS if m != "Idle_pct"}
            cpu_roles: dict[str, float] = defaultdict(float)
            cpu_now = {name: rp for name, rp in self.cpu_pct.items() if self.cpu_last[name][0] >= fresh_cpu}
            for role, pct in cpu_now.values():
                cpu_roles[role] += pct
            totals = {
                "requests": self.total.count,
                "ok": self.total.ok,
                "errors": dict(self.total.errors),
                "conn_new": self.total.conn_new,
                "latency_sum_s": self.latency_sum_s,
                "steady_requests": self.steady.count,
                "steady_ok": self.steady.ok,
                "steady_errors": sum(self.steady.errors.values()),
            }
            snap = Snapshot(
                t=now,
                phase=self.phase,
                load_phase=load_phase,
                elapsed_s=elapsed,
                left_s=left,
                duration_s=float(duration) if duration else None,
                window_s=max(span, 0),
                requests_per_s=count / w if have else None,
                ok_per_s=ok / w if have else None,
                errors_per_s=(count - ok) / w if have else None,
                errors_window=dict(errors),
                p50_ms=hist.percentile(50) if hist.total else None,
                p99_ms=hist.percentile(99) if hist.total else None,
                conn_new_per_s=new / w if have else None,
                target=target,
                target_field=tfield,
                totals=totals,
                haproxy=hap if fe else {},
                cpu_pct=dict(cpu_roles),
                cpu_by_container=cpu_now,
                host_cores=self.host_cores,
                vip_holders=list(self._holders or ()),
                vip_changes=self.vip_changes,
                events=[e for e in self.events if e.get("kind") in ("fault", "recovery", "vip", "error", "integrity")],
                thresholds=[],
                run_id=self.run.get("id"),
                lab=(self.run.get("lab") or {}).get("project"),
                vip=(self.run.get("lab") or {}).get("vip"),
            )
            snap.thresholds = self._live_thresholds(snap, now)
        return snap

    def _live_thresholds(self, snap: Snapshot, now: float) -> list[dict[str, Any]]:
        """Each threshold with its live value (cumulative over the steady phase so far) or ``at the end``."""
        out = []
        steady_s = None
        if self.steady_start is not None:
            steady_s = max(min(math.floor(now - SETTLE_S), self.load_end or now) - self.steady_start, 0.0)
        for th in self.thresholds:
            value = self._live_value(th.metric, snap, steady_s)
            status = "live" if value is None else ("pass" if th.holds(value) else "fail")
            out.append({"threshold": th.text, "metric": th.metric, "value": value, "status": status if value is not None else "at the end"})
        return out

    def _live_value(self, metric: str, snap: Snapshot, steady_s: float | None) -> float | None:
        st = self.steady
        if metric.startswith("latency_ms.") and metric.count(".") == 1:
            key = metric.split(".")[1]
            if not self.steady_hist.total:
                return None
            if key == "max":
                return self.latency_max_ms
            if key == "mean":
                return self.steady_hist.mean() if hasattr(self.steady_hist, "mean") else None
            q = {"p50": 50, "p90": 90, "p99": 99, "p999": 99.9}.get(key)
            return self.steady_hist.percentile(q) if q else None
        errors = st.count - st.ok
        simple = {
            "requests.total": float(self.total.count),
            "requests.ok": float(self.total.ok),
            "requests.steady": float(st.count),
            "errors.total": float(self.total.count - self.total.ok),
            "errors.steady": float(errors),
            "errors.pct": 100.0 * errors / st.count if st.count else None,
            "requests.per_s": st.ok / steady_s if steady_s else None,
            "errors.per_s": errors / steady_s if steady_s else None,
            "connections.per_s_client": st.conn_new / steady_s if steady_s else None,
        }
        if metric in simple:
            return simple[metric]
        if metric.startswith("errors.by_kind."):
            return float(self.total.errors.get(metric.rsplit(".", 1)[1], 0))
        if metric == "load.achieved_pct.requests_per_s" and snap.target and snap.target_field == "requests_per_s" and snap.requests_per_s is not None:
            return 100.0 * snap.requests_per_s / snap.target
        return None


def role_order(roles: Iterable[str]) -> list[str]:
    """Roles in display order (known ones first)."""
    known = [r for r in CPU_ROLES if r in roles]
    return known + sorted(r for r in roles if r not in CPU_ROLES)
