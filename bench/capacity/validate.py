"""The model against a mixed run it did not see: predict a scenario's CPU per role, run it, compare.

The run is an ordinary ``bench run`` of a scalable scenario (``seed-peak`` by default)
into ``<capacity folder>/validation/``, at a scale that fits this machine: unless
given, the largest 1, 2 or 5 x 10^k whose predicted load-balancer cores (high end of
the interval) stay within :data:`LB_SHARE` of the machine's cores, so the load
generator and the dummy servers keep the rest (and within what bench/load/fit.py lets
the scenario run at).

Two predictions are compared with the measured cores of the run's steady window
(bench/capacity/measure.py, the same code as the sweep's steps):

- from the **profile alone** (:func:`bench.capacity.profile.profile_of_scenario`):
  what a user planning that load would get, load-generator shortfalls included;
- at the **rates HAProxy counted** in the run: the model's own error.

The error is ``100 x (predicted - measured) / measured``; :data:`TOLERANCE_PCT` is the
bar for the load balancer's total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.cost import LB_ROLES
from ..errors import UserError
from ..load.fit import Machine as LoadMachine
from ..load.fit import held_interval_of, max_scale, nice_floor
from ..results.layout import RunDir
from ..results.run import read_run
from ..spec import Scenario, Topology, load_scenario, scenario_topology
from .measure import Window, measure_windows
from .operations import IDLE
from .predict import CostModel, Estimate, predict, sum_estimates
from .profile import Profile, operations, profile_of_scenario

#: Where the validation run goes in a capacity folder.
VALIDATION = "validation"
#: The share of the machine's cores the load balancer may take in the validation run (high end of the prediction).
LB_SHARE = 0.45
#: The bar for the load balancer's total CPU, % (issue 15).
TOLERANCE_PCT = 15.0
#: Seconds left out after the ramp-up and before the end of the run.
MARGIN_S = 1.0


def scenario_profile(scenario: Scenario, topology: Topology) -> Profile:
    """The profile of an (already scaled) scenario on its topology."""
    return profile_of_scenario(scenario, topology, held_interval_of(scenario.load, topology))


def choose_scale(model: CostModel, scenario_name: str, variant: str | None = None, sets: Sequence[str] = (), cores: int | None = None) -> float:
    """The scale the validation runs at (see the module docstring)."""
    scenario, _ = load_scenario(scenario_name)
    if not scenario.scalable:
        raise UserError(f"scenario {scenario.name} is not scalable", "validate with a scalable scenario such as seed-peak, or give --validate-scale")
    topology, _ = scenario_topology(scenario, variant, list(sets))
    machine = LoadMachine.here()
    cores = cores or machine.cores
    fits, _binding = max_scale(scenario, topology, machine, held_interval_of(scenario.load, topology))
    budget = LB_SHARE * cores

    def lb_high(s: float) -> float:
        p = predict(model, scenario_profile(scenario.scaled(s), topology))
        return p.total_cores.high

    lo, hi = 0.0, max(fits, 1e-6)
    if lb_high(hi) <= budget:
        lo = hi
    else:
        for _ in range(40):
            mid = (lo + hi) / 2
            if lb_high(mid) <= budget:
                lo = mid
            else:
                hi = mid
    scale = nice_floor(lo)
    if scale <= 0:
        raise UserError(f"scenario {scenario.name} does not fit this machine at any scale the model predicts", "give --validate-scale")
    return scale


def run_validation(
    folder: Path,
    scenario_name: str,
    scale: float,
    duration: str | None,
    log: Callable[[str], None] = print,
    variant: str | None = None,
    sets: Sequence[str] = (),
) -> Path:
    """Run the scenario into ``folder/validation`` (an ordinary run directory), on the sweep's variant and ``--set``."""
    from ..run import run_scenario

    out = Path(folder) / VALIDATION
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists", "remove it to validate again")
    log(f"validation: {scenario_name} at scale {scale:g}")
    return run_scenario(scenario_name, duration=duration, out=out, variant=variant, sets=list(sets), scale=scale, log=log)


