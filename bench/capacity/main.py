"""What each `bench capacity` subcommand does, as plain functions tests can call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..results.capacity import CapacityDoc
from ..results.document import read_document
from .analyse import CAPACITY_JSON, analyse, measured_max, prediction_dict, read_sweep
from .fit import from_dict
from .predict import CostModel, predict
from .profile import Machine, read_profile
from .sweep import SweepRunner, default_out, remove_if_empty
from .validate import choose_scale, run_validation


def measure(
    out: Path | None = None,
    scenario: str = "seed-peak",
    variant: str | None = None,
    sets: Sequence[str] = (),
    plan: str = "full",
    stage_s: float = 10.0,
    validate: str | None = "seed-peak",
    validate_scale: float | None = None,
    validate_duration: str | None = "40s",
    profiles: Sequence[str] = ("seed-peak",),
    log: Callable[[str], None] = print,
) -> tuple[Path, dict[str, Any]]:
    """Sweep, fit, validate (unless ``validate`` is None), write capacity.json and the report; returns (folder, document)."""
    for p in profiles:
        read_profile(p)  # a bad profile fails before the lab starts
    folder = Path(out) if out else default_out(plan)
    runner = SweepRunner(folder, scenario, variant, list(sets), plan, stage_s, log)
    try:
        runner.run()
    except BaseException:
        remove_if_empty(folder)
        raise
    if runner.doc.get("status") != "completed":
        log("the sweep did not complete: fitting what it measured, no validation run")
        return folder, analyse(folder, profiles, log=log)
    doc = analyse(folder, profiles, log=log)
    if validate:
        model = model_of(doc)
        scale = validate_scale if validate_scale is not None else choose_scale(model, validate, variant, sets)
        run_validation(folder, validate, scale, validate_duration, log, variant, sets)
        doc = analyse(folder, profiles, log=log)
    return folder, doc


def refit(folder: Path, profiles: Sequence[str] = ("seed-peak",), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit a capacity folder again from its raw data (``bench capacity fit``)."""
    return analyse(Path(folder), profiles, log=log)


def validate_folder(
    folder: Path, scenario: str = "seed-peak", scale: float | None = None, duration: str | None = "40s", profiles: Sequence[str] = ("seed-peak",), log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or run again) the validation of a fitted capacity folder and refit (``bench capacity validate``)."""
    sweep = read_sweep(folder)
    doc = read_model(folder)
    model = model_of(doc)
    scale = scale if scale is not None else choose_scale(model, scenario, sweep.variant, sweep.sets)
    run_validation(Path(folder), scenario, scale, duration, log, sweep.variant, sweep.sets)
    return analyse(Path(folder), profiles, log=log)


def read_model(path: Path) -> dict[str, Any]:
    """capacity.json of a folder (or the file itself), as a dict."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder", "pass a folder `bench capacity measure` wrote, or its capacity.json")
    if path.is_dir():
        path = path / CAPACITY_JSON
    return read_document(CapacityDoc, path).model_dump(mode="json")


def model_of(doc: dict[str, Any]) -> CostModel:
    """The cost model of a capacity.json document."""
    return CostModel(
        cpu={rc["role"]: from_dict(rc["model"]) for rc in doc["costs"]},
        memory={rc["role"]: from_dict(rc["model"]) for rc in doc.get("memory", [])},
        hop_sockets=from_dict(doc["sockets"]["hop"]) if "hop" in doc.get("sockets", {}) else None,
        server_sockets=from_dict(doc["sockets"]["server"]) if "server" in doc.get("sockets", {}) else None,
        measured_max=_measured_max(doc),
    )


def _measured_max(doc: dict[str, Any]) -> dict[str, float]:
    """The measured range of capacity.json's steps (those the fit used)."""
    import pandas as pd

    steps = pd.DataFrame(doc.get("steps") or [])
    if steps.empty:
        return {}
    return measured_max(steps[steps["excluded"].fillna("") == ""] if "excluded" in steps else steps)


def predict_profile(profile: str, model_path: Path, scale: float = 1.0, cores: float | None = None, memory_gb: float | None = None) -> dict[str, Any]:
    """What ``profile`` (x ``scale``) needs by the model in ``model_path`` (``bench capacity predict``)."""
    prof, _ = read_profile(profile)
    doc = read_model(model_path)
    if not scale > 0:
        raise UserError(f"--scale {scale:g}: must be greater than 0", "for example --scale 0.05")
    if scale != 1:
        prof = prof.scaled(scale)
    machine = prof.machine or Machine.here()
    if cores is not None or memory_gb is not None:
        machine = machine.model_copy(update={k: v for k, v in (("cores", cores), ("memory_gb", memory_gb)) if v is not None})
        if (cores is not None and cores <= 0) or (memory_gb is not None and memory_gb <= 0):
            raise UserError("--cores and --memory-gb must be greater than 0", "for example --cores 16")
    p = predict(model_of(doc), prof, machine)
    out = prediction_dict(p, scale)
    out["model"] = str(model_path)
    out["cpu_model"] = doc["machine"].get("cpu_model")
    return out
