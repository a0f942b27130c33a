"""Socket counts through sock_diag against the /proc text reader, and the address watch, on namespaces of the test's own.

A child process in a fresh network namespace (``unshare -n``; the collectors need root
for ``nsenter`` anyway) opens a known set of TCP sockets: listeners on IPv4 and IPv6,
established connections both ways, client-side TIME_WAITs. Nothing else lives in that
namespace, so the counts are exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench.analysis import cpu
from bench.collect import collectors, netns, nsnetlink, sockdiag
from bench.results.store import read_table

CHILD = r"""
import socket, sys, time
def listener(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 8443)); s.listen(64); return s
l4 = listener(socket.AF_INET, "127.0.0.1")
l6 = listener(socket.AF_INET6, "::1")
keep = []
for _ in range(5):                      # 5 established each way on IPv4
    c = socket.create_connection(("127.0.0.1", 8443)); keep += [c, l4.accept()[0]]
c = socket.create_connection(("::1", 8443)); keep += [c, l6.accept()[0]]   # 1 on IPv6
for _ in range(3):                      # 3 closed by the client first: TIME_WAIT on its side
    c = socket.create_connection(("127.0.0.1", 8443)); a = l4.accept()[0]
    c.close(); a.recv(1); a.close()
time.sleep(0.2)
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def namespace_with_sockets(port_range: str = "") -> Iterator[int]:
    """The pid of a child in a namespace of its own holding CHILD's sockets (and ``port_range``, "low high", if given)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip (like the collectors' nsenter)")
    setup = "ip link set lo up"
    if port_range:
        setup += f" && echo '{port_range}' > /proc/sys/net/ipv4/ip_local_port_range"
    proc = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", f'{setup} && exec "{sys.executable}" -c "$0"', CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.communicate()  # reaps it and closes both pipes


@pytest.fixture(scope="module")
def child() -> Iterator[int]:
    with namespace_with_sockets() as pid:
        yield pid


def proc_counts(pid: int) -> dict:
    texts = [netns.read(Path(f"/proc/{pid}/net/{f}")) for f in ("tcp", "tcp6")]
    return netns.SocketCounter().count(texts)


def test_counts_equal_the_proc_reader_and_the_known_sockets(child: int) -> None:
    counter = sockdiag.DiagCounter(sockdiag.open_in_netns(child))
    try:
        got = counter.count((socket.AF_INET, socket.AF_INET6))
    finally:
        counter.close()
    assert got == proc_counts(child)
    assert got[("ESTABLISHED", "out", "127.0.0.1", 0, "127.0.0.1", 8443)] == 5
    assert got[("ESTABLISHED", "in", "127.0.0.1", 8443, "127.0.0.1", 0)] == 5
    assert got[("TIME_WAIT", "out", "127.0.0.1", 0, "127.0.0.1", 8443)] == 3
    assert got[("ESTABLISHED", "out", "::1", 0, "::1", 8443)] == 1
    assert got[("ESTABLISHED", "in", "::1", 8443, "::1", 0)] == 1
    assert sum(got.values()) == 15  # nothing else: LISTEN is left out, like the /proc reader does
    assert (socket.AF_INET, socket.inet_pton(socket.AF_INET, "127.0.0.1") + bytes(12), 8443) in counter.listeners


def test_node_namespace_reads_sockets_by_netlink(child: int) -> None:
    ns = netns.NodeNamespace("test", child)
    try:
        assert ns.reader == "netlink"
        assert ns.socket_counts() == proc_counts(child)
        assert ns.read_tcp6  # the namespace has IPv6 TCP sockets: both families from now on
    finally:
        ns.close()
    forced = netns.NodeNamespace("test", child, reader="proc")
    assert forced.reader == "proc" and forced.socket_counts() == proc_counts(child)


def test_socket_totals_are_the_namespaces_own(child: int) -> None:
    """net/sockstat of the child's namespace: its sockets only (the host's are many more)."""
    ns = netns.NodeNamespace("test", child, reader="proc")
    totals = ns.socket_totals()
    # IPv4: a listener + 5 established each way; IPv6: a listener + 1 each way; 3 TIME_WAIT
    assert (totals.tcp_inuse, totals.tcp6_inuse, totals.time_wait) == (11, 3, 3)
    assert totals.total == 17
    assert ns.read_tcp6  # IPv6 sockets seen: the per-pair counts read both families from now on


class _Container:
    def __init__(self, pid: int):
        self.attrs = {"State": {"Pid": pid}}

    def reload(self) -> None:
        pass


class _NodeLab:
    """A lab of one LB node (the child's namespace) and nothing else."""

    def __init__(self, tmp: Path, pid: int):
        node = SimpleNamespace(name="lb-a", keepalived_service="lb-a-keepalived", processes=())
        self.project = "lbbench-unit"
        self.plan = SimpleNamespace(nodes=(node,), servers=(), vip="198.18.0.100", client_subnet="198.18.0.0/24", server_subnet="198.18.1.0/24")
        self.pid = pid
        self.tmp = tmp

    def containers(self) -> dict[str, Any]:
        return {"lb-a": _Container(self.pid)}

    def socket_path(self, service: str) -> Path:
        return self.tmp / f"{service}.sock"


@pytest.mark.parametrize(("port_range", "dense"), [("", False), ("40000 40039", True)])
def test_pairs_every_few_ticks_and_every_tick_near_the_port_range(tmp_path: Path, port_range: str, dense: bool) -> None:
    """17 sockets: far below the default range (pairs every PAIRS_EVERY ticks), 42 % of a 40-port range (every tick)."""
    with namespace_with_sockets(port_range) as pid:
        run_dir = tmp_path / "run"
        with collectors.Collectors(run_dir, _NodeLab(tmp_path, pid), interval=0.02, log=lambda m: None) as c:
            time.sleep(0.5)
    totals = read_table(run_dir, "socket_totals")
    assert len(totals) == c.ticks and (totals["node"] == "lb-a").all()
    assert (totals["tcp_inuse"] == 11).all() and (totals["tcp6_inuse"] == 3).all() and (totals["time_wait"] == 3).all()
    pairs = read_table(run_dir, "sockets")
    reads = pairs["t"].nunique()
    assert reads == int(totals["pairs_read"].sum()) == c.pair_reads
    if dense:
        assert reads == c.ticks and c.dense_ticks > 0
    else:
        # the first tick, every PAIRS_EVERY-th, and the final one
        assert c.ticks >= 10 and reads == len(range(0, c.ticks - 1, collectors.PAIRS_EVERY)) + 1 and c.dense_ticks == 0
    assert pairs.groupby("t", observed=True)["count"].sum().eq(15).all()  # 17 but the 2 listeners
    meta = json.loads((run_dir / "samples" / "collectors.json").read_text())
    assert not [e for e in meta["errors"] if "sockets" in e or "namespace" in e], meta["errors"]
    assert meta["socket_pairs"]["reads"] == reads
    # the namespace's TCP hash table, read once: in port_range, collectors.json and the summary's collectors
    tcp_hash = read_table(run_dir, "port_range")["tcp_hash"].tolist()
    assert tcp_hash == [meta["nodes"]["lb-a"]["tcp_hash"]] and tcp_hash[0] is not None
    if netns.TCP_CHILD_EHASH_ENTRIES.exists():
        own = int(netns.TCP_CHILD_EHASH_ENTRIES.read_text()) != 0  # the namespace was made from ours
        assert (tcp_hash[0] > 0) == own
        assert cpu.socket_table(read_table(run_dir, "port_range")) == {"socket_table": "own" if own else "shared", "socket_table_buckets": abs(tcp_hash[0])}


def test_tcp_hash_table_of_a_namespace(child: int) -> None:
    """A namespace made from one whose tcp_child_ehash_entries is 200 has a table of its own of 256 buckets (rounded
    up to a power of two); the test's own child shares our table exactly when our tcp_child_ehash_entries is 0."""
    if not netns.TCP_CHILD_EHASH_ENTRIES.exists():
        pytest.skip("no per-namespace TCP hash table in this kernel (Linux < 6.1)")
    ours = int(netns.TCP_CHILD_EHASH_ENTRIES.read_text())
    shared = netns.NodeNamespace("test", child, reader="proc").tcp_hash()
    assert shared is not None and (shared < 0 if ours == 0 else shared == 1 << (ours - 1).bit_length())
    # the outer namespace sets ITS tcp_child_ehash_entries (ours is left alone), the inner one is made from it
    script = "echo 200 > /proc/sys/net/ipv4/tcp_child_ehash_entries && exec unshare -n sh -c 'echo ready && read end'"
    proc = subprocess.Popen(["unshare", "-n", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert netns.NodeNamespace("test", proc.pid, reader="proc").tcp_hash() == 256
    finally:
        proc.kill()
        proc.communicate()
    assert int(netns.TCP_CHILD_EHASH_ENTRIES.read_text()) == ours
    assert netns.NodeNamespace("test", 2**22 + 12345, reader="proc").tcp_hash() is None  # no such process: unknown


def test_pairs_due() -> None:
    due = collectors.pairs_due
    every = collectors.PAIRS_EVERY
    assert due(None, {"lb-a": 10}, {"lb-a": 28232})  # never read yet
    assert not due(1, {"lb-a": 10, "lb-b": 10}, {"lb-a": 28232, "lb-b": 28232})
    assert due(every, {"lb-a": 10}, {"lb-a": 28232})
    near = int(collectors.PAIRS_DENSE_FROM * 1000)
    assert not due(1, {"lb-a": near - 1}, {"lb-a": 1000}) and due(1, {"lb-a": near}, {"lb-a": 1000})
    assert due(1, {"lb-a": 10, "lb-b": None}, {"lb-a": 28232, "lb-b": 28232})  # totals unreadable: read the pairs
    assert due(1, {"lb-a": 10}, {"lb-a": None})  # range unknown


def test_a_namespace_that_cannot_be_entered() -> None:
    gone = 2**22 + 12345  # above pid_max's default: no such process
    with pytest.raises(FileNotFoundError, match="/ns/net"):
        sockdiag.open_in_netns(gone)
    ns = netns.NodeNamespace("test", gone)  # "auto" falls back to /proc, which then fails per sample
    assert ns.reader == "proc"
    with pytest.raises(FileNotFoundError, match="/net/tcp"):
        ns.socket_counts()
    with pytest.raises(FileNotFoundError, match="/ns/net"):
        netns.NodeNamespace("test", gone, reader="netlink")


def message(length: int, state: int, sport: int) -> bytes:
    """One synthetic SOCK_DIAG_BY_FAMILY message of ``length`` bytes."""
    head = struct.pack("=IHHII", length, sockdiag.SOCK_DIAG_BY_FAMILY, 2, 1, 0)
    body = struct.pack("=BBBBHH", socket.AF_INET, state, 0, 0, socket.htons(sport), socket.htons(443))
    return (head + body).ljust(length, b"\0")


def test_offsets_uniform_stride_and_mixed_lengths() -> None:
    uniform = b"".join(message(96, 6, 40000 + i) for i in range(5))
    assert sockdiag._offsets(uniform).tolist() == [0, 96, 192, 288, 384]
    mixed = message(96, 6, 1) + message(112, 1, 2) + message(96, 6, 3)
    assert sockdiag._offsets(mixed).tolist() == [0, 96, 208]
    # a read that ends with NLMSG_DONE is walked message by message
    done = struct.pack("=IHHIIi", 20, sockdiag.NLMSG_DONE, 2, 1, 0, 0)
    assert sockdiag._offsets(uniform + done).tolist() == [0, 96, 192, 288, 384, 480]
    f = sockdiag.Fields((mixed, np.array([0, 96, 208])))
    assert f.state.tolist() == [6, 1, 6] and f.sport.tolist() == [1, 2, 3] and f.dport.tolist() == [443] * 3


def test_idle_sockets_elsewhere_cost_no_python_work(child: int) -> None:
    """2,000 idle connections in our own namespace do not show up (or get parsed) in the child's."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    pairs = []
    try:
        for _ in range(1000):
            pairs.append(socket.create_connection(("127.0.0.1", port)))
            pairs.append(server.accept()[0])
        counter = sockdiag.DiagCounter(sockdiag.open_in_netns(child))
        try:
            _data, starts = sockdiag.dump(counter.sock, socket.AF_INET)
            assert len(starts) == 5 + 5 + 3 + 1  # the child's IPv4 sockets, listener included
            assert sum(counter.count().values()) == 13
        finally:
            counter.close()
    finally:
        for s in pairs:
            s.close()
        server.close()


def test_address_watch_wakes_on_a_new_address_in_the_namespace() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip (like the collectors' nsenter)")
    script = "ip link set lo up && echo ready && read go && ip addr add 198.18.255.1/32 dev lo && echo added && read end"
    proc = subprocess.Popen(["unshare", "-n", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watch = nsnetlink.AddressWatch()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        assert watch.add(proc.pid) and watch.add(proc.pid)  # twice: one subscription
        assert not watch.wait(0.05)  # nothing changed
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "added"
        assert watch.wait(5.0)
        assert "198.18.255.1" in netns.parse_fib_trie_local(netns.read(Path(f"/proc/{proc.pid}/net/fib_trie")))
        assert not watch.wait(0.05)  # drained: one wake-up per change
    finally:
        watch.close()
        proc.kill()
        proc.communicate()
    assert not nsnetlink.AddressWatch().add(2**22 + 12345)  # no such process: not watched, wait() then just sleeps
