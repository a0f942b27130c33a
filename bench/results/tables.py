"""The registry of every sample table a run writes, each declared once with its schema.

A run directory's ``samples/<table>/`` folders are written by several parts of
lbbench (the collectors, the request capture, the rate models' pacing, the held
connections); this module is where each of them declares its table: the column
names, Arrow types, units and one line of meaning per column. Writers take the
schema from here (:class:`bench.results.store.ChunkWriter`), and readers
(:func:`bench.results.store.read_table`) give every table these columns with
these types, also when a run wrote no row of it or wrote it with an older set of
columns, so the analysis need not guard against missing columns.

reports/README.md ("Samples") documents every table column by column; a unit
test checks that it names every column declared here.

To add a table, declare it next to the others::

    MY_TABLE = register(Table("my_table", "what one row is", "collector", "bench/collect/mine.py", (
        Column("t", pa.float64(), "when it was sampled", "epoch s"),
        Column("value", pa.int64(), "what was counted", "count"),
    )))

and write it with ``ChunkWriter(run_dir, MY_TABLE, writer)``. A column added to
an existing table later must be nullable in meaning: runs written before it
read it as nulls (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """One column of a sample table."""

    name: str
    type: pa.DataType
    doc: str
    #: unit of the values ("epoch s", "ms", "s", "bytes", "count", "%", ...); "" for names and flags
    unit: str = ""


#: Who writes a table.
SOURCES = ("collector", "load")
#: How readers give string columns: every one holds a few distinct values (names, states,
#: addresses, error kinds), so millions of rows are codes into a few strings, not millions of strings.
CATEGORY = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Table:
    """A sample table: ``samples/<name>/`` of a run directory."""

    name: str
    #: what one row is
    doc: str
    #: who writes it: "collector" (the lab collectors in bench, one writer) or "load" (every load-generator process)
    source: str
    #: the module that writes it
    module: str
    columns: tuple[Column, ...]
    #: columns worth dictionary-encoding in Parquet (low cardinality); None = Parquet's default (all)
    dictionary: tuple[str, ...] | None = None
    #: float columns whose values are nearly all distinct (times, latencies): stored byte-stream-split
    #: in the compacted file, which compresses them better and reads them faster (not dictionary-encoded)
    split_floats: tuple[str, ...] = ()
    schema: pa.Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column names")
        if not all(c in names and self.columns[names.index(c)].type == pa.float64() for c in self.split_floats):
            raise ValueError(f"table {self.name}: split_floats names float64 columns only")
        if self.dictionary is not None and set(self.dictionary) & set(self.split_floats):
            raise ValueError(f"table {self.name}: a column cannot be both dictionary-encoded and byte-stream-split")
        if self.source not in SOURCES:
            raise ValueError(f"table {self.name}: source must be one of {SOURCES}")
        if self.dictionary is not None and not set(self.dictionary) <= set(names):
            raise ValueError(f"table {self.name}: dictionary names unknown columns")
        object.__setattr__(self, "schema", pa.schema([(c.name, c.type) for c in self.columns]))

    @property
    def read_schema(self) -> pa.Schema:
        """The schema readers give: strings as dictionaries (categories), see :data:`CATEGORY`."""
        return pa.schema([(f.name, CATEGORY if f.type == pa.string() else f.type) for f in self.schema])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")


#: Table name -> declaration, for every sample table a run can hold.
TABLES: dict[str, Table] = {}


def register(table: Table) -> Table:
    """Declare ``table`` (once; a second declaration of the same name must be identical)."""
    known = TABLES.get(table.name)
    if known is not None and known != table:
        raise ValueError(f"table {table.name} is already declared with other columns")
    TABLES[table.name] = table
    return table


def get(name: str) -> Table:
    """The declaration of table ``name``."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no sample table named {name!r} (known: {', '.join(sorted(TABLES))})") from None


def _t(doc: str) -> Column:
    return Column("t", pa.float64(), doc, "epoch s")


