"""Turn a run directory into ``summary.json``.

Everything here reads only files of the run directory, so ``bench report DIR``
can rebuild the summary of any run, finished, interrupted or killed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..collect.store import read_table
from ..load import capture

SCHEMA_VERSION = 1
#: Seconds dropped at the end of the load window (requests cut off by the stop).
TAIL_S = 1.0


class SummaryError(Exception):
    """The run directory cannot be summarised (no run.json, newer schema ...)."""


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise SummaryError(f"{run_dir}: no run.json (not a run directory)")
    run = json.loads(path.read_text())
    if run.get("schema_version", 1) > SCHEMA_VERSION:
        raise SummaryError(f"{path}: schema_version {run['schema_version']} is newer than this lbbench understands")
    return run


def _num(x: float | int | None, digits: int = 3) -> float | None:
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x, digits)


def steady_window(run: dict[str, Any], requests: pd.DataFrame) -> tuple[float, float]:
    """The steady-state window: after the ramp-up, before the tail (epoch seconds)."""
    load = run.get("load_window") or {}
    start = load.get("start")
    end = load.get("end")
    if start is None or end is None:
        if requests.empty:
            return 0.0, 0.0
        start, end = float(requests["t"].min()), float(requests["t"].max())
    ramp = float(run.get("scenario", {}).get("ramp_up", 0.0))
    s, e = start + ramp, end - TAIL_S
    if e <= s:  # very short runs: keep the whole window
        s, e = start, end
    return float(s), float(e)


def summarise(run_dir: Path) -> dict[str, Any]:
    """The summary of a run directory as a dict (see reports/README.md for every field)."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    req = read_table(run_dir, capture.TABLE, capture.SCHEMA)
    start, end = steady_window(run, req)
    span = max(end - start, 1e-9)
    steady = req[(req["t"] >= start) & (req["t"] < end)] if not req.empty else req
    ok = steady[steady["error"] == ""] if not steady.empty else steady
    errors_all = req[req["error"] != ""] if not req.empty else req
    lat = ok["latency_ms"].to_numpy(dtype=float) if not ok.empty else np.array([])

    def pct(q: float) -> float | None:
        return _num(np.percentile(lat, q)) if lat.size else None

    by_kind = {str(k): int(v) for k, v in errors_all["error"].value_counts().sort_index().items()} if not errors_all.empty else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": run.get("id"),
            "scenario": run.get("scenario", {}).get("name"),
            "variant": run.get("variant"),
            "status": run.get("status"),
            "started_at": run.get("started_at"),
            "ended_at": run.get("ended_at"),
        },
        "window": {"start": _num(start), "end": _num(end), "seconds": _num(span if end > start else 0.0)},
        "requests": {
            "total": int(len(req)),
            "ok": int((req["error"] == "").sum()) if not req.empty else 0,
            "steady": int(len(steady)),
            "per_s": _num(len(ok) / span if end > start else 0.0, 1),
        },
        "errors": {
            "total": int(len(errors_all)),
            "by_kind": by_kind,
            "steady": int((steady["error"] != "").sum()) if not steady.empty else 0,
        },
        "latency_ms": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "p999": pct(99.9),
            "mean": _num(lat.mean()) if lat.size else None,
            "max": _num(lat.max()) if lat.size else None,
        },
        "bytes": {"total": int(req["bytes"].sum()) if not req.empty else 0},
    }


def write_summary(run_dir: Path) -> dict[str, Any]:
    """Compute the summary and write ``summary.json`` atomically."""
    summary = summarise(run_dir)
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return summary
