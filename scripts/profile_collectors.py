#!/usr/bin/env python3
"""Where the collector thread's CPU goes, by sampling its Python stacks with py-spy during a real run.

    /work/coord/labrun .venv/bin/python scripts/profile_collectors.py [SCENARIO] [--duration 40s]
        [--after 15] [--seconds 20] [--rate 200] [--top 25]

Starts ``bench run SCENARIO`` as a child, waits ``--after`` seconds (the lab's start
and the load's ramp), then records the child with ``py-spy record --nonblocking
--threads`` for ``--seconds`` (``--nonblocking``: the process is never paused, so the
run is not slowed by the profiler; a stack may then be torn now and then). Only the
stacks of the collector thread are kept (those passing through ``Collectors._tick``);
py-spy leaves out threads that sleep, so a sample is a moment the thread ran or
waited in a system call. Prints, as % of one core (samples / rate / seconds):

- per sampler step (the function ``_tick`` called: haproxy, cpu, sockets, ...);
- the functions the samples were in (leaf frames), the heaviest first.

py-spy is not a dependency of lbbench: ``.venv/bin/pip install py-spy`` first. Needs
the right to ptrace the child (root, or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".venv" / "bin" / "bench"
PYSPY = ROOT / ".venv" / "bin" / "py-spy"


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``file.py:func``."""
    func, _, where = frame.partition(" (")
    return f"{Path(where.rstrip(')').rsplit(':', 1)[0]).name}:{func}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="smoke")
    ap.add_argument("--duration", default="40s", help="the run's load duration")
    ap.add_argument("--after", type=float, default=15.0, help="seconds after the start before recording")
    ap.add_argument("--seconds", type=int, default=20, help="seconds recorded")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if not PYSPY.exists():
        print(f"py-spy not found at {PYSPY}; install it with: {ROOT}/.venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="lbbench-profile-"))
    raw = tmp / "stacks.txt"
    try:
        child = subprocess.Popen(
            [str(BENCH), "run", args.scenario, "--duration", args.duration, "--out", str(tmp / "run"), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(args.after)
        spy = subprocess.run(
            [str(PYSPY), "record", "--pid", str(child.pid), "--nonblocking", "--threads", "--format", "raw",
             "--rate", str(args.rate), "--duration", str(args.seconds), "--output", str(raw)],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        code = child.wait()
        if spy.returncode != 0 or not raw.exists():
            print(f"py-spy failed: {spy.stderr.strip()[-400:]}", file=sys.stderr)
            return 1
        by_step: Counter[str] = Counter()
        by_leaf: Counter[str] = Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            names = [frame_name(f) for f in frames[1:]]
            if "collectors.py:_tick" not in names:
                continue
            n = int(count)
            total += n
            below = names[names.index("collectors.py:_tick") + 1 :]
            # _tick -> _guard -> the sampler (or _flush / buffers directly)
            step = next((x for x in below if not x.endswith(":_guard")), "collectors.py:_tick")
            by_step[step] += n
            by_leaf[names[-1]] += n
        scale = 100.0 / (args.rate * args.seconds)
        print(f"bench run {args.scenario} exited {code}; collector thread: {total} samples = {total * scale:.2f} % of one core")
        print("\nper step called by _tick (% of one core):")
        for name, n in by_step.most_common():
            print(f"  {n * scale:6.3f}  {name}")
        print(f"\nleaf functions, top {args.top} (% of one core):")
        for name, n in by_leaf.most_common(args.top):
            print(f"  {n * scale:6.3f}  {name}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