def _str(name: str, doc: str) -> Column:
    return Column(name, pa.string(), doc)


def _count(name: str, doc: str, arrow_type: pa.DataType | None = None) -> Column:
    return Column(name, arrow_type or pa.int64(), doc, "count")


# --------------------------------------------------------------------------- load generator (bench/load/)

REQUESTS = register(
    Table(
        "requests",
        "one request, as the load generator saw it",
        "load",
        "bench/load/capture.py",
        (
            _t("request start"),
            Column("latency_ms", pa.float64(), "time to the full response, or to the error", "ms"),
            Column("bytes", pa.int64(), "response body bytes", "bytes"),
            Column("status", pa.int32(), "HTTP status; 0 when no response arrived"),
            _str("error", '"" on success, else an error kind (bench.load.capture.ERROR_KINDS)'),
            _str("name", "request name"),
            _str("worker", "host:pid of the load-generator process"),
            Column("conn_new", pa.bool_(), "the request opened a new connection; null when the engine cannot tell"),
            Column("intended_t", pa.float64(), "rate models: when the schedule wanted this send made; null otherwise", "epoch s"),
            Column("latency_corrected_ms", pa.float64(), "from intended_t to the full response (coordinated-omission corrected)", "ms"),
            Column("trace_id", pa.int64(), "traced requests: the n of X-Lbbench-Id <worker>/<n>, joined to request_timers.id; null otherwise"),
        ),
        # float columns are nearly all distinct: dictionary-encoding them only costs time
        dictionary=("bytes", "status", "error", "name", "worker"),
        split_floats=("t", "latency_ms", "intended_t", "latency_corrected_ms"),
    )
)

UNFINISHED = register(
    Table(
        "unfinished",
        "one request the load generator sent and stopped waiting for before it finished (the load ended, or its user was stopped): it is in no requests row",
        "load",
        "bench/load/capture.py",
        (
            _t("request start"),
            Column("dropped_t", pa.float64(), "when the load generator dropped it, unanswered (dropped_t - t: how long it had waited)", "epoch s"),
            _str("worker", "host:pid of the load-generator process"),
            _str("name", "request name"),
            _str("phase", "what it waited for: connect (TCP connect or TLS handshake) or response; empty when the engine cannot tell"),
            Column("conn_new", pa.bool_(), "the request was opening its connection; null when the engine cannot tell"),
            Column("intended_t", pa.float64(), "rate models: when the schedule wanted it sent; null otherwise", "epoch s"),
            Column(
                "after_stop",
                pa.bool_(),
                "sent after its load generator began stopping (the load's end): cut by the stop itself, not a request of the measured load; null when not known",
            ),
            Column("trace_id", pa.int64(), "a traced request: the n of its X-Lbbench-Id <worker>/<n>; null otherwise"),
        ),
    )
)

LATENCY_HIST = register(
    Table(
        "latency_hist",
        "per load-generator process and second, one bucket of the mergeable latency histogram of the successful requests",
        "load",
        "bench/load/capture.py",
        (
            Column("t", pa.int64(), "the second (floor of the request start)", "epoch s"),
            _str("worker", "host:pid"),
            Column("bucket", pa.int32(), "histogram bucket (bench.results.histogram.bucket_bounds)"),
            _count("count", "successful requests in that bucket"),
        ),
    )
)

PACING = register(
    Table(
        "pacing",
        "rate models: per process, flow and second of intended send time, the schedule's counters (deltas)",
        "load",
        "bench/load/pacing.py",
        (
            _t("the second (floor of the intended send time)"),
            _str("worker", "host:pid"),
            _str("flow", "https (TLS, VIP:443) or http (plain, VIP:80)"),
            _count("due", "sends the schedule wanted in that second"),
            _count("sent", "of them, sent"),
            _count("late", "of the sent, sent more than 10 ms after their intended time"),
            _count("dropped", "not sent: more than load.max_lag late"),
            _count("waited", "found every connection of the pool busy when they came due"),
            _count("resumed", "slots whose new connection resumed a TLS session"),
            Column("dispatch_lag_max_ms", pa.float64(), "the dispatcher's worst lag behind the schedule", "ms"),
        ),
    )
)

