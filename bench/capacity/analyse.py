"""A capacity folder -> ``capacity.json``: the step table, the fits, the predictions, the validation.

A pure function of the folder (``sweep.json``, each phase's samples, the validation
run when there is one), so ``bench capacity fit DIR`` rebuilds it all from raw data.

Steps are left out of the fit, and listed with the reason in the step table
(``excluded``), when more than :data:`MAX_ERROR_PCT` of their requests failed (an
overloaded lab is not linear any more), when their window has no CPU samples
(an interrupted sweep), or when the load generator sent nothing in it (it was not
running then).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.cost import LB_ROLES
from ..errors import UserError
from ..results.capacity import CapacityDoc, SweepDoc
from ..results.document import read_document, write_document
from ..results.store import read_table
from .fit import LEVEL, LinearFit, design, fit_costs, fit_memory, linear_fit, to_dict
from .measure import Window, measure_windows, memory_samples
from .operations import IDLE, OPERATIONS
from .predict import CostModel, Prediction, predict
from .profile import Profile, read_profile
from .sweep import SWEEP_JSON

CAPACITY_JSON = "capacity.json"
STEPS_CSV = "steps.csv"
#: A step whose requests failed more often than this (%) is left out of the fit.
MAX_ERROR_PCT = 2.0
#: What the frontend -> backend and backend -> server sockets are fitted on.
HOP_OPERATIONS = ("request", "connection", "held_kconn")
SERVER_OPERATIONS = ("server_connection", "request")


def read_sweep(folder: Path) -> SweepDoc:
    """``sweep.json`` of a capacity folder (one line when it is not one)."""
    folder = Path(folder)
    if folder.is_file() and folder.name == CAPACITY_JSON:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder", "pass a folder `bench capacity measure` wrote")
    return read_document(SweepDoc, folder / SWEEP_JSON)


def sweep_windows(sweep: SweepDoc) -> dict[str, list[Window]]:
    """Every measured window of the sweep, per phase folder: the idle window, then each group's measured stages."""
    out: dict[str, list[Window]] = {}
    for phase in sweep.phases:
        ws = []
        if phase.idle_window:
            ws.append(Window(f"{phase.name}:idle", phase.idle_window[0], phase.idle_window[1], 0.0, phase.key_type, "idle", phase.name))
        for group in phase.groups:
            for stage in group.stages:
                if stage.measured:
                    ws.append(Window(f"{phase.name}:{stage.step}", stage.window[0], stage.window[1], group.tls_share, phase.key_type, group.name, phase.name))
        out[phase.folder] = ws
    return out


def _errors(folder: Path, sweep: SweepDoc, steps: pd.DataFrame) -> pd.DataFrame:
    """Requests sent and failed in each step's window (from its group's requests table)."""
    sent = np.zeros(len(steps))
    failed = np.zeros(len(steps))
    groups = {(p.name, g.name): g for p in sweep.phases for g in p.groups}
    cache: dict[str, pd.DataFrame] = {}
    for i, row in enumerate(steps.itertuples()):
        g = groups.get((row.phase, row.group))
        if g is None:
            continue
        if g.folder not in cache:
            cache[g.folder] = read_table(folder / g.folder, "requests", ["t", "error"])
        req = cache[g.folder]
        inside = req[(req["t"] >= row.start) & (req["t"] < row.end)]
        sent[i] = len(inside)
        failed[i] = int((inside["error"].astype(str) != "").sum()) if len(inside) else 0
    steps = steps.copy()
    steps["sent"] = sent
    steps["failed"] = failed
    steps["error_pct"] = np.where(sent > 0, 100.0 * failed / np.where(sent > 0, sent, 1.0), 0.0)
    return steps


def step_table(folder: Path, sweep: SweepDoc) -> pd.DataFrame:
    """One row per measured window of the sweep (bench/capacity/measure.py columns, plus sent/failed/excluded)."""
    frames = []
    for phase_folder, windows in sweep_windows(sweep).items():
        if windows and (folder / phase_folder).is_dir():
            frames.append(measure_windows(folder / phase_folder, windows))
    if not frames:
        raise UserError(f"{folder}: the sweep measured no step", "run `bench capacity measure` to the end (or at least through one group)")
    steps = pd.concat(frames, ignore_index=True)
    steps = _errors(folder, sweep, steps)
    reasons = []
    for row in steps.itertuples():
        if not np.isfinite(row.cpu_lb) or row.cpu_lb <= 0 or not np.isfinite(row.request):
            reasons.append("no samples in the window")
        elif row.group != "idle" and row.sent == 0:
            reasons.append("the load generator sent nothing in the window")
        elif row.error_pct > MAX_ERROR_PCT:
            reasons.append(f"{row.error_pct:.1f} % of requests failed")
        else:
            reasons.append("")
    steps["excluded"] = reasons
    return steps