def _pct(pred: float, measured: float) -> float | None:
    if not np.isfinite(measured) or measured <= 0:
        return None
    return 100.0 * (pred - measured) / measured


def _check(role: str, planned: Estimate, at_measured: Estimate, measured: float) -> dict[str, Any]:
    return {
        "role": role,
        "predicted": {"estimate": planned.value, "low": planned.low, "high": planned.high},
        "predicted_at_measured_rates": {"estimate": at_measured.value, "low": at_measured.low, "high": at_measured.high},
        "measured": float(measured),
        "error_pct": _pct(planned.value, measured),
        "error_at_measured_rates_pct": _pct(at_measured.value, measured),
        "within_interval": bool(planned.low <= measured <= planned.high),
    }


def validation_dict(folder: Path, model: CostModel) -> dict[str, Any] | None:
    """capacity.json's ``validation`` from ``folder/validation`` (None when there is no run there)."""
    run_dir = Path(folder) / VALIDATION
    if not RunDir(run_dir).run_json.exists():
        return None
    run = read_run(run_dir)
    if run.load_window is None or run.load_window.end is None:
        return None
    scenario = Scenario.model_validate(run.scenario)
    topology = Topology.model_validate(run.topology)
    profile = scenario_profile(scenario, topology)
    planned_ops = operations(profile.workload, profile.deployment)
    tls_share = planned_ops["tls_request"] / planned_ops["request"] if planned_ops["request"] else 0.0
    start = float(run.load_window.start) + float(scenario.ramp_up) + MARGIN_S
    end = float(run.load_window.end) - MARGIN_S
    if end - start < 3.0:
        return None
    row = measure_windows(run_dir, [Window("validation", start, end, tls_share, topology.tls.key_type, "validation", "validation")]).iloc[0]
    planned = predict(model, profile)
    measured_ops = {name: float(row[name]) for fit in model.cpu.values() for name in fit.names if name != IDLE and name in row}
    roles = []
    at_measured_all = []
    for role in LB_ROLES:
        fit = model.cpu.get(role)
        measured = float(row[f"cpu_{role}"])
        if fit is None or not np.isfinite(measured):
            continue
        x = {n: v for n, v in measured_ops.items() if n in fit.names}
        at = Estimate(*fit.predict(x))
        at_measured_all.append(at)
        roles.append(_check(role, planned.cores[role], at, measured))
    total = _check("total", planned.total_cores, sum_estimates(at_measured_all), float(row["cpu_lb"]))
    lb = float(row["cpu_lb"])
    parts = {k: float(row[k]) if np.isfinite(row[k]) else None for k in ("cpu_loadgen", "cpu_server", "cpu_keepalived", "cpu_standby", "cpu_host")}
    known = lb + sum(v for k, v in parts.items() if k != "cpu_host" and v is not None)
    host = parts["cpu_host"]
    return {
        "run_dir": str(run_dir),
        "scenario": scenario.name,
        "scale": run.scale,
        "window": [start, end],
        "roles": roles,
        "total": total,
        "tolerance_pct": TOLERANCE_PCT,
        "within_tolerance": total["error_pct"] is not None and abs(total["error_pct"]) <= TOLERANCE_PCT,
        "operations_planned": {k: float(v) for k, v in planned_ops.items() if not k.startswith("_")},
        "operations_measured": measured_ops,
        "what_else_ran": {
            "loadgen_cores": parts["cpu_loadgen"],
            "server_cores": parts["cpu_server"],
            "keepalived_cores": parts["cpu_keepalived"],
            "standby_lb_cores": parts["cpu_standby"],
            "host_busy_cores": host,
            "other_cores": None if host is None else max(host - known, 0.0),
        },
    }
