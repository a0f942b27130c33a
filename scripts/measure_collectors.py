#!/usr/bin/env python3
"""The collectors' own CPU per collector, socket reader against socket reader, with and without idle host sockets.

    /work/coord/labrun .venv/bin/python scripts/measure_collectors.py [--scenario smoke] [--duration 30s]
        [--rounds 2] [--readers proc,netlink] [--idle-sockets 0,20000] [--checkouts now=.,old=/path/to/other/checkout]
        [--keep DIR] [--child-ehash 0,262144]

For each round, each number of idle sockets and each socket reader (interleaved, so
the machine's noise falls on all alike) it runs ``bench run SCENARIO`` with
``LBBENCH_COLLECT_SOCKETS=<reader>`` and prints ``summary.json``'s ``collectors``
(% of one core, mean over the steady window: the total and each collector) and
the largest number of TCP sockets the collectors counted in one LB namespace.

Checkouts: each LABEL=DIR runs ``bench`` with DIR's ``bench`` package first on
PYTHONPATH (same venv), so two versions of the code are compared in one session,
interleaved like the rest.

``--child-ehash 0,262144`` runs each case once per value of the HOST's
``net.ipv4.tcp_child_ehash_entries`` (interleaved, the order reversed every other
group): 0 = the lab's namespaces share the host's TCP hash table, N = each gets a
table of its own of N buckets. It changes the host for every namespace created
meanwhile (other containers too) and is set back to its value before the script
when it ends; without the option the host is left alone. Each run's line says
which table the LB namespaces had (``collectors.socket_table``).

``--keep DIR`` keeps each run's folder under DIR (its ``samples/collector_self`` has the
collector thread's CPU per collector at every tick); without it they are removed.

Idle sockets: this script opens that many TCP sockets (connected pairs on
loopback, in the host's namespace, outside every lab) before the runs and keeps
them open through them, to show whether a collector's cost grows with sockets
that are not the lab's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.results.store import read_table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".venv" / "bin" / "bench"


HOLDER = r"""
import resource, socket, struct, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
server = socket.create_server(("127.0.0.1", 0), backlog=1024)
port = server.getsockname()[1]
held = []
linger = struct.pack("ii", 1, 0)  # closed with a reset: no TIME_WAIT left behind in the host's table for the next runs
for _ in range(n // 2):
    held.append(socket.create_connection(("127.0.0.1", port)))
    held.append(server.accept()[0])
    held[-2].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    held[-1].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
print("ready", flush=True)
sys.stdin.read()
"""
#: Sockets per holder process (a process may not have more open files than its hard limit).
PER_HOLDER = 8000


class IdleSockets:
    """``n`` open TCP sockets in the host's namespace: n/2 idle loopback connections, both ends
    kept open by child processes (PER_HOLDER sockets each) until :meth:`close`."""

    def __init__(self, n: int):
        self.procs: list[subprocess.Popen] = []
        while n > 0:
            chunk = min(n, PER_HOLDER)
            proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(chunk)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                self.close()
                raise SystemExit("could not open the idle sockets (file limit?)")
            n -= chunk

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.communicate()
        self.procs.clear()


CHILD_EHASH = Path("/proc/sys/net/ipv4/tcp_child_ehash_entries")


def set_child_ehash(value: int) -> None:
    CHILD_EHASH.write_text(f"{value}\n")


def one_run(scenario: str, duration: str, reader: str, checkout: str = "", keep: Path | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="lbbench-collectors-", dir=keep)) / "run"
    env = {**os.environ, "LBBENCH_COLLECT_SOCKETS": reader}
    if checkout:
        env["PYTHONPATH"] = str(Path(checkout).resolve())
    try:
        proc = subprocess.run(
            [str(BENCH), "run", scenario, "--duration", duration, "--out", str(out)],
            env=env, capture_output=True, check=False, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"bench run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        summary = json.loads((out / "summary.json").read_text())
        meta = json.loads((out / "samples" / "collectors.json").read_text())
        sockets = read_table(out, "sockets", columns=["t", "node", "count"])
        per_sample = sockets.groupby(["t", "node"], observed=True)["count"].sum()
        return {
            "collectors": summary["collectors"],
            "max_lab_sockets": int(per_sample.max()) if not per_sample.empty else 0,
            "requests_per_s": summary["requests"]["per_s"],
            "socket_table": summary["collectors"].get("socket_table"),
            "pair_dump_ms": pair_dump_ms(out),
            "dir": str(out) if keep is not None else None,
            "readers": sorted({n.get("sockets_reader", "proc") for n in meta["nodes"].values()}),
        }
    finally:
        if keep is None:
            shutil.rmtree(out.parent, ignore_errors=True)


def pair_dump_ms(out: Path) -> float | None:
    """Median CPU ms of the collector thread's ``sockets`` step on the ticks that dumped the address pairs."""
    cs = read_table(out, "collector_self", columns=["t", "sockets_s"]).sort_values("t")
    totals = read_table(out, "socket_totals", columns=["t", "pairs_read"])
    if cs.empty or totals.empty or "sockets_s" not in cs:
        return None
    step = cs["sockets_s"].diff()
    cs = cs.assign(step_ms=step * 1e3)
    # a tick's totals are read just before its dump: match each collector_self row to the nearest totals row
    merged = pd.merge_asof(cs.dropna(), totals.sort_values("t"), on="t", direction="backward")
    dumps = merged[merged["pairs_read"].fillna(False).astype(bool)]["step_ms"]
    return round(float(dumps.median()), 2) if not dumps.empty else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--duration", default="30s")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--readers", default="proc,netlink")
    ap.add_argument("--idle-sockets", default="0,20000", help="comma-separated numbers of idle host sockets")
    ap.add_argument("--checkouts", default="", help="comma-separated LABEL=DIR: compare these checkouts' code (default: this one)")
    ap.add_argument("--json", action="store_true", help="print each result as a JSON line as well")
    ap.add_argument("--keep", type=Path, help="keep each run's folder under this directory (default: removed)")
    ap.add_argument("--child-ehash", default="", help="comma-separated values of the host's net.ipv4.tcp_child_ehash_entries to run each case with (default: leave the host alone)")
    args = ap.parse_args()
    ehashes: list[int | None] = [int(x) for x in args.child_ehash.split(",") if x] or [None]
    original = int(CHILD_EHASH.read_text()) if ehashes != [None] else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below (sets the host back)
    try:
        return measure(args, ehashes)
    finally:
        if original is not None:
            set_child_ehash(original)
            print(f"host net.ipv4.tcp_child_ehash_entries set back to {original}", flush=True)


