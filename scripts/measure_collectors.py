#!/usr/bin/env python3
"""The collectors' own CPU per collector, socket reader against socket reader, with and without idle host sockets.

    /work/coord/labrun .venv/bin/python scripts/measure_collectors.py [--scenario smoke] [--duration 30s]
        [--rounds 2] [--readers proc,netlink] [--idle-sockets 0,20000] [--checkouts now=.,old=/path/to/other/checkout]
        [--keep DIR]

For each round, each number of idle sockets and each socket reader (interleaved, so
the machine's noise falls on all alike) it runs ``bench run SCENARIO`` with
``LBBENCH_COLLECT_SOCKETS=<reader>`` and prints ``summary.json``'s ``collectors``
(% of one core, mean over the steady window: the total and each collector) and
the largest number of TCP sockets the collectors counted in one LB namespace.

Checkouts: each LABEL=DIR runs ``bench`` with DIR's ``bench`` package first on
PYTHONPATH (same venv), so two versions of the code are compared in one session,
interleaved like the rest.

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
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.results.store import read_table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".venv" / "bin" / "bench"


HOLDER = r"""
import resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
server = socket.create_server(("127.0.0.1", 0), backlog=1024)
port = server.getsockname()[1]
held = []
for _ in range(n // 2):
    held.append(socket.create_connection(("127.0.0.1", port)))
    held.append(server.accept()[0])
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
            "dir": str(out) if keep is not None else None,
            "readers": sorted({n.get("sockets_reader", "proc") for n in meta["nodes"].values()}),
        }
    finally:
        if keep is None:
            shutil.rmtree(out.parent, ignore_errors=True)


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
    args = ap.parse_args()
    readers = args.readers.split(",")
    checkouts = [tuple(c.split("=", 1)) for c in args.checkouts.split(",") if c] or [("", "")]
    idles = [int(x) for x in args.idle_sockets.split(",")]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    results = []
    for rnd in range(1, args.rounds + 1):
        for idle in idles:
            held = IdleSockets(idle)
            try:
                for label, checkout in checkouts:
                    for reader in readers:
                        r = one_run(args.scenario, args.duration, reader, checkout, args.keep)
                        r.update(round=rnd, idle_sockets=idle, reader=reader, checkout=label)
                        results.append(r)
                        c = r["collectors"]
                        parts = " ".join(f"{k}={v}" for k, v in (c.get("by_collector") or {}).items())
                        print(
                            f"round {rnd} {label + ' ' if label else ''}idle={idle:>6} reader={reader:<8} total={c['cpu_pct']}% of a core  [{parts}]"
                            f"  lab sockets max {r['max_lab_sockets']}, {r['requests_per_s']} req/s",
                            flush=True,
                        )
                        if args.json:
                            print(json.dumps(r), flush=True)
            finally:
                held.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