def _memory(folder: Path, sweep: SweepDoc) -> dict[str, LinearFit]:
    """Memory per role fitted on each phase's idle window and held group (bench/capacity/fit.py :func:`fit_memory`)."""
    frames = []
    for phase in sweep.phases:
        held = [g for g in phase.groups if g.held and g.stages]
        if not held or not phase.idle_window:
            continue
        g = held[0]
        start = phase.idle_window[0]
        end = g.stages[-1].window[1]
        s = memory_samples(folder / phase.folder, start, end)
        if not s.empty:
            s["phase"] = phase.name
            frames.append(s)
    if not frames:
        return {}
    samples = pd.concat(frames, ignore_index=True)
    out = {}
    for role in LB_ROLES:
        f = fit_memory(samples, role)
        if f is not None:
            out[role] = f
    return out


def _sockets(steps: pd.DataFrame, column: str, ops: Sequence[str]) -> LinearFit | None:
    rows = steps[steps[column].notna()]
    if len(rows) < len(ops) + 3 or not (rows[column] > 0).any():
        return None
    try:
        return linear_fit(design(rows, ops), rows[column].to_numpy(float), [IDLE, *ops])
    except ValueError:
        return None


def cost_model(folder: Path, sweep: SweepDoc, steps: pd.DataFrame, level: float = LEVEL) -> CostModel:
    """The fits of a sweep: cores per role, memory per role, sockets per hop."""
    used = steps[steps["excluded"] == ""]
    cpu = fit_costs(used, level)
    if not cpu:
        raise UserError(f"{folder}: no process role could be fitted ({len(used)} usable steps)", "run a longer sweep (`--plan full`)")
    return CostModel(
        cpu=cpu,
        memory=_memory(folder, sweep),
        hop_sockets=_sockets(used, "hop_sockets", HOP_OPERATIONS),
        server_sockets=_sockets(used, "server_sockets", SERVER_OPERATIONS),
        measured_max=measured_max(used),
    )


def measured_max(steps: pd.DataFrame) -> dict[str, float]:
    """The largest rate (or level) of each operation among ``steps`` (the measured range a prediction extrapolates from)."""
    out = {}
    for op in OPERATIONS:
        if op in steps:
            top = pd.to_numeric(steps[op], errors="coerce").max()
            if pd.notna(top) and top > 0:
                out[op] = float(top)
    return out


def costs_dict(role: str, fit: LinearFit) -> dict[str, Any]:
    """A role's fit as capacity.json's RoleCosts: the model and each cost in its printed unit."""
    costs = []
    for name in fit.names:
        est = fit.estimate(name)
        assert est is not None
        if name == IDLE:
            unit, scale, doc = "cores", 1.0, "cores spent with no load (health checks, timers)"
        else:
            op = OPERATIONS[name]
            unit, scale, doc = op.cost_unit, op.scale, op.doc
        costs.append({"operation": name, "doc": doc, "unit": unit, "estimate": est[0] * scale, "low": est[1] * scale, "high": est[2] * scale})
    return {"role": role, "model": to_dict(fit), "costs": costs}


def memory_dict(role: str, fit: LinearFit) -> dict[str, Any]:
    costs = []
    for name in fit.names:
        est = fit.estimate(name)
        assert est is not None
        if name.startswith("base_"):
            unit, scale, doc = "MB", 1e-6, f"memory of the idle lab ({name[5:]})"
        else:
            unit, scale, doc = "kB", 1e-3, f"memory per {name.replace('_', ' ')} open"
        costs.append({"operation": name, "doc": doc, "unit": unit, "estimate": est[0] * scale, "low": est[1] * scale, "high": est[2] * scale})
    return {"role": role, "model": to_dict(fit), "costs": costs}


def _interval(e: Any) -> dict[str, float]:
    return {"estimate": _finite(e.value), "low": _finite(e.low), "high": _finite(e.high)}


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else 1e308


