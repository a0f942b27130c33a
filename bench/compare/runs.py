"""Reading run directories and grouping repeats: what `bench compare` and `bench gate` compare.

Runs are repeats of each other when they ran the same configuration (the *group
key*: scenario, variant and the ``--set`` overrides beyond the variant's own) and
come from the same place: the same folder argument, or, for run directories named
one by one (a shell glob), the same parent folder. So ``bench compare main/
pr/``, ``bench compare main/run-* pr/run-*`` and ``bench compare pr/run-2 main/run-1
main/run-2 pr/run-1`` all give the same two groups, in the order their first run
appears. Only when that would leave a single group (two runs of one
configuration side by side in ``reports/``) is every argument its own group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import stats
from ..errors import UserError
from ..results.figures import MISSING, lookup, number
from ..results.layout import RunDir, find_run_dirs, is_dir, is_run_dir


@dataclass
class Run:
    """One run directory, its run.json and summary.json, and (lazily) its per-second series."""

    path: Path
    run: dict[str, Any]
    summary: dict[str, Any]
    _series: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return str(self.run.get("id") or self.path.name)

    @property
    def status(self) -> str:
        return str(self.run.get("status") or "unknown")

    @property
    def invalid(self) -> str | None:
        """What changed in the lab under this run (status ``invalid`` or ``integrity.ok`` false: bench/collect/integrity.py), or None."""
        integrity = self.summary.get("integrity") or {}
        if self.status != "invalid" and integrity.get("ok") is not False:
            return None
        return str(integrity.get("headline") or (self.run.get("integrity") or {}).get("headline") or "see its events.jsonl")

    def value(self, key: str) -> float | None:
        return number(lookup(self.summary, key))

    @property
    def unfinished(self) -> dict[str, Any]:
        """The ``unfinished`` section of summary.json (requests sent and never answered); empty when the run predates it."""
        return self.summary.get("unfinished") or {}

    def unfinished_text(self) -> str | None:
        """``4 requests unfinished at the load's end, oldest waiting 8.9 s`` (None without any, or for a run that predates the count)."""
        from ..analysis.unfinished import count_text  # (as summarise below: compare imports no analysis until it needs it)

        # (those sent as the load stopped and cut by the stop at once are no request of the load: in no figure's range)
        return count_text(self.unfinished)

    def series(self) -> pd.DataFrame:
        """Per-second figures of the steady state (:func:`bench.stats.per_second_series`), for the plots."""
        if self._series is None:
            w = self.summary.get("window") or {}
            start, end = number(w.get("start")), number(w.get("end"))
            window = (start, end) if start is not None and end is not None and end > start else None
            self._series = stats.per_second_series(self.path, window)
        return self._series

    @property
    def started(self) -> float:
        w = self.summary.get("window") or {}
        return float(w.get("start") or (self.run.get("load_window") or {}).get("start") or 0.0)


@dataclass
class Group:
    """Repeats of one configuration from one place."""

    key: str
    label: str
    source: str
    runs: list[Run]

    def values(self, key: str) -> list[float]:
        """The comparable runs' values (an invalid run's figures are not the lab's: left out)."""
        return [v for v in (r.value(key) for r in self.runs if r.invalid is None) if v is not None]

    def value(self, key: str) -> float | None:
        vals = self.values(key)
        return float(np.median(vals)) if vals else None


def load_run(path: Path) -> Run:
    """Read one run directory through :mod:`bench.results` (summary.json is recomputed from the samples when absent).

    Newer files are refused and older ones migrated there, each problem in one line.
    """
    from ..analysis.summary import summarise
    from ..results.run import read_run
    from ..results.summary import read_summary

    run = read_run(path).model_dump(mode="json", exclude_unset=True)
    if RunDir(path).summary_json.exists():
        summary = read_summary(path).model_dump(mode="json", exclude_unset=True)
    else:
        summary = summarise(path)
    return Run(path, run, summary)


def find_runs(arg: str) -> list[Path]:
    """Run directories named by one argument: itself, or every run directory below it."""
    path = Path(arg)
    if not is_dir(path):
        raise UserError(f"{arg}: no such run directory or folder", "pass run directories or folders holding them")
    found = find_run_dirs(path)
    if not found:
        raise UserError(f"{arg}: no run directory below it (no run.json)", "pass run directories written by `bench run`")
    return found


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _variant_overrides(run: dict[str, Any]) -> dict[str, Any]:
    """The overrides the run's scenario and variant themselves apply (so the key shows only the extra ``--set``s).

    The scenario's own ``overrides``, then its variant: the scenario's own variant
    (kept in run.json) or else the topology's.
    """
    from ..spec import deep_merge

    scenario = run.get("scenario") or {}
    base = dict(scenario.get("overrides") or {})
    variant = run.get("variant")
    if variant:
        own = (scenario.get("variants") or {}).get(variant)
        if isinstance(own, dict):
            base = deep_merge(base, own.get("overrides") or {})
        elif scenario.get("topology"):
            try:
                from ..spec import load_topology

                _, overrides = load_topology(str(scenario["topology"]), str(variant))
                base = deep_merge(base, overrides)
            except (UserError, OSError):  # the topology may have changed or be unavailable; then show every override
                pass
    return _flatten(base)