def measure(args: argparse.Namespace, ehashes: list[int | None]) -> int:
    readers = args.readers.split(",")
    checkouts = [tuple(c.split("=", 1)) for c in args.checkouts.split(",") if c] or [("", "")]
    idles = [int(x) for x in args.idle_sockets.split(",")]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    results = []
    group = 0
    for rnd in range(1, args.rounds + 1):
        for idle in idles:
            held = IdleSockets(idle)
            try:
                for ehash in ehashes if group % 2 == 0 else ehashes[::-1]:
                    if ehash is not None:
                        set_child_ehash(ehash)
                    for label, checkout in checkouts:
                        for reader in readers:
                            r = one_run(args.scenario, args.duration, reader, checkout, args.keep)
                            r.update(round=rnd, idle_sockets=idle, reader=reader, checkout=label, child_ehash=ehash)
                            results.append(r)
                            c = r["collectors"]
                            parts = " ".join(f"{k}={v}" for k, v in (c.get("by_collector") or {}).items())
                            mode = "" if ehash is None else f"child_ehash={ehash} "
                            print(
                                f"round {rnd} {label + ' ' if label else ''}{mode}idle={idle:>6} reader={reader:<8} total={c['cpu_pct']}% of a core  [{parts}]"
                                f"  pair dump {r['pair_dump_ms']} ms, socket table {r['socket_table']}, lab sockets max {r['max_lab_sockets']}, {r['requests_per_s']} req/s",
                                flush=True,
                            )
                            if args.json:
                                print(json.dumps(r), flush=True)
                group += 1
            finally:
                held.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