HELD = register(
    Table(
        "held",
        "held connections: per process and second, the pool's state",
        "load",
        "bench/load/held.py",
        (
            _t("when sampled"),
            _str("worker", "host:pid"),
            _count("target", "connections this process holds"),
            _count("tls_target", "of them over TLS"),
            _count("open", "connections open now"),
            _count("tls_open", "of them over TLS"),
            _count("opened", "connections opened since the last row"),
            _count("resumed", "of them, TLS connections that resumed a session"),
            _count("failed", "held requests that failed since the last row"),
        ),
    )
)

# --------------------------------------------------------------------------- lab collectors (bench/collect/)

#: `show stat` columns every `haproxy_stat` row carries (float64, NaN when HAProxy left them empty).
STAT_FIELDS = (
    "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp", "ereq", "econ", "eresp",
    "wretr", "wredis", "rate", "rate_max", "req_rate", "req_tot",
    "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
    "qcur", "qmax", "qtime", "ctime", "rtime", "ttime", "conn_rate", "conn_tot", "cli_abrt", "srv_abrt",
)  # fmt: skip
#: Further `show stat` columns we keep (added to the contract; same rules).
STAT_EXTRA_FIELDS = (
    "req_rate_max", "conn_rate_max", "eint", "connect", "reuse", "idle_conn_cur", "used_conn_cur",
    "ssl_sess", "ssl_reused_sess", "ssl_failed_handshake",
)  # fmt: skip
#: Units of the `show stat` fields that are not counts (HAProxy management guide, section 9.1).
_STAT_UNITS = {"bin": "bytes", "bout": "bytes", "qtime": "ms", "ctime": "ms", "rtime": "ms", "ttime": "ms"}


def _process(doc: str) -> tuple[Column, ...]:
    return (
        _t(doc),
        _str("node", "lb-a, lb-b; empty for servers"),
        _str("service", "compose service of the process"),
        _str("kind", "frontend, backend, monolith, server"),
    )


HAPROXY_INFO = register(
    Table(
        "haproxy_info",
        "one numeric field of `show info` of one HAProxy process (long format)",
        "collector",
        "bench/collect/haproxy.py",
        (
            *_process("when the stats socket was queried"),
            _str("metric", "field name as HAProxy prints it (ConnRate, CumReq, Idle_pct, ...)"),
            Column("value", pa.float64(), "its value (rates are HAProxy's last-second rates; Cum* are cumulative)"),
        ),
    )
)

HAPROXY_STAT = register(
    Table(
        "haproxy_stat",
        "one `show stat` line (frontend, backend, server, listener) of one HAProxy process",
        "collector",
        "bench/collect/haproxy.py",
        (
            *_process("when the stats socket was queried"),
            _str("pxname", "proxy name"),
            _str("svname", "server name (FRONTEND / BACKEND for the aggregate lines)"),
            Column("type", pa.int32(), "0 frontend, 1 backend, 2 server, 3 listener"),
            _str("status", "OPEN, UP, DOWN, UP 1/3, no check, ..."),
            *(
                Column(name, pa.float64(), "the `show stat` field of that name; NaN where HAProxy leaves it empty", _STAT_UNITS.get(name, "count"))
                for name in STAT_FIELDS + STAT_EXTRA_FIELDS
            ),
        ),
    )
)