def prediction_dict(p: Prediction, scale: float) -> dict[str, Any]:
    """A prediction as capacity.json's PredictionDoc."""
    first = p.first_limit
    ref = p.reference
    return {
        "profile": p.profile.name,
        "scale": scale,
        "machine": p.machine.model_dump(mode="json"),
        "deployment": p.profile.deployment.model_dump(mode="json"),
        "workload": p.profile.workload.model_dump(mode="json"),
        "operations": {k: float(v) for k, v in p.operations.items() if not k.startswith("_")},
        "cores": {k: _interval(v) for k, v in p.cores.items()},
        "total_cores": _interval(p.total_cores),
        "memory_bytes": {k: _interval(v) for k, v in p.memory.items()},
        "total_memory_bytes": _interval(p.total_memory),
        "processes": dict(p.processes),
        "resources": [
            {
                "name": r.name,
                "unit": r.unit,
                "need": _interval(r.need),
                "have": r.have,
                "headroom": None if r.headroom is None or not math.isfinite(r.headroom) else r.headroom,
                "headroom_low": None if r.headroom_low is None or not math.isfinite(r.headroom_low) else r.headroom_low,
                "detail": r.detail,
            }
            for r in p.resources
        ],
        "first_limit": first.name if first is not None else None,
        "reference": None if ref is None else {"text": ref["text"], "cpu": ref["cpu"], "role": ref["role"], "cores": ref["cores"], "model": _interval(ref["model"]), "ratio": _interval(ref["ratio"])},
        "notes": list(p.notes),
        "extrapolated": p.extrapolated,
        "beyond_measured": [dict(b) for b in p.beyond],
    }


def residuals(steps: pd.DataFrame, model: CostModel) -> list[dict[str, Any]]:
    """Measured against fitted cores, per step and role (the steps the fit used)."""
    out = []
    used = steps[steps["excluded"] == ""]
    for role, fit in model.cpu.items():
        for row in used.itertuples():
            measured = getattr(row, f"cpu_{role}")
            if not np.isfinite(measured):
                continue
            x = {n: float(getattr(row, n)) for n in fit.names if n != IDLE}
            fitted = float(fit.predict(x)[0])
            out.append({"step": row.step, "role": role, "measured": float(measured), "fitted": fitted, "residual": float(measured) - fitted})
    return out


def predictions(model: CostModel, profiles: Sequence[tuple[Profile, float]]) -> list[Prediction]:
    """Each (profile, scale) predicted."""
    return [predict(model, p.scaled(scale) if scale != 1 else p) for p, scale in profiles]


def analyse(
    folder: Path,
    profiles: Sequence[str] = ("seed-peak",),
    level: float = LEVEL,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit a capacity folder and write ``capacity.json`` + ``steps.csv`` (and the report page); returns the document."""
    from .validate import validation_dict

    folder = Path(folder)
    sweep = read_sweep(folder)
    steps = step_table(folder, sweep)
    model = cost_model(folder, sweep, steps, level)
    asked = [read_profile(p) for p in profiles]
    preds = [(p, 1.0) for p, _ in asked]
    doc: dict[str, Any] = {
        "schema_version": CapacityDoc.SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sweep": str(folder),
        "scenario": sweep.scenario,
        "topology": _topology(sweep),
        "machine": dict(sweep.machine),
        "versions": dict(sweep.versions),
        "level": level,
        "costs": [costs_dict(r, f) for r, f in model.cpu.items()],
        "memory": [memory_dict(r, f) for r, f in model.memory.items()],
        "sockets": {k: to_dict(f) for k, f in (("hop", model.hop_sockets), ("server", model.server_sockets)) if f is not None},
        "residuals": residuals(steps, model),
        "steps": _steps_records(steps),
        "predictions": [prediction_dict(p, s) for p, s in zip(predictions(model, preds), [s for _, s in preds], strict=True)],
        "validation": validation_dict(folder, model),
        "notes": _notes(sweep, steps),
    }
    write_document(CapacityDoc, doc, folder / CAPACITY_JSON)
    steps.to_csv(folder / STEPS_CSV, index=False)
    from .report import write_report

    write_report(folder, doc)
    return doc


def _topology(sweep: SweepDoc) -> dict[str, Any]:
    return {"scenario": sweep.scenario, "variant": sweep.variant, "sets": list(sweep.sets), "phases": {p.name: p.overrides for p in sweep.phases}}


def _steps_records(steps: pd.DataFrame) -> list[dict[str, float | str | None]]:
    out = []
    for rec in steps.to_dict(orient="records"):
        row: dict[str, float | str | None] = {}
        for k, v in rec.items():
            if isinstance(v, str):
                row[str(k)] = v
            elif v is None or (isinstance(v, float) and not math.isfinite(v)):
                row[str(k)] = None
            else:
                row[str(k)] = float(v)
        out.append(row)
    return out


def _notes(sweep: SweepDoc, steps: pd.DataFrame) -> list[str]:
    notes = []
    if sweep.status != "completed":
        notes.append(f"the sweep did not complete ({sweep.status}): the fit uses what it measured")
    excluded = steps[steps["excluded"] != ""]
    for row in excluded.itertuples():
        notes.append(f"step {row.step} left out: {row.excluded}")
    busy = steps["cpu_host"] / max(float(sweep.machine.get("cpus") or 1), 1.0)
    if (busy > 0.9).any():
        notes.append(f"{int((busy > 0.9).sum())} step(s) ran with the machine's cores more than 90 % busy: costs there may include contention")
    return notes
