"""Which process owns a lab, and is it still alive?

A lab's state folder holds ``owner.json``, written before any of its
containers starts::

    {"pid": 4242, "start_ticks": 123456, "boot_id": "...", "kind": "run",
     "command": "bench run smoke", "since": 1795698443.1}

``kind`` is ``run`` for a lab a process brings up and tears down itself
(`bench run`, `bench gate --run`, tests) and ``up`` for a lab `bench up` leaves
running by hand. A ``run`` lab whose owner is alive (same boot, same pid, same
process start time, so a reused pid does not count) belongs to a live run:
`bench status` and `bench doctor` say so and never advise removing it, and
`bench down --all` skips it unless ``--force``. Once its owner is gone it is a
leftover.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..proc import alive as process_alive
from ..proc import boot_id, start_ticks
from ..results.layout import LabDir


def this_process(kind: str) -> dict[str, Any]:
    """The owner record of the calling process."""
    pid = os.getpid()
    argv = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    return {
        "pid": pid,
        "start_ticks": start_ticks(pid),
        "boot_id": boot_id(),
        "kind": kind,
        "command": " ".join(argv)[:200],
        "since": time.time(),
    }


def write_owner(root: Path, kind: str) -> dict[str, Any]:
    """Record the calling process as the owner of the lab whose state folder is ``root``."""
    owner = this_process(kind)
    root.mkdir(parents=True, exist_ok=True)
    path = LabDir(root).owner_json
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(owner, indent=2) + "\n")
    os.replace(tmp, path)
    return owner


def read_owner(root: Path) -> dict[str, Any] | None:
    """The owner record in state folder ``root`` (None when there is none or it is unreadable)."""
    try:
        data = json.loads(LabDir(root).owner_json.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(owner: dict[str, Any] | None) -> bool:
    """Whether the owner process still runs (same boot, same pid and start time)."""
    if not owner or not isinstance(owner.get("pid"), int):
        return False
    return process_alive(owner["pid"], owner.get("start_ticks"), owner.get("boot_id"))


def live_run_owner(root: Path) -> dict[str, Any] | None:
    """The owner of the lab in ``root`` when it is a live run (kind ``run``, process alive), else None."""
    owner = read_owner(root)
    if owner and owner.get("kind", "run") == "run" and alive(owner):
        return owner
    return None


def describe(owner: dict[str, Any]) -> str:
    """``live run (pid 4242, since 13:40:05: bench run smoke)``."""
    since = time.strftime("%H:%M:%S", time.localtime(float(owner.get("since") or 0)))
    return f"pid {owner.get('pid')}, since {since}: {owner.get('command') or '?'}"
