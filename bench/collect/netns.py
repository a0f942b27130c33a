"""An LB node's network namespace, seen from the host through the process owning it.

Per sample, without entering the namespace:

- TCP sockets, counted per state and address pair, through a sock_diag netlink
  socket created inside the namespace once (:mod:`bench.collect.sockdiag`; IPv6
  too once the namespace ever had IPv6 TCP sockets per ``net/sockstat6``). Where
  the kernel refuses sock_diag, the text of ``/proc/<pid>/net/tcp{,6}`` instead;
- interface counters (``/proc/<pid>/net/dev``: ``/proc/<pid>/net/*`` shows the namespace of ``<pid>``);
- the local addresses (``net/fib_trie``), i.e. whether the node holds the VIP.

Two things need the namespace itself and are read once at start with
``nsenter``: ``ip_local_port_range`` (a per-namespace sysctl) and the interface
addresses (which interface is on the client and which on the server network).

Socket counting keeps what ephemeral-port analysis needs without one row per
socket: a socket whose local address:port is a listener of the namespace was
accepted (``direction`` "in"): its local port is kept and the remote port (the
peer's ephemeral port) is folded to 0. Any other socket was opened from here
(``direction`` "out"): its local port is the ephemeral one and is folded to 0,
the remote port is kept. So "out" rows grouped by (src, dst, dport) are the
ephemeral ports in use per source address and destination.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy: imported by the collectors that count sockets, not by everything that reads a namespace
    from . import sockdiag

PROC = Path("/proc")

#: TCP states as /proc/net/tcp prints them (include/net/tcp_states.h).
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
    "0C": "NEW_SYN_RECV",
}
LISTEN = "0A"
_ANY4 = "00000000"
_ANY6 = "0" * 32
_MAPPED_PREFIX = "0000000000000000FFFF0000"  # ::ffff:0:0/96 in /proc's word order


# ---------------------------------------------------------------- addresses


def decode_addr(hexaddr: str) -> str:
    """An address as /proc/net/tcp{,6} prints it (host-order 32-bit words) -> text.

    IPv4-mapped IPv6 addresses come out as plain IPv4.

    >>> decode_addr("0100007F")
    '127.0.0.1'
    """
    if len(hexaddr) == 8:
        return socket.inet_ntoa(struct.pack("=I", int(hexaddr, 16)))
    if len(hexaddr) == 32:
        if hexaddr.upper().startswith(_MAPPED_PREFIX):
            return socket.inet_ntoa(struct.pack("=I", int(hexaddr[24:], 16)))
        raw = b"".join(struct.pack("=I", int(hexaddr[i : i + 8], 16)) for i in range(0, 32, 8))
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise ValueError(f"not a /proc/net/tcp address: {hexaddr!r}")


def parse_proc_net_tcp(text: str) -> Iterator[tuple[str, str, int, str, int]]:
    """Sockets of a ``/proc/net/tcp`` or ``tcp6`` file as ``(state, local ip, local port, remote ip, remote port)``."""
    for line in text.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 4:
            continue
        laddr, _, lport = parts[1].partition(":")
        raddr, _, rport = parts[2].partition(":")
        state = TCP_STATES.get(parts[3].upper(), parts[3])
        yield state, decode_addr(laddr), int(lport, 16), decode_addr(raddr), int(rport, 16)


@dataclass
class SocketCounter:
    """Counts a namespace's TCP sockets per (state, direction, local, remote); remembers listeners.

    Listeners are remembered for the whole run, so sockets accepted by a
    process that died since still count as "in".
    """

    listeners: set[tuple[str, str]] = field(default_factory=set)  # (local addr hex, port hex)
    _names: dict[str, str] = field(default_factory=dict)

    def _addr(self, hexaddr: str) -> str:
        name = self._names.get(hexaddr)
        if name is None:
            name = self._names[hexaddr] = decode_addr(hexaddr)
        return name

    def count(self, texts: Iterable[str]) -> dict[tuple[str, str, str, int, str, int], int]:
        """``{(state, direction, src, lport, dst, dport): count}`` over the given files, LISTEN excluded."""
        parsed = []
        for text in texts:
            for line in text.splitlines()[1:]:
                parts = line.split(None, 4)
                if len(parts) < 4:
                    continue
                st = parts[3].upper()
                laddr, _, lport = parts[1].partition(":")
                if st == LISTEN:
                    self.listeners.add((laddr, lport))
                    continue
                parsed.append((st, laddr, lport, parts[2]))
        listeners = self.listeners
        counts: Counter[tuple[str, str, str, str, str, str]] = Counter()
        for st, laddr, lport, remote in parsed:
            raddr, _, rport = remote.partition(":")
            if (laddr, lport) in listeners or (_ANY4, lport) in listeners or (_ANY6, lport) in listeners:
                counts[(st, "in", laddr, lport, raddr, "0")] += 1
            else:
                counts[(st, "out", laddr, "0", raddr, rport)] += 1
        return {
            (TCP_STATES.get(st, st), d, self._addr(la), int(lp, 16), self._addr(ra), int(rp, 16)): n
            for (st, d, la, lp, ra, rp), n in counts.items()
        }


@dataclass(frozen=True)
class SocketTotals:
    """A namespace's TCP socket totals from ``net/sockstat`` and ``net/sockstat6`` (O(1) for the kernel)."""

    tcp_inuse: int
    """IPv4 TCP sockets in the namespace's hash tables (every state but TIME_WAIT, listeners included)"""
    tcp6_inuse: int
    """the same for IPv6"""
    time_wait: int
    """TIME_WAIT sockets of the namespace, both families"""

    @property
    def total(self) -> int:
        """Every TCP socket of the namespace: an upper bound of the ports any one address pair holds."""
        return self.tcp_inuse + self.tcp6_inuse + self.time_wait