CPU = register(
    Table(
        "cpu",
        "cumulative CPU time of one container (or the host, or the load generator) on one core",
        "collector",
        "bench/collect/cpu.py",
        (
            _t("when the counter was read"),
            _str("container", "compose service; host for the whole machine; loadgen for the load generator"),
            _str("role", "keepalived, frontend, backend, monolith, server, host, loadgen"),
            _str("node", "the LB node of the container; empty for servers, host and loadgen"),
            Column("cpu", pa.int32(), "core index; -1 = all cores together"),
            Column("usage_s", pa.float64(), "cumulative CPU seconds on that core", "s"),
        ),
    )
)

MEMORY = register(
    Table(
        "memory",
        "memory of one container's cgroup (HAProxy, keepalived, servers), once per sample",
        "collector",
        "bench/collect/cpu.py",
        (
            _t("when the counters were read"),
            _str("container", "compose service"),
            _str("role", "keepalived, frontend, backend, monolith, server, node"),
            _str("node", "the LB node of the container; empty for servers"),
            Column("usage_bytes", pa.float64(), "cgroup v1 memory.usage_in_bytes (user + charged kernel memory); v2 memory.current", "bytes"),
            Column("anon_bytes", pa.float64(), "anonymous memory (v1 memory.stat rss, v2 anon); NaN when not given", "bytes"),
            Column("kernel_bytes", pa.float64(), "kernel memory charged to the cgroup (v1 memory.kmem.usage_in_bytes, v2 kernel); NaN when not given", "bytes"),
        ),
    )
)

SOCKETS = register(
    Table(
        "sockets",
        "TCP sockets of one LB node's namespace with the same state and address pair (ephemeral port folded to 0)",
        "collector",
        "bench/collect/netns.py",
        (
            _t("when the namespace's table was read"),
            _str("node", "lb-a, lb-b"),
            _str("state", "ESTABLISHED, TIME_WAIT, ...; NONE for the one count-0 row of a sample without sockets"),
            _str("direction", "in: accepted by a listener of the namespace; out: opened from it"),
            _str("src", "local address"),
            Column("lport", pa.int32(), "local port for in; 0 for out"),
            _str("dst", "remote address"),
            Column("dport", pa.int32(), "remote port for out; 0 for in"),
            _count("count", "sockets with these values", pa.int32()),
        ),
    )
)

SOCKET_TOTALS = register(
    Table(
        "socket_totals",
        "TCP socket totals of one LB node's namespace, every second (net/sockstat: cheap whatever the host holds)",
        "collector",
        "bench/collect/netns.py",
        (
            _t("when net/sockstat was read"),
            _str("node", "lb-a, lb-b"),
            _count("tcp_inuse", "IPv4 TCP sockets in any state but TIME_WAIT, listeners included", pa.int32()),
            _count("tcp6_inuse", "the same for IPv6", pa.int32()),
            _count("time_wait", "TIME_WAIT sockets, both families", pa.int32()),
            Column("pairs_read", pa.bool_(), "whether the per-pair counts (table sockets) were read in the same second"),
        ),
    )
)

PORT_RANGE = register(
    Table(
        "port_range",
        "ip_local_port_range and TCP hash table of one LB node's namespace, read once at the start",
        "collector",
        "bench/collect/netns.py",
        (
            _t("when it was read"),
            _str("node", "lb-a, lb-b"),
            Column("low", pa.int32(), "first port of the range (inclusive)"),
            Column("high", pa.int32(), "last port of the range (inclusive)"),
            Column(
                "tcp_hash",
                pa.int32(),
                "buckets of the namespace's TCP hash table (its net.ipv4.tcp_ehash_entries): positive = a table of its own, "
                "negative = it shares the host's (a sock_diag dump then walks every TCP socket of the host); null = unknown (Linux < 6.1)",
            ),
        ),
    )
)

