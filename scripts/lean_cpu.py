"""The lean engine's CPU per request on loopback, without Docker or the lab lock.

Two modes:

``calibrate`` (the default) runs ``bench calibrate``'s rounds (the same clients,
the same HAProxy configuration, the same per-client-core accounting) against a
HAProxy binary of this machine instead of the lab image in a container::

    scripts/lean_cpu.py calibrate --haproxy PATH [--rounds 5] [--seconds 3] \\
        [--client wrk-ka --client lean-ka ...] [--baseline DIR] [--out result.json]

``direct`` drives :class:`~bench.load.leanclient.LeanClient` s in this process
(gevent, no Locust), each client's requests recorded into a real
:class:`~bench.load.capture.RequestCapture`, and prints the process's CPU time
(user+system, ``resource.getrusage``) per request; the loop to profile
(``--profile FILE`` writes cProfile stats; or ``py-spy record -- python
scripts/lean_cpu.py direct ...``)::

    scripts/lean_cpu.py direct --haproxy PATH [--mode ka|close] [--seconds 5] [--connections 50]

Any HAProxy 2.2 or later will do; without one installed, Debian's package
unpacked (nothing installed, no service started)::

    cd /tmp/hap && apt-get download haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1 \\
        && for f in *.deb; do dpkg -x $f root; done
    LD_LIBRARY_PATH=/tmp/hap/root/usr/lib/x86_64-linux-gnu scripts/lean_cpu.py calibrate --haproxy /tmp/hap/root/usr/sbin/haproxy

The HAProxy runs in the foreground of its own session, is bound to 127.0.0.1
only, and is killed when the script ends (also on Ctrl-C). CPU per request is
steadier than requests per second on a busy machine, but the figures here are
not the lab's (another HAProxy version, no container); use them to compare
versions of the engine, and ``bench calibrate`` for the figures of record.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: the lbbench checkout whose ``bench`` package runs (``direct --checkout`` sets it for its clients)
ROOT = os.environ.get("LEAN_CPU_ROOT") or str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)


@contextlib.contextmanager
def native_haproxy(binary: str, nbthread: int = 1) -> Iterator:  # type: ignore[type-arg]
    """A HAProxy binary of this machine with calibrate's configuration on loopback; killed on exit."""
    from bench.calibrate import Endpoint, write_haproxy_files
    from bench.collect.statsock import stats_command

    folder = Path(tempfile.mkdtemp(prefix="lean-cpu-"))
    proc = None
    try:
        ports = write_haproxy_files(folder, str(folder), nbthread)
        log = open(folder / "haproxy.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen([binary, "-db", "-f", str(folder / "haproxy.cfg")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        ep = Endpoint("lean-cpu", folder, folder / "ca.pem", ports["full"], ports["resume"], ports)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"lean_cpu: HAProxy exited: {(folder / 'haproxy.log').read_text()[-500:]}")
            with contextlib.suppress(OSError):
                if "Name:" in stats_command(ep.stats_socket, "show info", timeout=0.5):
                    with socket.create_connection(("127.0.0.1", ep.port_full), timeout=0.5):
                        break
            if time.monotonic() > deadline:
                raise SystemExit("lean_cpu: HAProxy not ready after 10 s")
            time.sleep(0.1)
        yield ep
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)


def calibrate(args: argparse.Namespace) -> None:
    from bench.calibrate import render_table, run_calibrate

    result = run_calibrate(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        clients=args.client or ["wrk-ka", "lean-ka", "wrk-close", "lean-close"],
        out=args.out,
        baseline=args.baseline,
        endpoint=native_haproxy(args.haproxy),
    )
    print(render_table(result))


def direct(args: argparse.Namespace) -> None:
    """Each checkout's clients in turn (order alternating per round) against one HAProxy; CPU per request."""
    checkouts = [str(Path(c).resolve()) for c in args.checkout] or [ROOT]
    results: dict[str, list[float]] = {c: [] for c in checkouts}
    with native_haproxy(args.haproxy) as ep:
        for r in range(1, args.rounds + 1):
            for root in checkouts if r % 2 else list(reversed(checkouts)):
                cmd = [sys.executable, __file__, "client", "--url", ep.url("full"), "--ca", str(ep.ca_pem), "--mode", args.mode]
                cmd += ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--connections", str(args.connections)]
                if args.profile:
                    cmd += ["--profile", f"{args.profile}.{Path(root).name}.{r}"]
                out = subprocess.run(cmd, check=False, env={**os.environ, "LEAN_CPU_ROOT": root}, capture_output=True, text=True, timeout=args.seconds + args.warmup + 60)
                if out.returncode != 0:
                    raise SystemExit(f"lean_cpu: client of {root} failed: {out.stderr.strip()[-800:]}")
                got = json.loads(out.stdout.strip().splitlines()[-1])
                got.update(round=r, checkout=root)
                print(json.dumps(got), flush=True)
                results[root].append(got["us_per_request"])
    for root, us in results.items():
        print(f"{root}: CPU per request, median {statistics.median(us):.2f} us (min {min(us):.2f}, max {max(us):.2f}; {len(us)} rounds)")
    if len(checkouts) == 2:
        a, b = (results[c] for c in checkouts)
        ratios = sorted(x / y for x, y in zip(a, b, strict=True))
        print(f"{Path(checkouts[1]).name}/{Path(checkouts[0]).name} requests per CPU-second, per round: median {statistics.median(ratios):.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f})")