def parse_sockstat_tcp(text: str) -> tuple[int, int]:
    """``TCP: inuse N orphan O tw T ...`` from ``/proc/net/sockstat`` as ``(inuse, tw)``.

    ``inuse`` and ``tw`` are the namespace's own (``orphan``, ``alloc`` and ``mem`` are host-wide).

    >>> parse_sockstat_tcp("sockets: used 5\\nTCP: inuse 101 orphan 0 tw 50 alloc 294 mem 86\\n")
    (101, 50)
    """
    for line in text.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            values = dict(zip(fields[1::2], fields[2::2], strict=False))
            return int(values["inuse"]), int(values.get("tw", 0))
    raise ValueError("no TCP line in net/sockstat")


def parse_sockstat6_tcp(text: str) -> int:
    """``TCP6: inuse N`` from ``/proc/net/sockstat6`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("TCP6:"):
            fields = line.split()
            if "inuse" in fields:
                return int(fields[fields.index("inuse") + 1])
    return 0


# ---------------------------------------------------------------- interfaces


@dataclass(frozen=True)
class IfaceCounters:
    rx_bytes: int
    rx_packets: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_dropped: int


def parse_proc_net_dev(text: str) -> dict[str, IfaceCounters]:
    """``/proc/net/dev`` as ``{iface: counters}``."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        v = rest.split()
        # rx: bytes packets errs drop fifo frame compressed multicast | tx: bytes packets errs drop ...
        out[name.strip()] = IfaceCounters(int(v[0]), int(v[1]), int(v[3]), int(v[8]), int(v[9]), int(v[11]))
    return out