def group_key(run: dict[str, Any]) -> str:
    """``scenario[/variant][ key=value ...]``: what makes runs repeats of each other.

    >>> group_key({"scenario": {"name": "smoke"}, "variant": "monolith", "overrides": {}})
    'smoke/monolith'
    """
    scenario = (run.get("scenario") or {}).get("name") or "?"
    key = scenario + (f"/{run['variant']}" if run.get("variant") else "")
    extra = _flatten(run.get("overrides") or {})
    base = _variant_overrides(run) if extra else {}
    sets = [f"{k}={v}" for k, v in sorted(extra.items()) if base.get(k, MISSING) != v]
    return " ".join([key, *sets])


def _origin(arg: str, path: Path) -> str:
    """Where a run comes from: the folder argument, or the parent folder of a run directory named itself."""
    if is_run_dir(Path(arg)):
        parent = str(path.parent)
        return parent if parent not in ("", ".") else "."
    return arg.rstrip("/") or arg


def load_groups(args: Sequence[str], labels: Sequence[str] | None = None) -> list[Group]:
    """Groups of runs from the arguments, in order of appearance (the first is the baseline).

    With ``labels`` (one per argument) every argument becomes exactly one group of
    that label (`bench gate` uses this for baseline and candidate). Otherwise see the
    module docstring. A run directory named twice is read once.
    """
    if not args:
        raise UserError("no runs to compare", "pass run directories or folders holding them")
    if labels is not None:
        out = []
        for arg, label in zip(args, labels, strict=True):
            runs = sorted((load_run(p) for p in find_runs(arg)), key=lambda r: (r.started, str(r.path)))
            out.append(Group(" + ".join(sorted({group_key(r.run) for r in runs})), label, arg, runs))
        return out
    seen: set[Path] = set()
    entries: list[tuple[int, str, str, Run]] = []  # (argument index, key, origin, run)
    for i, arg in enumerate(args):
        for p in find_runs(arg):
            real = p.resolve()
            if real in seen:
                continue
            seen.add(real)
            r = load_run(p)
            entries.append((i, group_key(r.run), _origin(arg, p), r))
    by_place: dict[tuple[str, str], list[tuple[int, Run]]] = {}
    for i, key, origin, r in entries:
        by_place.setdefault((key, origin), []).append((i, r))
    if len(by_place) == 1 and len({i for i, *_ in entries}) > 1:
        # one configuration from one place, named in several arguments: compare them as given
        by_place = {}
        for i, key, _, r in entries:
            by_place.setdefault((key, args[i].rstrip("/") or args[i]), []).append((i, r))
    groups = [
        Group(key, key, origin, sorted((r for _, r in members), key=lambda r: (r.started, str(r.path))))
        for (key, origin), members in sorted(by_place.items(), key=lambda kv: min(i for i, _ in kv[1]))
    ]
    counts: dict[str, int] = {}
    for g in groups:
        counts[g.label] = counts.get(g.label, 0) + 1
    for g in groups:
        if counts[g.label] > 1:
            g.label = f"{g.key} @{g.source}"
    return groups


# --------------------------------------------------------------------------- provenance

#: What must match between baseline and candidate for a comparison to measure only the change: (label, getter).
PROVENANCE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("machine", ("machine", "hostname")),
    ("cores", ("machine", "cpus")),
    ("kernel", ("machine", "kernel")),
    ("lbbench version", ("versions", "lbbench")),
    ("Docker engine", ("versions", "docker_engine")),
)


def _get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(d, dict):
            return None
        d = d.get(part)  # type: ignore[assignment]
    return d


def provenance_notes(base: Group, cand: Group) -> list[str]:
    """One line per way the two groups' runs differ in where and with what they ran (empty when alike).

    Different machines, core counts, kernels, lbbench or Docker versions measure
    more than the change under test; a field a run does not record is not compared.
    """
    notes = []
    for label, path in PROVENANCE:
        b = sorted({str(v) for v in (_get(r.run, path) for r in base.runs) if v is not None})
        c = sorted({str(v) for v in (_get(r.run, path) for r in cand.runs) if v is not None})
        if b and c and b != c:
            notes.append(
                f"{cand.label} and {base.label} differ in {label} ({', '.join(c)} vs {', '.join(b)}): "
                "the comparison measures that difference too"
            )
    return notes


def unfinished_notes(groups: Sequence[Group]) -> list[str]:
    """One line per run that left requests unfinished when its load ended: none of its figures counts them.

    Runs recorded before the count (``unfinished`` null) and runs without any say nothing.
    """
    notes = []
    for g in groups:
        for r in g.runs:
            text = r.unfinished_text()
            if text is not None:
                large = " (large: they could move its latency and error figures anywhere)" if r.unfinished.get("large") else ""
                who = f"the {g.label}'s run" if g.label in ("baseline", "candidate") else "run"
                notes.append(
                    f"{who} {r.id} ({r.path}): {text}{large}; sent and never answered, they are in none of its figures "
                    "(the range each figure could take had they finished: unfinished.bounds in its summary.json)"
                )
    return notes