def client(args: argparse.Namespace) -> None:
    """LeanClients in gevent greenlets of this process (no Locust); prints CPU time per request as JSON."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from locust.stats import RequestStats

    from bench.load.capture import RequestCapture
    from bench.load.leanclient import LabTrust, LeanClient, LeanSettings, StatsBatch

    with tempfile.TemporaryDirectory(prefix="lean-cpu-run-") as run_dir:
        settings: dict = {"ca": args.ca}
        if args.mode == "close":
            settings.update(requests_per_connection=1, resumption=False)
        s = LeanSettings.from_settings(args.url, settings)
        trust = LabTrust(s.ca)
        capture = RequestCapture(Path(run_dir))
        # Locust's statistics as a Locust process keeps them (bench.load.lean): one StatsBatch per
        # process, fed from the capture's arrays where the engine offers that (StatsBatch.tap)
        batch, locust_stats = StatsBatch(), RequestStats()
        if hasattr(batch, "tap"):
            batch.tap(capture)
        lists = batch.lists(s.name)
        clients = [LeanClient(s, trust, lists, capture) for _ in range(args.connections)]

        def user(client: LeanClient) -> None:
            if args.count:  # a fixed number of requests (for instruction counts: run it under valgrind)
                left = args.count // args.connections
                while left > 0:
                    client.burst(min(left, 512), math.inf)
                    left -= min(left, 512)
                return
            end = time.time() + args.warmup + args.seconds
            while time.time() < end:
                client.burst(512, time.time() + 0.5)

        def stats_loop() -> None:
            # what a Locust process does beside the requests: merge the statistics (lean.STATS_FLUSH)
            while True:
                gevent.sleep(1000.0 if args.count else 0.25)
                batch.flush(locust_stats)

        def counted() -> int:
            batch.flush(locust_stats)
            return locust_stats.total.num_requests

        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 10)  # as bench.load.lean does on its first user
        # With --count (under valgrind, where everything is ~50x slower) nothing runs on a timer: the
        # capture is flushed once at the end, so its per-row cost counts, not its per-second one.
        if not args.count:
            capture.start()
        stats = gevent.spawn(stats_loop)
        glets = [gevent.spawn(user, c) for c in clients]
        if not args.count:
            gevent.sleep(args.warmup)
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        n0 = counted()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        gevent.joinall(glets)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        done = counted() - n0
        errors = locust_stats.total.num_failures
        stats.kill()
        capture.stop()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        out = {
            "mode": args.mode,
            "connections": args.connections,
            "seconds": round(w1 - w0, 3),
            "requests": done,
            "errors": errors,
            "cpu_s": round(cpu, 3),
            "user_s": round(r1.ru_utime - r0.ru_utime, 3),
            "sys_s": round(r1.ru_stime - r0.ru_stime, 3),
            "us_per_request": round(1e6 * cpu / max(done, 1), 2),
            "per_core": round(done / cpu, 1) if cpu else 0,
            "loadavg": os.getloadavg()[0],
        }
        print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate", help="bench calibrate's rounds against a local HAProxy binary")
    c.add_argument("--haproxy", required=True, help="a HAProxy binary (>= 2.2)")
    c.add_argument("--rounds", type=int, default=5)
    c.add_argument("--seconds", type=float, default=3.0)
    c.add_argument("--connections", type=int, default=50)
    c.add_argument("--client", action="append", help="calibrate client (repeat); default wrk-ka lean-ka wrk-close lean-close")
    c.add_argument("--baseline", type=Path, help="another lbbench checkout: its engine as the base-* clients")
    c.add_argument("--out", type=Path, help="write the result JSON here")
    d = sub.add_parser("direct", help="LeanClients without Locust, one process per checkout and round: CPU time per request")
    d.add_argument("--haproxy", required=True, help="a HAProxy binary (>= 2.2)")
    d.add_argument("--checkout", action="append", default=[], help="an lbbench checkout whose client runs (repeat: interleaved A/B); default this one")
    d.add_argument("--rounds", type=int, default=3)
    d.add_argument("--profile", help="write cProfile stats of each measured part to PROFILE.<checkout>.<round>")
    k = sub.add_parser("client", help=argparse.SUPPRESS)
    k.add_argument("--url", required=True)
    k.add_argument("--ca", required=True)
    k.add_argument("--profile")
    k.add_argument("--count", type=int, default=0, help="send this many requests in all, no warm-up (instead of --seconds)")
    for p in (d, k):
        p.add_argument("--mode", choices=("ka", "close"), default="ka", help="ka: keep-alive; close: a new TLS connection per request (no resumption)")
        p.add_argument("--seconds", type=float, default=5.0)
        p.add_argument("--warmup", type=float, default=1.0)
        p.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    {"calibrate": calibrate, "direct": direct, "client": client}[args.cmd](args)


if __name__ == "__main__":
    main()
