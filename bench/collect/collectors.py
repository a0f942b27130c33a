"""Run every sampler of a lab at 1 Hz on the host and stream the samples to the run directory.

    collectors = Collectors(run_dir, lab, log=log)
    collectors.start()                      # right after lab.up(): records the idle baseline
    locust = start_locust(...)
    collectors.track_loadgen(locust.proc.pid)
    ...
    collectors.stop()                       # after the load stopped, before lab.down()

One daemon thread samples everything once per interval, stamps every reading
with ``time.time()`` when it is taken, and appends each table's rows as one
batch per interval to its stream, so a run killed with SIGKILL keeps every complete second.
A sampler that fails logs once (and once more when it recovers) and the rest
go on: collection never ends a run.

TCP sockets of the LB namespaces: the totals (``net/sockstat``, table
``socket_totals``) every tick, the per-(state, address pair) counts (a sock_diag
dump, table ``sockets``) every :data:`PAIRS_EVERY` ticks, and every tick while a
namespace holds at least :data:`PAIRS_DENSE_FROM` of its ephemeral port range
(see :func:`pairs_due`), and at the first and the final tick. The tables are declared in
:mod:`bench.results.tables` and documented in ``reports/README.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..results.layout import TIMERS_SOCKET, RunDir
from ..results.tables import COLLECTORS, by_source
from . import cpu, haproxy, netns, vrrp
from .tables import TableBuffer
from .timers import TABLE as TIMERS_TABLE
from .timers import TimerReceiver

INTERVAL = 1.0
#: Seconds between attempts to find a node's process again after its namespace became unreadable.
REFRESH_EVERY = 5.0
#: Seconds between re-scans of the load generator's process group (forks inherit the cgroup anyway).
LOADGEN_RESCAN = 5.0
META_SCHEMA_VERSION = 1
#: `sockets` state of the one zero-count row written for a sample that found no socket.
NO_SOCKETS = "NONE"
#: The per-pair socket counts (table ``sockets``) are read every this many ticks...
PAIRS_EVERY = 5
#: ... and every tick while an LB namespace holds at least this share of its ip_local_port_range
#: in TCP sockets (table ``socket_totals``, read every tick). Reading the pairs is a sock_diag dump,
#: and the kernel walks its one TCP hash table of every namespace for it (262,144 buckets on a
#: typical host, plus every socket of the host): a fixed cost per dump, whatever the lab holds.
#: The totals (net/sockstat) cost nothing like it, and bound every pair: no pair holds more ports
#: than its namespace holds sockets, so below this share no pair can be near exhaustion.
PAIRS_DENSE_FROM = 0.25


def pairs_due(ticks_since: int | None, totals: dict[str, int | None], range_sizes: dict[str, int | None]) -> bool:
    """Whether this tick reads the per-pair socket counts of every LB namespace.

    ``ticks_since``: ticks since the last read (None: never read); ``totals``: each
    node's TCP sockets this tick (None: unknown); ``range_sizes``: each node's
    ip_local_port_range size (None: unknown). Unknown counts as near the range.
    """
    if ticks_since is None or ticks_since >= PAIRS_EVERY:
        return True
    for node, total in totals.items():
        size = range_sizes.get(node)
        if total is None or not size or total >= PAIRS_DENSE_FROM * size:
            return True
    return False


class _CpuTarget:
    """A container whose CPU is sampled; its cgroup is looked up lazily (and again after a failure)."""

    def __init__(self, service: str, role: str, node: str, container: Any):
        self.service = service
        self.role = role
        self.node = node
        self.container = container
        self.account: cpu.CpuAccount | None = None
        self.memory: cpu.MemoryAccount | None = None


class _Node:
    """An LB node's namespace plus the container that owns it."""

    def __init__(self, name: str, container: Any, namespace: netns.NodeNamespace):
        self.name = name
        self.container = container
        self.ns = namespace
        self.next_refresh = 0.0
        self.range_size: int | None = None
        self.tcp_hash: int | None = None  # buckets of its TCP hash table, negative when shared with the host's
        self.total: int | None = None  # TCP sockets at the last tick (None: unreadable)
        self.totals: netns.SocketTotals | None = None
        self.totals_t = 0.0


