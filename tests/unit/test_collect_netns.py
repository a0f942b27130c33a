"""An LB node's namespace as /proc shows it: TCP sockets, interfaces, local addresses, port range.

The recorded files come from lb-a of a split lab (client 198.18.0.0/24, server
198.18.1.0/24, VIP 198.18.0.100) under 12 keep-alive HTTPS clients with slow responses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.collect import netns

DATA = Path(__file__).parent / "data" / "collect"
VIP = "198.18.0.100"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize(
    ("hexaddr", "text"),
    [
        ("0100007F", "127.0.0.1"),
        ("0400007F", "127.0.0.4"),
        ("640012C6", "198.18.0.100"),
        ("00000000", "0.0.0.0"),
        ("00000000000000000000000001000000", "::1"),
        ("0000000000000000FFFF00000100007F", "127.0.0.1"),  # IPv4-mapped comes out as IPv4
        ("00000000000000000000000000000000", "::"),
    ],
)
def test_decode_addr(hexaddr: str, text: str) -> None:
    assert netns.decode_addr(hexaddr) == text


def test_parse_proc_net_tcp_lines() -> None:
    sockets = list(netns.parse_proc_net_tcp(recorded("proc_net_tcp.txt")))
    assert len(sockets) == 89  # every line but the header
    assert ("LISTEN", VIP, 443, "0.0.0.0", 0) in sockets
    assert ("LISTEN", "127.0.0.1", 8404, "0.0.0.0", 0) in sockets
    client = [s for s in sockets if s[0] == "ESTABLISHED" and s[1] == VIP]
    assert len(client) == 12 and all(s[2] == 443 and s[3] == "198.18.0.1" for s in client)
    (line,) = netns.parse_proc_net_tcp(
        "  sl  local_address rem_address   st\n"
        "   0: 0B01A8C0:C350 150112C6:1F90 06 00000000:00000000 03:00000F7C 00000000     0        0 0 3\n"
    )
    assert line == ("TIME_WAIT", "192.168.1.11", 50000, "198.18.1.21", 8080)


def test_socket_counts_fold_ephemeral_ports() -> None:
    counter = netns.SocketCounter()
    counts = counter.count([recorded("proc_net_tcp.txt")])
    assert all(state != "LISTEN" for state, *_ in counts)
    # client side: accepted on VIP:443, remote ports folded
    assert counts[("ESTABLISHED", "in", VIP, 443, "198.18.0.1", 0)] == 12
    # frontend -> backend: both halves are in the namespace; "out" is the frontend's side
    established = {k: n for k, n in counts.items() if k[0] == "ESTABLISHED"}
    fe_be_out = sum(n for (_, d, _, _, dst, _), n in established.items() if d == "out" and dst.startswith("127."))
    fe_be_in = sum(n for (_, d, src, _, _, _), n in established.items() if d == "in" and src.startswith("127."))
    assert fe_be_out == fe_be_in == 26
    assert counts[("ESTABLISHED", "out", "127.0.0.1", 0, "127.0.0.1", 8001)] == 4
    assert counts[("ESTABLISHED", "in", "127.0.0.1", 8001, "127.0.0.1", 0)] == 4
    # backend -> server: source address on the server network, one row per server
    assert counts[("ESTABLISHED", "out", "198.18.1.11", 0, "198.18.1.21", 8080)] == 4
    assert counts[("TIME_WAIT", "in", "127.0.0.2", 8001, "127.0.0.2", 0)] == 1
    assert sum(counts.values()) == 89 - 12  # everything but the 12 listeners


def test_listeners_are_remembered_across_samples() -> None:
    counter = netns.SocketCounter()
    counter.count([recorded("proc_net_tcp.txt")])
    header = "  sl  local_address rem_address   st\n"
    # later sample: the listener is gone (process killed), its accepted socket lingers
    later = header + "   0: 640012C6:01BB 010012C6:D431 08 00000000:00000000 00:00000000 00000000 0 0 0\n"
    assert counter.count([later]) == {("CLOSE_WAIT", "in", VIP, 443, "198.18.0.1", 0): 1}


def test_tcp6_wildcard_listener_and_mapped_addresses() -> None:
    counts = netns.SocketCounter().count([recorded("proc_net_tcp6.txt")])
    assert counts == {
        ("ESTABLISHED", "in", "::1", 49167, "::1", 0): 1,
        ("ESTABLISHED", "in", "127.0.0.1", 49167, "127.0.0.1", 0): 1,
        ("ESTABLISHED", "out", "::1", 0, "::1", 49167): 1,
    }


def test_sockstat6() -> None:
    assert netns.parse_sockstat6_tcp(recorded("sockstat6.txt")) == 0
    assert netns.parse_sockstat6_tcp("TCP6: inuse 4\nUDP6: inuse 0\n") == 4
    assert netns.parse_sockstat6_tcp("") == 0


def test_proc_net_dev() -> None:
    dev = netns.parse_proc_net_dev(recorded("proc_net_dev.txt"))
    assert set(dev) == {"lo", "eth0", "eth1"}
    assert dev["eth0"] == netns.IfaceCounters(rx_bytes=43857, rx_packets=263, rx_dropped=0, tx_bytes=229951, tx_packets=404, tx_dropped=0)
    assert dev["eth1"].tx_packets == 934


def test_interfaces_map_to_networks_by_address() -> None:
    addrs = netns.parse_ip_addr(recorded("ip_addr.txt"))
    assert addrs == {"lo": ["127.0.0.1"], "eth0": ["198.18.0.11", VIP], "eth1": ["198.18.1.11"]}
    networks = netns.classify_ifaces({**addrs, "eth9": ["10.9.9.9"]}, "198.18.0.0/24", "198.18.1.0/24")
    assert networks == {"lo": "lo", "eth0": "client", "eth1": "server", "eth9": "other"}


def test_fib_trie_local_addresses() -> None:
    local = netns.parse_fib_trie_local(recorded("fib_trie.txt"))
    assert local == {"127.0.0.1", "198.18.0.11", VIP, "198.18.1.11"}
    backup = recorded("fib_trie.txt").replace(f"|-- {VIP}\n", "|-- 198.18.0.99\n")
    assert VIP not in netns.parse_fib_trie_local(backup)


def test_port_range() -> None:
    assert netns.parse_port_range("32768\t60999\n") == (32768, 60999)
