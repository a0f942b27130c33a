#!/usr/bin/env python3
"""Time ways to tear a lab down: a split lab is brought up (as `bench up` does) and removed each way.

    /work/coord/labrun .venv/bin/python scripts/teardown_variants.py [VARIANT ...]

Variants: down-t2 (`compose down -t 2`, lbbench before 2 Dec), down-t0 (`compose down -t 0`, now),
kill+down (`compose kill`, then `down -t 0`), sdk-rm-f (the docker SDK removes every container by
force in parallel, then the networks), sdk-stop+rm (stops each in parallel with a 2 s grace, then
removes). Prints the seconds of each and what was left of the lab right after it (Lab.down then
removes the rest). Nothing here asserts a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import engine
from bench.preflight import check_lab
from bench.spec import load_topology
from bench.topology import render
from bench.topology.lab import Lab


def up() -> Lab:
    topo, _ = load_topology("split", None, None)
    checked = check_lab(topo, None, log=lambda _m: None, owner_kind="up")
    if checked.problems or checked.lab is None:
        raise SystemExit(f"cannot start a lab: {checked.problems}")
    lab = checked.lab
    t = time.time()
    lab.up(validated=True)
    print(f"  up {time.time() - t:.2f}s", flush=True)
    return lab


def compose(lab: Lab, *args: str) -> None:
    f = lab.files.configs / "compose.yaml"
    subprocess.run([*engine.compose_binary(), "-f", str(f), "-p", lab.project, *args], capture_output=True, text=True, check=False)


def label(lab: Lab) -> str:
    return f"{render.LABEL_RUN}={lab.project}"


def left(lab: Lab) -> tuple[int, int]:
    c = engine.client()
    return len(c.containers.list(all=True, filters={"label": label(lab)})), len(c.networks.list(filters={"label": label(lab)}))


def down_t2(lab: Lab) -> None:
    compose(lab, "down", "-v", "--remove-orphans", "-t", "2")


def down_t0(lab: Lab) -> None:
    compose(lab, "down", "-v", "--remove-orphans", "-t", "0")


def kill_down(lab: Lab) -> None:
    compose(lab, "kill")
    compose(lab, "down", "-v", "--remove-orphans", "-t", "0")


def _parallel(lab: Lab, each: Callable[[Any], None]) -> None:
    c = engine.client()
    containers = c.containers.list(all=True, filters={"label": label(lab)})
    with ThreadPoolExecutor(len(containers) or 1) as pool:
        list(pool.map(each, containers))
    for net in c.networks.list(filters={"label": label(lab)}):
        net.remove()


def sdk_rm_f(lab: Lab) -> None:
    _parallel(lab, lambda x: x.remove(force=True, v=True))


def sdk_stop_rm(lab: Lab) -> None:
    def one(x: Any) -> None:
        x.stop(timeout=2)
        x.remove(v=True)

    _parallel(lab, one)


VARIANTS: dict[str, Callable[[Lab], None]] = {"down-t2": down_t2, "down-t0": down_t0, "kill+down": kill_down, "sdk-rm-f": sdk_rm_f, "sdk-stop+rm": sdk_stop_rm}


def main() -> int:
    order = sys.argv[1:] or list(VARIANTS)
    unknown = [v for v in order if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: one of {', '.join(VARIANTS)}")
    res: dict[str, list[float]] = {}
    for name in order:
        lab = up()
        time.sleep(1.0)
        t = time.time()
        VARIANTS[name](lab)
        dt = time.time() - t
        after = left(lab)
        t2 = time.time()
        lab.down()
        print(f"{name:12s} {dt:6.2f}s  left after: {after}  (Lab.down after it: {time.time() - t2:.2f}s)", flush=True)
        res.setdefault(name, []).append(round(dt, 2))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