class Collectors:
    """Samplers for one lab, writing into ``run_dir/samples/`` (see the module docstring).

    ``cgroup`` forces the hierarchy CPU is read from ("v1", "v2"; default "auto").
    """

    def __init__(
        self,
        run_dir: Path,
        lab: Any,
        loadgen_pids: Iterable[int] = (),
        interval: float = INTERVAL,
        log: Callable[[str], None] = print,
        cgroup: str = "auto",
    ):
        self.run_dir = Path(run_dir)
        self.lab = lab
        self.interval = interval
        self.log = log
        self.cgroup_mode = cgroup
        self._initial_loadgen = list(loadgen_pids)
        # request_timers has a writer of its own (bench/collect/timers.py)
        self.buffers = {t.name: TableBuffer(self.run_dir, t.name) for t in by_source("collector") if t.name != TIMERS_TABLE}
        self.errors: dict[str, str] = {}  # sampler -> first error, for the whole run
        self._failing: set[str] = set()
        self._lock = threading.RLock()  # buffers + loadgen state, shared with the main thread
        self._stop = threading.Event()
        self._first_tick = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self.ticks = 0
        self._pairs_tick: int | None = None  # tick of the last per-pair socket read
        self.pair_reads = 0
        self.dense_ticks = 0  # ticks the pairs were read because a namespace was near its port range
        #: Thread CPU seconds spent per collector so far (written to ``collector_self`` every tick).
        self.cost: dict[str, float] = dict.fromkeys(COLLECTORS, 0.0)
        self.cgroups: cpu.Cgroups | None = None
        self._host_files = cpu.CounterFiles()  # /proc/stat, kept open
        self.haproxy: list[haproxy.HAProxyTarget] = []
        self.cpu_targets: list[_CpuTarget] = []
        self.nodes: list[_Node] = []
        self.loadgen: cpu.LoadgenCgroup | None = None
        #: receives the per-request timers of traced requests from every HAProxy process (bench/collect/timers.py)
        self.timers: TimerReceiver | None = None
        self._loadgen_groups: set[int] = set()
        self._loadgen_next_scan = 0.0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        #: A :class:`bench.collect.integrity.LabWatch` told of VIP moves and lost sources (optional).
        self.watch: Any = None
        #: The load's start (epoch s), once known: failure lines then say "+14.2 s".
        self.t0: float | None = None
        # within a tick, failures and recoveries are gathered and said in one line each
        self._tick_failed: dict[str, str] | None = None
        self._tick_recovered: list[str] = []
        self._tick_holders: dict[str, bool] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Collectors:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Find every process of the lab and start sampling; returns after the first sample."""
        if self._started:
            return
        self._started = True
        self.started_at = time.time()
        self._guard("discover", self._discover)
        self._guard("timers", self._start_timers)
        for pid in self._initial_loadgen:
            self.track_loadgen(pid)
        self._thread = threading.Thread(target=self._run, name="lbbench-collectors", daemon=True)
        self._thread.start()
        self._first_tick.wait(timeout=10 * self.interval)

    def stop(self) -> None:
        """Take a last sample, read keepalived's log, flush, remove the load-generator cgroup. Idempotent."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._guard("vrrp_events", self._vrrp_events)
        if self.timers is not None:
            self._guard("timers", self.timers.stop)
        self._flush()
        for node in self.nodes:
            node.ns.close()
        self._close_counter_files()
        for buffer in self.buffers.values():
            buffer.close()
        if self.loadgen is not None:
            self._guard("loadgen cgroup removal", self.loadgen.remove)
        self.stopped_at = time.time()
        self._guard("collectors.json", self._write_meta)

    def track_loadgen(self, pid: int) -> None:
        """Count the CPU of ``pid``'s process group (the load generator) in a cgroup of its own."""

        def track() -> None:
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                return
            with self._lock:
                if self.loadgen is None:
                    if self.cgroups is None:
                        self.cgroups = cpu.Cgroups(prefer=self.cgroup_mode)
                    self.loadgen = cpu.LoadgenCgroup(self.cgroups, f"{self.lab.project}-loadgen")
                self._loadgen_groups.add(pgid)
                self.loadgen.add(pid)  # the leader first: children forked from now on inherit it
                self.loadgen.add_group(pgid)
                self._loadgen_next_scan = time.monotonic() + 1.0

        self._guard("loadgen cgroup", track)

    def track_container(self, service: str, role: str, container: Any, node: str = "") -> None:
        """Sample the CPU of one more container (a load-generator worker) like the lab's own."""
        with self._lock:
            self.cpu_targets.append(_CpuTarget(service, role, node, container))

    # ------------------------------------------------------------------ discovery

    def _discover(self) -> None:
        plan = self.lab.plan
        containers = self.lab.containers()
        self.cgroups = self.cgroups or cpu.Cgroups(prefer=self.cgroup_mode)
        for node in plan.nodes:
            self.cpu_targets.append(_CpuTarget(node.name, "node", node.name, containers.get(node.name)))
            ka = node.keepalived_service
            self.cpu_targets.append(_CpuTarget(ka, "keepalived", node.name, containers.get(ka)))
            for proc in node.processes:
                self.cpu_targets.append(_CpuTarget(proc.service, proc.kind, node.name, containers.get(proc.service)))
                self.haproxy.append(haproxy.HAProxyTarget(proc.service, node.name, proc.kind, self.lab.socket_path(proc.service)))
        for server in plan.servers:
            self.cpu_targets.append(_CpuTarget(server.name, "server", "", containers.get(server.name)))
            self.haproxy.append(haproxy.HAProxyTarget(server.name, "", "server", self.lab.socket_path(server.name)))
        for node in plan.nodes:
            container = containers.get(node.name)
            pid = _pid(container)
            entry = _Node(node.name, container, netns.NodeNamespace(node.name, pid))
            self.nodes.append(entry)
            self._guard(f"namespace {node.name}", self._learn_namespace, entry)

    def _start_timers(self) -> None:
        """Bind the timers socket in the lab's run folder (``/run/lbbench/timers.sock`` in the containers)."""
        files = getattr(self.lab, "files", None)
        if files is None:
            return
        receiver = TimerReceiver(self.run_dir, Path(files.run) / TIMERS_SOCKET)
        receiver.start()
        self.timers = receiver

    def _learn_namespace(self, node: _Node) -> None:
        """Once per namespace: interface addresses, ip_local_port_range (nsenter) and its TCP hash table."""
        plan = self.lab.plan
        node.ns.learn_interfaces(plan.client_subnet, plan.server_subnet)
        t = time.time()
        low, high = node.ns.port_range()
        node.range_size = high - low + 1
        node.tcp_hash = node.ns.tcp_hash()
        with self._lock:
            self.buffers["port_range"].add(t=t, node=node.name, low=low, high=high, tcp_hash=node.tcp_hash)

    # ------------------------------------------------------------------ sampling

    def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            final = self._stop.is_set()  # stop() was called before this sample began: it shows the final state
            self._guard("tick", self._tick, final)
            self._first_tick.set()
            if final:
                break
            if self._stop.is_set():
                continue  # stop() came during that sample: take one more, right now
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # overran: skip the missed ticks, keep the cadence
                next_at = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def _tick(self, final: bool = False) -> None:
        began = time.monotonic()
        self._tick_failed, self._tick_recovered, self._tick_holders = {}, [], {}
        try:
            self._sample_all(began, final)
        finally:
            self._end_tick()
        clock = time.thread_time
        c0 = clock()
        self._flush()
        self.cost["write"] += clock() - c0

    def _sample_all(self, began: float, final: bool = False) -> None:
        cost = self.cost
        clock = time.thread_time
        with self._lock:
            b = self.buffers
            c0 = clock()
            for target in self.haproxy:
                self._guard(f"haproxy {target.service}", haproxy.sample, target, b["haproxy_info"], b["haproxy_stat"])
            c1 = clock()
            self._guard("cpu host", self._sample_host)
            for ct in list(self.cpu_targets):
                if self._guard(f"cpu {ct.service}", self._sample_container, ct) and ct.role != "loadgen":
                    self._guard(f"memory {ct.service}", self._sample_memory, ct)
            if self.loadgen is not None:
                self._guard("cpu loadgen", self._sample_loadgen)
            c2 = clock()
            cost["haproxy"] += c1 - c0
            cost["cpu"] += c2 - c1
            c0 = clock()
            failed = self._sample_sockets(final)
            cost["sockets"] += clock() - c0
            for node in self.nodes:
                c1 = clock()
                ok = self._guard(f"netdev {node.name}", self._sample_netdev, node)
                c2 = clock()
                ok &= self._guard(f"vrrp {node.name}", self._sample_vrrp, node)
                cost["netdev"] += c2 - c1
                cost["vrrp"] += clock() - c2
                if not ok or node.name in failed:
                    self._guard(f"namespace {node.name}", self._refresh_node, node)
            self.ticks += 1
            b["collector_self"].add(
                t=time.time(), usage_s=clock(), tick_s=time.monotonic() - began, **{f"{k}_s": v for k, v in cost.items()}
            )

    def _end_tick(self) -> None:
        """Say the tick's failures and recoveries in one line each; tell the watch."""
        failed, recovered, holders = self._tick_failed or {}, self._tick_recovered, self._tick_holders
        self._tick_failed = None
        t = time.time()
        when = f" at {t - self.t0:+.1f} s" if self.t0 is not None else ""
        if failed:
            names = sorted(failed)
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            self._say(f"collectors: {len(names)} source(s) failed{when}: {shown} ({failed[names[0]]}); going on without them")
            if self.watch is not None:
                self.watch.sources_lost(t, failed)
        if recovered:
            self._say(f"collectors: {len(recovered)} source(s) work again{when}: {', '.join(sorted(recovered))}")
        if self.watch is not None and holders and len(holders) == len(self.nodes):
            self.watch.vip_sample(t, [n for n, h in holders.items() if h])

    def _cpu_rows(self, container: str, role: str, node: str, t: float, values: Iterable[tuple[int, float]]) -> None:
        values = list(values)
        n = len(values)
        self.buffers["cpu"].add_many(
            {
                "t": [t] * n,
                "container": [container] * n,
                "role": [role] * n,
                "node": [node] * n,
                "cpu": [c for c, _ in values],
                "usage_s": [v for _, v in values],
            }
        )

    def _sample_host(self) -> None:
        t = time.time()
        self._cpu_rows("host", "host", "", t, sorted(cpu.read_host(self._host_files).items()))

    def _sample_container(self, ct: _CpuTarget) -> None:
        if ct.account is None:
            if ct.container is None:
                raise OSError(f"container of {ct.service} not found")
            ct.account = self.cgroups.account_of(_pid(ct.container))  # type: ignore[union-attr]
        t = time.time()
        try:
            values = ct.account.read()
        except FileNotFoundError:
            if ct.role == "loadgen":
                # a load-generator worker's container ends with its load: not the lab, not a lost source
                self.cpu_targets.remove(ct)
                return
            ct.account = None  # container gone or restarted: look it up again next time
            if ct.container is not None:
                ct.container.reload()
            raise
        self._cpu_rows(ct.service, ct.role, ct.node, t, values)

    def _sample_memory(self, ct: _CpuTarget) -> None:
        if ct.memory is None:
            ct.memory = self.cgroups.memory_of(_pid(ct.container))  # type: ignore[union-attr]
        t = time.time()
        try:
            usage, anon, kernel = ct.memory.read()
        except FileNotFoundError:
            ct.memory = None  # container gone or restarted: look it up again next time
            raise
        self.buffers["memory"].add(
            t=t, container=ct.service, role=ct.role, node=ct.node, usage_bytes=usage, anon_bytes=anon, kernel_bytes=kernel
        )

    def _sample_loadgen(self) -> None:
        assert self.loadgen is not None
        if time.monotonic() >= self._loadgen_next_scan:
            for pgid in self._loadgen_groups:
                self.loadgen.add_group(pgid)
            self._loadgen_next_scan = time.monotonic() + LOADGEN_RESCAN
        t = time.time()
        self._cpu_rows("loadgen", "loadgen", "", t, self.loadgen.account.read())

    def _sample_sockets(self, final: bool) -> set[str]:
        """Every node's socket totals; the per-pair counts when :func:`pairs_due` (or ``final``).

        Returns the nodes whose namespace could not be read.
        """
        failed: set[str] = set()
        for node in self.nodes:
            node.total, node.totals = None, None
            if not self._guard(f"socket totals {node.name}", self._sample_totals, node):
                failed.add(node.name)
        since = None if self._pairs_tick is None else self.ticks - self._pairs_tick
        due = final or pairs_due(since, {n.name: n.total for n in self.nodes}, {n.name: n.range_size for n in self.nodes})
        if due:
            if since is not None and since < PAIRS_EVERY and not final:
                self.dense_ticks += 1
            self._pairs_tick = self.ticks
            self.pair_reads += 1
            for node in self.nodes:
                if not self._guard(f"sockets {node.name}", self._sample_pairs, node):
                    failed.add(node.name)
        buf = self.buffers["socket_totals"]
        for node in self.nodes:
            if node.totals is not None:
                tot = node.totals
                buf.add(t=node.totals_t, node=node.name, tcp_inuse=tot.tcp_inuse, tcp6_inuse=tot.tcp6_inuse, time_wait=tot.time_wait, pairs_read=due)
        return failed

    def _sample_totals(self, node: _Node) -> None:
        node.totals_t = time.time()
        node.totals = node.ns.socket_totals()
        node.total = node.totals.total

    def _sample_pairs(self, node: _Node) -> None:
        t = time.time()
        counts = node.ns.socket_counts()
        if not counts:
            # An idle namespace: one zero row, so every sample of every node is in the table.
            counts = {(NO_SOCKETS, "", "", 0, "", 0): 0}
        n = len(counts)
        keys = list(counts)
        self.buffers["sockets"].add_many(
            {
                "t": [t] * n,
                "node": [node.name] * n,
                "state": [k[0] for k in keys],
                "direction": [k[1] for k in keys],
                "src": [k[2] for k in keys],
                "lport": [k[3] for k in keys],
                "dst": [k[4] for k in keys],
                "dport": [k[5] for k in keys],
                "count": list(counts.values()),
            }
        )

    def _sample_netdev(self, node: _Node) -> None:
        t = time.time()
        buf = self.buffers["netdev"]
        for iface, c in node.ns.netdev().items():
            buf.add(
                t=t,
                node=node.name,
                iface=iface,
                network=node.ns.networks.get(iface, "lo" if iface == "lo" else "other"),
                rx_bytes=c.rx_bytes,
                tx_bytes=c.tx_bytes,
                rx_packets=c.rx_packets,
                tx_packets=c.tx_packets,
                rx_dropped=c.rx_dropped,
                tx_dropped=c.tx_dropped,
            )

    def _sample_vrrp(self, node: _Node) -> None:
        t = time.time()
        holds = self.lab.plan.vip in node.ns.local_addresses()
        self.buffers["vrrp"].add(t=t, node=node.name, holds_vip=holds)
        self._tick_holders[node.name] = holds

    def _refresh_node(self, node: _Node) -> None:
        """The namespace became unreadable (container restarted?): find its process again, now and then."""
        now = time.monotonic()
        if now < node.next_refresh or node.container is None:
            return
        node.next_refresh = now + REFRESH_EVERY
        node.container.reload()
        pid = _pid(node.container)
        if pid and pid != node.ns.pid:
            self.log(f"collectors: {node.name} has a new process (pid {pid}); following its namespace")
            node.ns.close()
            node.ns = netns.NodeNamespace(node.name, pid)
            self._learn_namespace(node)

    # ------------------------------------------------------------------ at stop

    def _close_counter_files(self) -> None:
        self._host_files.close()
        for ct in self.cpu_targets:
            for account in (ct.account, ct.memory):
                if account is not None:
                    account.close()
        if self.loadgen is not None:
            self.loadgen.account.close()

    def _vrrp_events(self) -> None:
        buf = self.buffers["vrrp_events"]
        containers = self.lab.containers()
        for node in self.nodes:
            keepalived = containers.get(f"{node.name}-keepalived")
            if keepalived is None:
                continue
            text = keepalived.logs(timestamps=True).decode(errors="replace")
            for t, state, instance in vrrp.parse_keepalived_log(text):
                with self._lock:
                    buf.add(t=t, node=node.name, state=state, instance=instance)

    def _flush(self) -> None:
        with self._lock:
            for name, buf in self.buffers.items():
                self._guard(f"write {name}", buf.flush)

    def _write_meta(self) -> None:
        meta = {
            "schema_version": META_SCHEMA_VERSION,
            "interval_s": self.interval,
            "cgroup_version": self.cgroups.version if self.cgroups else None,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "ticks": self.ticks,
            "nodes": {
                n.name: {"pid": n.ns.pid, "addresses": n.ns.addresses, "networks": n.ns.networks, "tcp6": n.ns.read_tcp6, "sockets_reader": n.ns.reader, "tcp_hash": n.tcp_hash}
                for n in self.nodes
            },
            "socket_pairs": {
                "every_ticks": PAIRS_EVERY,
                "every_tick_from_share_of_port_range": PAIRS_DENSE_FROM,
                "reads": self.pair_reads,
                "extra_reads_near_port_range": self.dense_ticks,
            },
            "loadgen_cgroup": str(self.loadgen.path) if self.loadgen else None,
            "timers": self.timers.meta() if self.timers is not None else None,
            "errors": self.errors,
        }
        path = RunDir(self.run_dir).collectors_json
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, path)

    # ------------------------------------------------------------------ failures

    def _guard(self, name: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Run one sampler step; a failure is logged once (and its recovery once) and never raised."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - collection must never end a run
            if name not in self._failing:
                self._failing.add(name)
                message = f"{type(exc).__name__}: {exc}"
                self.errors.setdefault(name, message)
                if self._tick_failed is not None:
                    self._tick_failed[name] = message  # said once for the whole tick
                else:
                    self._say(f"collectors: {name} failed ({message}); going on without it")
                if not isinstance(exc, OSError):
                    self._say("".join(traceback.format_exception(exc)).rstrip())
            return False
        if name in self._failing:
            self._failing.discard(name)
            if self._tick_failed is not None:
                self._tick_recovered.append(name)
            else:
                self._say(f"collectors: {name} works again")
        return True

    def _say(self, message: str) -> None:
        with contextlib.suppress(Exception):  # a broken log must not stop sampling
            self.log(message)


def _pid(container: Any) -> int:
    if container is None:
        return 0
    return int(((container.attrs or {}).get("State") or {}).get("Pid") or 0)
