"""Measure what the live view costs the load generator: interleaved runs with and without it.

    /work/coord/labrun .venv/bin/python scripts/live_cost.py --pairs 4 --duration 15s --out /tmp/live-cost

Each pair runs the same keep-alive scenario twice, once with the live panel on a
real terminal (a tmux pane, so stderr is a TTY and rich redraws once a second)
and once with ``--quiet``; the order alternates (A B, B A, ...) so a drift of the
machine cancels. Prints the ratio live / quiet of the steady request rate per
pair, its median and spread, and the live view's own CPU (run.json
``live_view.cpu_s``). With ``--capture FILE`` it also saves one screen of the
panel, mid-run, as text (``tmux capture-pane``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = str(Path(sys.executable).with_name("bench"))


def run_quiet(scenario: str, duration: str, out: Path) -> None:
    subprocess.run([BENCH, "run", scenario, "--duration", duration, "--out", str(out), "--quiet"], check=False, capture_output=True, cwd=ROOT, timeout=600)


def run_live(scenario: str, duration: str, out: Path, capture: Path | None, capture_at: float) -> None:
    session = f"lbbench-live-{out.name}"
    done = out.with_suffix(".done")
    cmd = f"{BENCH} run {scenario} --duration {duration} --out {out}; echo $? > {done}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "40", cmd], check=True, cwd=ROOT)
    started = time.monotonic()
    captured = capture is None
    try:
        while not done.exists():
            time.sleep(0.5)
            if not captured and (out / "run.json").exists():
                run = json.loads((out / "run.json").read_text() or "{}")
                start = (run.get("load_window") or {}).get("start")
                if start and time.time() - start >= capture_at:
                    screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True).stdout
                    assert capture is not None
                    capture.write_text(screen.rstrip() + "\n")
                    captured = True
            if time.monotonic() - started > 600:
                raise TimeoutError("live run did not finish")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def result(out: Path) -> tuple[float, float | None]:
    summary = json.loads((out / "summary.json").read_text())
    run = json.loads((out / "run.json").read_text())
    return float(summary["requests"]["per_s"]), (run.get("live_view") or {}).get("cpu_s")


def synthetic(rate: int, seconds: int, folder: Path) -> None:
    """CPU the live view needs per second of a run at ``rate`` requests/s (no lab: chunks written like the capture writes them)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bench.live.state import LiveState
    from bench.live.view import line, render
    from bench.load.capture import RequestCapture

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    writers = [RequestCapture(folder) for _ in range(2)]
    for i, w in enumerate(writers):
        w.writer.writer = w.hist_writer.writer = f"w{i}"
    state = LiveState(folder, {"id": "synthetic", "scenario": {"duration": seconds, "load": {"model": "open", "requests_per_s": rate}}})
    t0 = time.time() - seconds - 5
    state.set_phase("load", t0)
    rng = np.random.default_rng(1)
    used = []
    from rich.console import Console

    console = Console(file=open(os.devnull, "w"), width=150, force_terminal=True)  # noqa: SIM115
    for s in range(seconds):
        for w in writers:
            n = rate // len(writers)
            ts = t0 + s + np.sort(rng.random(n))
            lat = rng.lognormal(1.5, 0.6, n)
            for t, la in zip(ts.tolist(), lat.tolist(), strict=True):
                w.record_row((t, la, 1024, 200, "", "GET /", bool(rng.random() < 0.01)))
            w.flush()
        began = time.thread_time()
        state.poll()
        snap = state.snapshot(now=t0 + s + 1 + 3)
        console.print(render(snap))
        line(snap)
        used.append(time.thread_time() - began)
    med = statistics.median(used)
    print(f"synthetic {rate:,} req/s over {seconds} s: the live view used {med * 1000:.1f} ms CPU per second of run (median; max {max(used) * 1000:.1f} ms) = {med * 100:.2f} % of one core")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--duration", default="15s")
    p.add_argument("--scenario", default=str(ROOT / "scripts" / "keep-alive-max.yaml"))
    p.add_argument("--out", type=Path, default=Path("/tmp/live-cost"))
    p.add_argument("--capture", type=Path, help="save one screen of the live panel (text) here")
    p.add_argument("--capture-at", type=float, default=8.0, help="seconds into the load to capture (default 8)")
    p.add_argument("--synthetic", type=int, metavar="RATE", help="no lab: time the live view on a synthetic run at RATE requests/s instead")
    p.add_argument("--seconds", type=int, default=30, help="with --synthetic: seconds of run (default 30)")
    args = p.parse_args()
    if args.synthetic:
        synthetic(args.synthetic, args.seconds, args.out / "synthetic")
        return 0
    if shutil.which("tmux") is None:
        print("tmux is needed (apt-get install tmux)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.pairs):
        order = ("live", "quiet") if i % 2 == 0 else ("quiet", "live")
        got: dict[str, tuple[float, float | None]] = {}
        for mode in order:
            out = args.out / f"{mode}-{i + 1}"
            shutil.rmtree(out, ignore_errors=True)
            if mode == "live":
                run_live(args.scenario, args.duration, out, args.capture if i == 0 else None, args.capture_at)
            else:
                run_quiet(args.scenario, args.duration, out)
            got[mode] = result(out)
        ratio = got["live"][0] / got["quiet"][0]
        rows.append((i + 1, "/".join(order), got["live"][0], got["quiet"][0], ratio, got["live"][1]))
        print(f"pair {i + 1} ({'/'.join(order)}): live {got['live'][0]:,.1f} req/s, quiet {got['quiet'][0]:,.1f} req/s, ratio {ratio:.3f}, live view CPU {got['live'][1]} s", flush=True)
    ratios = [r[4] for r in rows]
    print(
        f"ratio live/quiet: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}"
        + (f", sd {statistics.stdev(ratios):.3f}" if len(ratios) > 1 else "")
        + f" over {len(ratios)} pairs"
    )
    (args.out / "live_cost.json").write_text(json.dumps({"pairs": rows, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