def parse_ip_addr(text: str) -> dict[str, list[str]]:
    """``ip -o addr`` output as ``{iface: [address, ...]}`` (without prefix length)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        iface = fields[1].split("@", 1)[0]
        out.setdefault(iface, []).append(fields[3].split("/", 1)[0])
    return out


def classify_ifaces(addrs: dict[str, list[str]], client_subnet: str, server_subnet: str) -> dict[str, str]:
    """Interface -> network (client | server | lo | other) by the subnet its addresses are in."""
    client = ipaddress.ip_network(client_subnet)
    server = ipaddress.ip_network(server_subnet)
    out = {}
    for iface, items in addrs.items():
        ips = [ipaddress.ip_address(a) for a in items]
        if any(ip in client for ip in ips):
            out[iface] = "client"
        elif any(ip in server for ip in ips):
            out[iface] = "server"
        elif iface == "lo":
            out[iface] = "lo"
        else:
            out[iface] = "other"
    return out


def parse_fib_trie_local(text: str) -> set[str]:
    """Addresses assigned in a namespace: the ``/32 host LOCAL`` leaves of ``/proc/net/fib_trie``."""
    found = set()
    leaf = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|-- "):
            leaf = s[4:]
        elif leaf is not None and s.startswith("/32 host LOCAL"):
            found.add(leaf)
    return found


def parse_port_range(text: str) -> tuple[int, int]:
    """``ip_local_port_range`` ("32768\\t60999") as ``(low, high)``."""
    low, high = text.split()[:2]
    return int(low), int(high)


# ---------------------------------------------------------------- one node


def nsenter(pid: int, *cmd: str, timeout: float = 5.0) -> str:
    """Run ``cmd`` in the network namespace of ``pid`` (host binaries) and return stdout."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], capture_output=True, check=False, text=True, timeout=timeout)
    if out.returncode != 0:
        raise OSError(f"nsenter -t {pid} -n {' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def read(path: Path) -> str:
    """One /proc file in a single read where possible (a seq_file walks its table once per read call)."""
    with open(path, "rb", buffering=0) as f:
        chunks = []
        while True:
            data = f.read(1 << 20)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


#: Buckets of the TCP hash table of the reader's network namespace (negative: shared with the host's); Linux >= 6.1.
TCP_EHASH_ENTRIES = Path("/proc/sys/net/ipv4/tcp_ehash_entries")
#: Size of the table each network namespace created from this one gets (0: they share the host's).
TCP_CHILD_EHASH_ENTRIES = Path("/proc/sys/net/ipv4/tcp_child_ehash_entries")


#: Socket reader: "auto" (sock_diag, falling back to /proc/<pid>/net/tcp where the kernel refuses it),
#: "netlink" or "proc". LBBENCH_COLLECT_SOCKETS overrides it (to compare the two, see scripts/measure_collectors.py).
SOCKET_READER = os.environ.get("LBBENCH_COLLECT_SOCKETS", "auto")


class NodeNamespace:
    """The network namespace of one LB node, reached through a process inside it."""

    def __init__(self, node: str, pid: int, reader: str = SOCKET_READER):
        self.node = node
        self.pid = pid
        self.sockets = SocketCounter()
        self.read_tcp6 = False
        self.networks: dict[str, str] = {}
        self.addresses: dict[str, list[str]] = {}
        self.reader = reader
        self._diag: sockdiag.DiagCounter | None = None
        if reader in ("auto", "netlink"):
            from . import sockdiag

            try:
                self._diag = sockdiag.DiagCounter(sockdiag.open_in_netns(pid))
                self._diag.count()  # the kernel answers (INET_DIAG built in or loadable)
                self.reader = "netlink"
            except OSError:
                if self._diag is not None:
                    self._diag.close()
                    self._diag = None
                if reader == "netlink":
                    raise
                self.reader = "proc"

    def close(self) -> None:
        """Release the netlink socket (it keeps the namespace alive)."""
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def _net(self, name: str) -> Path:
        return PROC / str(self.pid) / "net" / name

    def port_range(self) -> tuple[int, int]:
        return parse_port_range(nsenter(self.pid, "cat", "/proc/sys/net/ipv4/ip_local_port_range"))

    def tcp_hash(self) -> int | None:
        """The namespace's TCP hash table, as its ``net.ipv4.tcp_ehash_entries`` says (None: unknown).

        Positive: the namespace has a table of its own with that many buckets (the host's
        ``net.ipv4.tcp_child_ehash_entries`` was set when it was created), so a sock_diag dump
        walks only its sockets. Negative: it shares the host's table, and every dump walks
        every TCP socket of the host. None before Linux 6.1, or where it cannot be read.
        """
        from . import nsnetlink

        try:
            return int(nsnetlink.run_in_netns(self.pid, lambda: read(TCP_EHASH_ENTRIES)))
        except (OSError, ValueError):
            return None

    def learn_interfaces(self, client_subnet: str, server_subnet: str) -> None:
        self.addresses = parse_ip_addr(nsenter(self.pid, "ip", "-o", "addr", "show"))
        self.networks = classify_ifaces(self.addresses, client_subnet, server_subnet)

    def socket_counts(self) -> dict[tuple[str, str, str, int, str, int], int]:
        if not self.read_tcp6 and self._tcp6_in_use():
            self.read_tcp6 = True  # from now on, for the rest of the run
        if self._diag is not None:
            families = (socket.AF_INET, socket.AF_INET6) if self.read_tcp6 else (socket.AF_INET,)
            return self._diag.count(families)
        texts = [read(self._net("tcp"))]
        if self.read_tcp6:
            texts.append(read(self._net("tcp6")))
        return self.sockets.count(texts)

    def _tcp6_in_use(self) -> bool:
        return self._tcp6_inuse() > 0

    def _tcp6_inuse(self) -> int:
        try:
            return parse_sockstat6_tcp(read(self._net("sockstat6")))
        except FileNotFoundError:  # no IPv6 in this kernel
            return 0

    def socket_totals(self) -> SocketTotals:
        """The namespace's TCP socket totals: two small /proc reads, whatever the host's socket count."""
        inuse, tw = parse_sockstat_tcp(read(self._net("sockstat")))
        inuse6 = self._tcp6_inuse()
        if inuse6 and not self.read_tcp6:
            self.read_tcp6 = True  # the per-pair counts read IPv6 too from now on
        return SocketTotals(inuse, inuse6, tw)

    def netdev(self) -> dict[str, IfaceCounters]:
        return parse_proc_net_dev(read(self._net("dev")))

    def local_addresses(self) -> set[str]:
        return parse_fib_trie_local(read(self._net("fib_trie")))
