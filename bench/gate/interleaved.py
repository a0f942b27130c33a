"""`bench gate --run --interleaved`: whole runs of each side one after the other, in a random order per round.

For what cannot run at once (two labs do not fit the machine, a change of the
machine itself): round i runs the baseline and the candidate once each, in an
order drawn at random (A B, B A, B A, A B ...), so that slow drift of the machine
and any effect of going first spread over both sides alike. Each run is a
complete run directory; the gate then compares the repeats (Welch's t on the
logs of the per-run values). A duet (the default of ``--run``) is much tighter
on a shared machine; use this when a duet is impossible.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..inputs import check_output_dir

#: Upper bound of `bench gate --run --repeat`, so a typo cannot occupy a CI machine for hours.
MAX_REPEAT = 20


def run_interleaved(
    scenario: str,
    repeat: int,
    out: Path,
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    duration: str | None = None,
    log: Callable[[str], None] = print,
    runner: Callable[..., Path] | None = None,
    seed: int | None = None,
) -> tuple[list[Path], list[Path]]:
    """Run each side ``repeat`` times into ``out/baseline`` and ``out/candidate``, rounds in random order.

    ``baseline``/``candidate`` hold ``variant``, ``sets`` and optionally
    ``scenario`` (a scenario file replacing ``scenario`` for that side).
    """
    if runner is None:
        from ..run import run_scenario

        runner = run_scenario
    if not 1 <= repeat <= MAX_REPEAT:
        raise UserError(f"--repeat {repeat}: must be between 1 and {MAX_REPEAT}", "use for example --repeat 3")
    out = check_output_dir(Path(out))
    # both sides' scenario, variant and overrides are checked before the first run starts
    from ..load.fit import prepare_load
    from ..spec import load_scenario, scenario_topology

    for spec in (baseline, candidate):
        side_scenario, _ = load_scenario(spec.get("scenario") or scenario, duration)
        topology, _ = scenario_topology(side_scenario, spec.get("variant") or side_scenario.variant, list(spec.get("sets") or []))
        prepare_load(side_scenario, topology, log=lambda _m: None)
    rng = random.Random(seed)
    dirs: dict[str, list[Path]] = {"baseline": [], "candidate": []}
    for i in range(1, repeat + 1):
        order = [("baseline", baseline), ("candidate", candidate)]
        rng.shuffle(order)
        for side, spec in order:
            target = out / side / f"run-{i:02d}"
            log(f"gate: round {i}/{repeat}, {side}")
            run_dir = runner(
                spec.get("scenario") or scenario,
                duration=duration,
                out=target,
                variant=spec.get("variant"),
                sets=list(spec.get("sets") or []),
                log=log,
            )
            dirs[side].append(Path(run_dir))
    return dirs["baseline"], dirs["candidate"]
