#!/usr/bin/env python3
"""CPU of one sock_diag dump in a namespace that shares the host's TCP hash table or has one of its own, without a lab.

    sudo .venv/bin/python scripts/measure_socket_table.py [--sizes 0,262144,65536,4096] [--idle-sockets 0,20000] [--reps 200]

For each number of idle host sockets (loopback connections in this script's own
namespace, as in scripts/measure_collectors.py) and each table size it makes two
throwaway network namespaces with ``unshare -n``: the outer one (made from ours,
so it shares the host's table) sets ITS ``net.ipv4.tcp_child_ehash_entries`` to the
size, and the inner one, made from the outer, gets a table of that many buckets
(0: it shares the host's). The host's own setting is never touched. In the inner
namespace it opens 50 loopback connections and 50 TIME_WAITs (about what an LB
namespace of a smoke run holds) and prints the median CPU time
(``time.thread_time``) of a :class:`bench.collect.sockdiag.DiagCounter` count, IPv4
and IPv4+IPv6, and of one read of ``net/sockstat`` + ``net/sockstat6`` (the totals
the collectors read every second). Needs root and Linux >= 6.1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def inner(reps: int) -> None:
    """In the namespace to measure: open the sockets, time the dumps and the totals, print one JSON line."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from bench.collect import sockdiag

    server = socket.create_server(("127.0.0.1", 0), backlog=512)
    port = server.getsockname()[1]
    held = []
    for _ in range(50):
        held.append(socket.create_connection(("127.0.0.1", port)))
        held.append(server.accept()[0])
    for _ in range(50):  # closed by the client first: TIME_WAIT on its side
        c = socket.create_connection(("127.0.0.1", port))
        a = server.accept()[0]
        c.close()
        a.close()
    counter = sockdiag.DiagCounter(sockdiag.open_in_netns(None))
    out: dict[str, object] = {"tcp_ehash_entries": int(Path("/proc/sys/net/ipv4/tcp_ehash_entries").read_text())}
    for name, families in (("dump_v4_ms", (socket.AF_INET,)), ("dump_v4_v6_ms", (socket.AF_INET, socket.AF_INET6))):
        times = []
        for _ in range(reps):
            t0 = time.thread_time()
            counter.count(families)
            times.append(time.thread_time() - t0)
        out[name] = round(sorted(times)[len(times) // 2] * 1e3, 3)
    times = []
    for _ in range(reps * 5):
        t0 = time.thread_time()
        for name in ("sockstat", "sockstat6"):
            with open(f"/proc/self/net/{name}", "rb", buffering=0) as f:
                f.read()
        times.append(time.thread_time() - t0)
    out["sockstat_us"] = round(sorted(times)[len(times) // 2] * 1e6, 1)
    print(json.dumps(out), flush=True)


def outer(size: int, reps: int) -> str:
    """Set the outer namespace's tcp_child_ehash_entries and measure in a namespace made from it."""
    if size:
        Path("/proc/sys/net/ipv4/tcp_child_ehash_entries").write_text(f"{size}\n")
    done = subprocess.run(["unshare", "-n", sys.executable, __file__, "--inner", "--reps", str(reps)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the inner namespace failed: {done.stderr.strip()[-400:]}")
    return done.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,262144,65536,4096", help="table sizes; 0 = share the host's")
    ap.add_argument("--idle-sockets", default="0,20000")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--outer", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args.reps)
        return 0
    if args.outer is not None:
        print(outer(args.outer, args.reps))
        return 0
    sys.path.insert(0, str(ROOT / "scripts"))
    from measure_collectors import IdleSockets

    for idle in (int(x) for x in args.idle_sockets.split(",")):
        held = IdleSockets(idle)
        try:
            for size in (int(x) for x in args.sizes.split(",")):
                cmd = ["unshare", "-n", sys.executable, __file__, "--outer", str(size), "--reps", str(args.reps)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"unshare failed (root and Linux >= 6.1 needed): {done.stderr.strip()[-400:]}")
                print(f"idle host sockets {idle:>6}  child table {size:>7}: {done.stdout.strip()}", flush=True)
        finally:
            held.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