NETDEV = register(
    Table(
        "netdev",
        "interface counters of one interface of one LB node's namespace",
        "collector",
        "bench/collect/netns.py",
        (
            _t("when the counters were read"),
            _str("node", "lb-a, lb-b"),
            _str("iface", "interface name in the namespace"),
            _str("network", "client, server, lo or other"),
            Column("rx_bytes", pa.int64(), "received, cumulative", "bytes"),
            Column("tx_bytes", pa.int64(), "sent, cumulative", "bytes"),
            _count("rx_packets", "received, cumulative"),
            _count("tx_packets", "sent, cumulative"),
            _count("rx_dropped", "receive drops, cumulative"),
            _count("tx_dropped", "send drops, cumulative"),
        ),
    )
)

VRRP = register(
    Table(
        "vrrp",
        "whether one LB node holds the VIP, per sample",
        "collector",
        "bench/collect/vrrp.py",
        (_t("when it was read"), _str("node", "lb-a, lb-b"), Column("holds_vip", pa.bool_(), "the VIP is assigned in that node's namespace")),
    )
)

VRRP_EVENTS = register(
    Table(
        "vrrp_events",
        "one keepalived state change, from its log",
        "collector",
        "bench/collect/vrrp.py",
        (
            _t("time of the log line"),
            _str("node", "lb-a, lb-b"),
            _str("state", "MASTER, BACKUP, FAULT or STOP"),
            _str("instance", "VRRP instance name; empty for STOP"),
        ),
    )
)

REQUEST_TIMERS = register(
    Table(
        "request_timers",
        "one traced request as one HAProxy process logged it (its timers and when it had the request and the response)",
        "collector",
        "bench/collect/timers.py",
        (
            _t("when the process logged it (after the response's last byte), HAProxy's date(0,us)"),
            _str("service", "the process: lb-a-frontend, lb-a-backend1, srv2, ..."),
            _str("kind", "frontend, backend, monolith or server"),
            Column("id", pa.string(), "X-Lbbench-Id: <worker>/<trace_id> of the requests row"),
            Column("t_req", pa.float64(), "when the process had the request's headers (its http-request rules ran)", "epoch s"),
            Column("t_resp", pa.float64(), "when it had the response's headers (http-response); null when none came", "epoch s"),
            *(
                Column(name, pa.int32(), f"HAProxy's {name} timer (-1: not reached)", "ms")
                for name in ("Th", "Ti", "TR", "Tw", "Tc", "Tr", "Ta")
            ),
            Column("status", pa.int32(), "HTTP status it logged"),
            Column("bytes", pa.int64(), "response bytes it sent", "bytes"),
            _str("term", "termination state, two characters (-- = normal)"),
            _str("server", "the server it picked; <NOSRV> for the dummy servers' service"),
        ),
        dictionary=("service", "kind", "status", "term", "server"),
    )
)

#: The collectors whose own CPU is accounted separately (``collector_self.<name>_s``).
COLLECTORS = ("haproxy", "cpu", "sockets", "netdev", "vrrp", "write")
_COLLECTOR_DOCS = {
    "haproxy": "the stats sockets (`show info;show stat` of every process)",
    "cpu": "the cgroup CPU (and memory) of every container, the host and the load generator",
    "sockets": "the socket counts (sock_diag) of every LB namespace",
    "netdev": "the interface counters of every LB namespace",
    "vrrp": "who holds the VIP",
    "write": "flushing every table to its chunk file",
}

COLLECTOR_SELF = register(
    Table(
        "collector_self",
        "the collector's own cost, once per sample",
        "collector",
        "bench/collect/collectors.py",
        (
            _t("end of the sample"),
            Column("usage_s", pa.float64(), "cumulative CPU seconds of the collector thread", "s"),
            Column("tick_s", pa.float64(), "wall seconds that sample took", "s"),
            *(
                Column(f"{name}_s", pa.float64(), f"cumulative CPU seconds of the collector thread in {doc}", "s")
                for name, doc in _COLLECTOR_DOCS.items()
            ),
        ),
    )
)



def by_source(source: str) -> tuple[Table, ...]:
    """The tables ``source`` writes ("collector" or "load"), in the order they were declared."""
    return tuple(t for t in TABLES.values() if t.source == source)
