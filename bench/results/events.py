"""``events.jsonl``: the run's time line of phases, faults and recoveries, written and read one way.

One JSON object per line, each with ``t`` (epoch seconds on the host clock) and
``kind`` (``phase``, ``fault``, ``recovery``, ...); see reports/README.md. Writers
append whole lines and fsync them, so a run killed with SIGKILL loses at most the
line being written; the reader skips such a torn line.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> log = EventLog(folder / EVENTS_JSONL)
    >>> _ = log.phase("steady", t=12.5)
    >>> _ = log.write({"t": 11.0, "kind": "phase", "name": "load"})
    >>> [e["name"] for e in read_events(folder)]
    ['load', 'steady']
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from .layout import EVENTS_JSONL

Event = dict[str, Any]


class EventLog:
    """Append-only ``events.jsonl`` (thread-safe; every line is flushed to disk)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, event: Event) -> Event:
        """Append one event (it needs ``t`` and ``kind``) and return it."""
        line = json.dumps(event, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return event

    def phase(self, name: str, t: float | None = None, **extra: Any) -> Event:
        """A ``phase`` event (``load``, ``steady``, ``end``, a schedule's stage ...) at ``t`` (default now)."""
        return self.write({"t": time.time() if t is None else t, "kind": "phase", "name": name, **extra})


def read_events(path: Path) -> list[Event]:
    """Every event of a run, sorted by time; ``path`` is a run directory or an events file.

    Lines that are not JSON objects with a numeric ``t`` are skipped (a run killed
    mid-write may leave half a line); a missing file has no events.
    """
    path = Path(path)
    if path.is_dir():
        path = path / EVENTS_JSONL
    if not path.is_file():
        return []
    out: list[Event] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        t = event.get("t") if isinstance(event, dict) else None
        if isinstance(t, int | float) and not isinstance(t, bool):
            out.append(event)
    return sorted(out, key=lambda e: float(e["t"]))
