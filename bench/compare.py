"""`bench compare RUN [RUN ...]`: runs side by side, with ratios and significance.

Each argument is a run directory (it holds ``run.json``) or a parent folder: every
run directory below a parent is taken, and repeats of the same scenario, variant and
``--set`` overrides are grouped (the *group key*, e.g. ``smoke/monolith``). Groups
from different arguments are never merged, so ``bench compare base/ cand/`` compares
two folders of repeats even when they ran the same scenario. The first group is the
baseline; every other group is compared with it, figure by figure:

- the group's value (the median of its runs, ``±`` the relative standard deviation
  when there are several);
- the ratio to the baseline, phrased by the figure's direction (``1.23x slower``
  for a rate that dropped or a latency that rose, ``1.10x faster``; ``worse`` and
  ``better`` for errors, CPU and ports);
- ``significant``, ``within noise`` or ``too few data``, and the test that said so
  (see :mod:`bench.stats`).

Figures missing from a run's summary.json (an older run, a scenario without
failover ...) show as ``n/a``; they are never an error here.

The result is one JSON-able document (:func:`compare_runs`) that every output
format renders: the terminal (rich), markdown, JSON and self-contained HTML with
overlay plots of the per-second request rate and p99 latency.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from .errors import UserError

SCHEMA_VERSION = 1
FORMATS = ("table", "markdown", "json", "html")


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    """One figure of the comparison: a dotted summary.json key and how to read it."""

    key: str
    better: str | None  # "higher", "lower" or None (unknown: the ratio says higher/lower)
    series: str | None = None  # column of stats.per_second_series usable for single runs
    description: str = ""

    @property
    def words(self) -> tuple[str, str]:
        """(word when better, word when worse)."""
        if self.better is None:
            return ("higher", "lower")
        if "per_s" in self.key or self.key.startswith("latency_ms."):
            return ("faster", "slower")
        return ("better", "worse")


#: The key figures, in table order.
KEY_FIGURES: tuple[Figure, ...] = (
    Figure("requests.per_s", "higher", "requests", "successful requests per second, steady state"),
    Figure("connections.per_s", "higher", "connections", "new client connections per second"),
    Figure("tls.handshakes_per_s", "higher", None, "full TLS handshakes per second (SslFrontendKeyRate)"),
    Figure("latency_ms.p50", "lower", "p50_ms", "median latency of successful requests, ms"),
    Figure("latency_ms.p99", "lower", "p99_ms", "99th percentile latency, ms"),
    # no per-second series: errors.total counts the whole run, the series only the steady window
    Figure("errors.total", "lower", None, "failed requests, whole run"),
    Figure("cpu.lb_ms_per_request", "lower", None, "CPU of the HAProxy processes per successful request, ms"),
    Figure("ports.max_utilisation_pct", "lower", None, "peak ephemeral-port utilisation of the busiest source address, %"),
    Figure("failover.gap_s.median", "lower", None, "failover gap, median over injections, s"),
    Figure("failover.gap_s.p95", "lower", None, "failover gap, p95 over injections, s"),
)
_BY_KEY = {f.key: f for f in KEY_FIGURES}
#: Summary fields that are better when higher / lower, for figures outside KEY_FIGURES.
_HIGHER = re.compile(r"(per_s|_mbps|resumption_pct)$")
_LOWER = re.compile(r"^(latency_ms|errors|failover|cpu|ports)\.")
#: CPU roles that make up "the load balancer" (HAProxy processes).
LB_ROLES = ("frontend", "backend", "monolith")


def figure_for(key: str) -> Figure:
    """The :class:`Figure` of a dotted summary key (known figures keep their direction and series)."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    if _HIGHER.search(key):
        return Figure(key, "higher")
    if _LOWER.match(key):
        return Figure(key, "lower")
    return Figure(key, None)


MISSING = object()


def lookup(summary: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a summary (``MISSING`` when a part of the path is absent).

    Derived figures (``cpu.lb_ms_per_request``, ``failover.gap_s.*`` from events)
    are computed when summary.json does not hold them.
    """
    node: Any = summary
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = MISSING
            break
    if node is MISSING or node is None:
        derived = _DERIVED.get(key)
        if derived is None and key.startswith("failover.gap_s."):
            derived = _failover_gap
        if derived is not None:
            value = derived(summary, key)
            if value is not None:
                return value
    return node


def number(value: Any) -> float | None:
    """A finite float, or None (null, missing, text, bool, NaN)."""
    if value is MISSING or value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _lb_cpu_ms_per_request(summary: dict[str, Any], _key: str) -> float | None:
    """CPU milliseconds the HAProxy processes spent per successful request (steady state)."""
    cpu = summary.get("cpu") or {}
    per_s = number(lookup(summary, "requests.per_s"))
    if not isinstance(cpu, dict) or not per_s:
        return None
    seconds = number(cpu.get("lb_seconds"))
    window = number(lookup(summary, "window.seconds"))
    if seconds is not None and window:
        return 1000.0 * seconds / (per_s * window)
    by_container = cpu.get("by_container")
    if not isinstance(by_container, dict):
        return None
    pct = 0.0
    found = False
    for name, c in by_container.items():
        if not isinstance(c, dict):
            continue
        role = c.get("role")
        is_lb = role in LB_ROLES if role else bool(re.search(r"(^|[-_])lb-[a-z0-9]+-(frontend|backend)", str(name)))
        mean = number(c.get("total_mean_pct"))
        if mean is None and isinstance(c.get("mean_pct"), list):
            mean = sum(v for v in (number(x) for x in c["mean_pct"]) if v is not None)
        if is_lb and mean is not None:
            pct += mean
            found = True
    if not found:
        return None
    return 1000.0 * (pct / 100.0) / per_s


def _failover_gap(summary: dict[str, Any], key: str) -> float | None:
    """``failover.gap_s.{min,median,p95,max}`` from ``failover.events[].gap_s`` when not summarised."""
    events = (summary.get("failover") or {}).get("events") if isinstance(summary.get("failover"), dict) else None
    if not isinstance(events, list):
        return None
    gaps = np.array([g for g in (number(e.get("gap_s")) for e in events if isinstance(e, dict)) if g is not None])
    if gaps.size == 0:
        return None
    stat = key.rsplit(".", 1)[1]
    funcs: dict[str, Callable[[np.ndarray], float]] = {
        "min": np.min,
        "median": np.median,
        "p95": lambda g: np.percentile(g, 95),
        "max": np.max,
        "mean": np.mean,
    }
    return float(funcs[stat](gaps)) if stat in funcs else None


_DERIVED: dict[str, Callable[[dict[str, Any], str], float | None]] = {"cpu.lb_ms_per_request": _lb_cpu_ms_per_request}


def numeric_keys(summary: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a summary that holds a number (for "did you mean" messages)."""
    out = []
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(numeric_keys(v, key + "."))
        elif number(v) is not None:
            out.append(key)
    return out


# --------------------------------------------------------------------------- runs and groups


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

    def value(self, key: str) -> float | None:
        return number(lookup(self.summary, key))

    def series(self) -> pd.DataFrame:
        """Per-second figures of the steady state (:func:`bench.stats.per_second_series`)."""
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
    """Repeats of one scenario + variant + overrides from one input argument."""

    key: str
    label: str
    source: str
    runs: list[Run]

    def values(self, key: str) -> list[float]:
        return [v for v in (r.value(key) for r in self.runs) if v is not None]

    def value(self, key: str) -> float | None:
        vals = self.values(key)
        return float(np.median(vals)) if vals else None

    def spread_pct(self, key: str) -> float | None:
        """Relative standard deviation of the per-run values, % (None with fewer than two)."""
        vals = np.asarray(self.values(key))
        if vals.size < 2 or vals.mean() == 0:
            return None
        return float(100.0 * vals.std(ddof=1) / abs(vals.mean()))

    def series(self, column: str) -> np.ndarray | None:
        """The per-second samples of ``column`` from every run of the group, concatenated."""
        parts = []
        for r in self.runs:
            s = r.series()
            if column in s and s[column].notna().any():
                parts.append(s[column].dropna().to_numpy(dtype=float))
        return np.concatenate(parts) if parts else None


def load_run(path: Path) -> Run:
    """Read one run directory (summary.json is recomputed from the samples when absent)."""
    from .analysis.summary import SummaryError, summarise

    try:
        run = json.loads((path / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path / 'run.json'}: cannot read ({exc})", "pass run directories written by `bench run`") from None
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else summarise(path)
    except (json.JSONDecodeError, SummaryError) as exc:
        raise UserError(f"{summary_path}: cannot read ({exc})", f"rebuild it with `bench report {path}`") from None
    if not isinstance(summary, dict):
        raise UserError(f"{summary_path}: not a summary", f"rebuild it with `bench report {path}`")
    version = summary.get("schema_version", 1)
    if isinstance(version, int) and version > _summary_schema():
        raise UserError(f"{summary_path}: schema_version {version} is newer than this lbbench understands", "upgrade lbbench")
    return Run(path, run, summary)


def _summary_schema() -> int:
    """The newest summary.json schema this lbbench writes (and so reads)."""
    from .analysis import summary

    return int(getattr(summary, "SCHEMA_VERSION", 1))


def find_runs(arg: str) -> list[Path]:
    """Run directories named by one argument: itself, or every run directory below it."""
    path = Path(arg)
    if (path / "run.json").is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{arg}: no such run directory or folder", "pass run directories or folders holding them")
    found = sorted({p.parent for p in path.rglob("run.json")})
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
    """The overrides the run's variant itself applies (so the key shows only the extra ``--set``s)."""
    variant = run.get("variant")
    topology = (run.get("scenario") or {}).get("topology")
    if not variant or not topology:
        return {}
    try:
        from .spec import load_topology

        _, overrides = load_topology(str(topology), str(variant))
    except (UserError, OSError):  # the topology may have changed or be unavailable; then show every override
        return {}
    return _flatten(overrides)


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


def load_groups(args: Sequence[str], labels: Sequence[str] | None = None) -> list[Group]:
    """Groups of runs from the arguments, in order of appearance (the first is the baseline).

    With ``labels`` (one per argument) every argument becomes exactly one group of
    that label (`bench gate` uses this for baseline and candidate).
    """
    if not args:
        raise UserError("no runs to compare", "pass run directories or folders holding them")
    groups: list[Group] = []
    for i, arg in enumerate(args):
        runs = [load_run(p) for p in find_runs(arg)]
        runs.sort(key=lambda r: (r.started, str(r.path)))
        if labels is not None:
            keys = sorted({group_key(r.run) for r in runs})
            groups.append(Group(" + ".join(keys), labels[i], arg, runs))
            continue
        by_key: dict[str, list[Run]] = {}
        for r in runs:
            by_key.setdefault(group_key(r.run), []).append(r)
        for key, members in by_key.items():
            groups.append(Group(key, key, arg, members))
    if labels is None:
        seen: dict[str, int] = {}
        for g in groups:
            seen[g.label] = seen.get(g.label, 0) + 1
        for g in groups:
            if seen[g.label] > 1:
                g.label = f"{g.key} @{g.source.rstrip('/')}"
    return groups


# --------------------------------------------------------------------------- comparison


def ratio_of(base: float | None, cand: float | None) -> float | None:
    """cand/base; 1.0 when both are zero, inf when only the baseline is zero, None when either is missing."""
    if base is None or cand is None:
        return None
    if base == 0:
        return 1.0 if cand == 0 else math.inf
    return cand / base


def phrase(ratio: float | None, figure: Figure) -> str:
    """asv/pyperf-style wording of a ratio, by the figure's direction.

    >>> phrase(0.8, figure_for("requests.per_s"))
    '1.25x slower'
    >>> phrase(1.1, figure_for("latency_ms.p99"))
    '1.10x slower'
    """
    if ratio is None:
        return "n/a"
    good, bad = figure.words
    up = ratio > 1
    if figure.better is None:
        word = "higher" if up else "lower"
    else:
        word = good if (figure.better == "higher") == up else bad
    if math.isinf(ratio):
        return f"{word} (from 0)"
    if ratio == 0:
        return f"{word} (to 0)"
    factor = ratio if ratio >= 1 else 1 / ratio
    if round(factor, 2) == 1.0:
        return "same"
    return f"{factor:.2f}x {word}"


def is_worse(ratio: float | None, figure: Figure) -> bool | None:
    """True when the change goes the bad way for the figure (None when unknown)."""
    if ratio is None or figure.better is None or ratio == 1:
        return None
    return (ratio < 1) if figure.better == "higher" else (ratio > 1)


def _r(x: float | None, digits: int = 4) -> float | None:
    """Rounded for the document; None for missing and non-finite values (JSON has no inf)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def series_pair(base: Group, cand: Group, figure: Figure) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-second samples of a figure for both groups, read only when the repeats are too few to decide alone."""
    enough = min(len(base.values(figure.key)), len(cand.values(figure.key))) >= stats.MIN_REPEATS
    if enough or not figure.series:
        return None, None
    return base.series(figure.series), cand.series(figure.series)


def compare_figure(base: Group, cand: Group, figure: Figure, alpha: float = stats.ALPHA) -> dict[str, Any]:
    """One row: both groups' values, ratio, phrase and significance of one figure."""
    b, c = base.value(figure.key), cand.value(figure.key)
    ratio = ratio_of(b, c)
    if b is None or c is None:
        sig = stats.Significance("none", None, None, None, (len(base.values(figure.key)), len(cand.values(figure.key))), "")
    else:
        sig = stats.significance(
            base.values(figure.key), cand.values(figure.key), *series_pair(base, cand, figure), alpha=alpha, seed=stats.seed_for(figure.key)
        )
    change = None if ratio is None or math.isinf(ratio) else 100.0 * (ratio - 1.0)
    return {
        "metric": figure.key,
        "better": figure.better,
        "baseline": _r(b),
        "candidate": _r(c),
        "baseline_spread_pct": _r(base.spread_pct(figure.key), 2),
        "candidate_spread_pct": _r(cand.spread_pct(figure.key), 2),
        "ratio": None if ratio is None or math.isinf(ratio) else _r(ratio),
        "change_pct": _r(change, 2),
        "phrase": phrase(ratio, figure),
        "worse": is_worse(ratio, figure),
        "significance": sig.marker,
        "test": sig.describe(),
        "evidence": sig.evidence(),
        "p": _r(sig.p),
        "ci95": [_r(x) for x in sig.ci95] if sig.ci95 else None,
        "n": list(sig.n),
        "unit": sig.unit,
    }


def compare_groups(groups: list[Group], figures: Sequence[Figure] = KEY_FIGURES, alpha: float = stats.ALPHA) -> dict[str, Any]:
    """The comparison document: groups, and each further group against the first."""
    base = groups[0]
    comparisons = []
    tests_used: set[str] = set()
    for cand in groups[1:]:
        rows = [compare_figure(base, cand, f, alpha) for f in figures]
        tests_used.update(r["test"].split(" ")[0] for r in rows if r["test"] != "-")
        comparisons.append({"baseline": base.label, "candidate": cand.label, "rows": rows})
    return {
        "schema_version": SCHEMA_VERSION,
        "alpha": alpha,
        "groups": [
            {
                "label": g.label,
                "key": g.key,
                "source": g.source,
                "runs": [{"id": r.id, "path": str(r.path), "status": r.status} for r in g.runs],
            }
            for g in groups
        ],
        "figures": [{"metric": f.key, "better": f.better, "description": f.description} for f in figures],
        "comparisons": comparisons,
        "notes": notes_for(tests_used, groups),
    }


TEST_NOTES = {
    "mann-whitney": "mann-whitney: two-sided Mann-Whitney U test on the per-run values of the repeats.",
    "welch-t": "welch-t: Welch's t-test on the per-run values; used when there are too few repeats for Mann-Whitney U to ever reach alpha (3 against 3). It assumes roughly normal run-to-run noise.",
    "batch-means": "batch-means: fewer than 3 runs per side, so the per-second samples of the steady state were compared: each side cut into 3 stretches, Welch's t-test on their means (neighbouring seconds are correlated; single seconds are not independent samples). It sees only the noise within a run, not between runs: repeat runs (>= 3 per side) before trusting a small difference.",
}


def notes_for(tests_used: set[str], groups: list[Group]) -> list[str]:
    """Plain-language notes on the tests used and on runs that did not complete."""
    notes = [TEST_NOTES[t] for t in ("mann-whitney", "welch-t", "batch-means") if t in tests_used]
    notes.append("too few data: fewer than 3 runs per side and no per-second samples for that figure; repeat runs to tell.")
    for g in groups:
        for r in g.runs:
            if r.status != "completed":
                notes.append(f"run {r.id} ({r.path}) has status {r.status}: its figures cover a partial run.")
    return notes


# --------------------------------------------------------------------------- rendering


def is_count(metric: str) -> bool:
    """Figures that count things (shown without decimals): ``errors.total``, ``requests.ok`` ..."""
    return (metric.startswith("errors.") and not metric.endswith(("per_s", "pct"))) or metric.endswith((".total", ".ok", ".steady"))


def fmt_value(value: float | None, spread: float | None = None, count: bool = False) -> str:
    """A figure's value for a table: ``3108.0``, ``4.41``, ``0.219``, counts as ``12``, with ``±1.2%`` for repeats; ``n/a`` when absent."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    if value == 0 or (count and float(value).is_integer()):
        text = f"{int(value)}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    if spread is not None:
        text += f" ±{spread:.1f}%"
    return text


def _change(row: dict[str, Any]) -> str:
    return "n/a" if row["change_pct"] is None else f"{row['change_pct']:+.1f}%"


def _test_text(row: dict[str, Any]) -> str:
    if row["test"] == "-" or row["evidence"] == "-":
        return row["test"]
    return f"{row['test']}, {row['evidence']}"


def _group_header(doc: dict[str, Any], label: str) -> str:
    g = next(g for g in doc["groups"] if g["label"] == label)
    return f"{label} (n={len(g['runs'])})"


def table_rows(doc: dict[str, Any], comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of one comparison table (shared by every format)."""
    header = [
        "figure",
        _group_header(doc, comparison["baseline"]),
        _group_header(doc, comparison["candidate"]),
        "ratio",
        "change",
        "significance",
        "test",
    ]
    rows = [
        [
            r["metric"],
            fmt_value(r["baseline"], r["baseline_spread_pct"], is_count(r["metric"])),
            fmt_value(r["candidate"], r["candidate_spread_pct"], is_count(r["metric"])),
            r["phrase"],
            _change(r),
            r["significance"],
            _test_text(r),
        ]
        for r in comparison["rows"]
    ]
    return header, rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The comparison as GitHub-flavoured markdown (``images``: title -> relative PNG path)."""
    out = ["# bench compare", "", "Groups (the first is the baseline):", ""]
    out += ["| group | key | runs |", "| --- | --- | --- |"]
    for g in doc["groups"]:
        runs = ", ".join(f"`{r['path']}`" + ("" if r["status"] == "completed" else f" ({r['status']})") for r in g["runs"])
        out.append(f"| {_md_cell(g['label'])} | {_md_cell(g['key'])} | {_md_cell(runs)} |")
    for comp in doc["comparisons"]:
        header, rows = table_rows(doc, comp)
        out += ["", f"## {comp['candidate']} vs {comp['baseline']}", ""]
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("| --- | ---: | ---: | --- | ---: | --- | --- |")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    if images:
        out.append("")
        out += [f"![{title}]({path})" for title, path in images.items()]
    out += ["", "Notes:", ""]
    out += [f"- {n}" for n in doc["notes"]]
    return "\n".join(out) + "\n"


def render_json(doc: dict[str, Any]) -> str:
    """The comparison document as JSON (infinite ratios become null)."""
    return json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n"


def _style(row: dict[str, Any]) -> str:
    if row["significance"] != stats.SIGNIFICANT:
        return "dim" if row["significance"] == stats.WITHIN_NOISE else ""
    return "red" if row["worse"] else "green" if row["worse"] is False else ""


def render_terminal(doc: dict[str, Any], console: Any = None) -> None:
    """Print the comparison with rich (significant regressions red, improvements green, noise dim)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    groups = Table(title="groups (the first is the baseline)", title_justify="left")
    for col in ("group", "runs"):
        groups.add_column(col)
    for g in doc["groups"]:
        groups.add_row(g["label"], "\n".join(r["path"] + ("" if r["status"] == "completed" else f" ({r['status']})") for r in g["runs"]))
    console.print(groups)
    for comp in doc["comparisons"]:
        header, rows = table_rows(doc, comp)
        t = Table(title=f"{comp['candidate']} vs {comp['baseline']}", title_justify="left")
        for i, h in enumerate(header):
            t.add_column(h, justify="right" if i in (1, 2, 4) else "left")
        for row, raw in zip(rows, comp["rows"], strict=True):
            t.add_row(*row, style=_style(raw))
        console.print(t)
    for n in doc["notes"]:
        console.print(f"note: {n}", style="dim", highlight=False)


def plot_series(groups: list[Group], column: str, ylabel: str, title: str) -> bytes | None:
    """A PNG overlaying one per-second series of every run, one colour per group (None without data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    drawn = False
    colours = plt.get_cmap("tab10")
    for i, g in enumerate(groups):
        labelled = False
        for r in g.runs:
            s = r.series()
            if s.empty or s[column].isna().all():
                continue
            ax.plot(s["second"], s[column], color=colours(i % 10), alpha=0.85, linewidth=1.2, label=None if labelled else g.label)
            labelled = drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("seconds into the steady state")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


PLOTS = (
    ("requests", "successful requests/s", "request rate per second"),
    ("p99_ms", "p99 latency (ms)", "p99 latency per second"),
)


def make_plots(groups: list[Group]) -> dict[str, tuple[str, bytes]]:
    """Overlay plots of the per-second request rate and p99 latency: column -> (title, PNG bytes)."""
    out = {}
    for column, ylabel, title in PLOTS:
        png = plot_series(groups, column, ylabel, title)
        if png is not None:
            out[column] = (title, png)
    return out


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.worse td { background: #fde2e1; } tr.better td { background: #e3f6e5; } tr.noise td { color: #777; }
code { font-size: 13px; } .notes { color: #555; font-size: 13px; }
"""


def render_html(doc: dict[str, Any], plots: dict[str, tuple[str, bytes]] | None = None) -> str:
    """A self-contained HTML page: tables, notes and the overlay plots (embedded PNG)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>bench compare</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>bench compare</h1>",
        "<h2>Groups</h2><p>The first group is the baseline.</p>",
        "<table><tr><th>group</th><th>key</th><th>runs</th></tr>",
    ]
    for g in doc["groups"]:
        runs = "<br>".join(f"<code>{e(r['path'])}</code>" + ("" if r["status"] == "completed" else f" ({e(r['status'])})") for r in g["runs"])
        parts.append(f"<tr><td>{e(g['label'])}</td><td>{e(g['key'])}</td><td>{runs}</td></tr>")
    parts.append("</table>")
    for comp in doc["comparisons"]:
        header, rows = table_rows(doc, comp)
        parts.append(f"<h2>{e(comp['candidate'])} vs {e(comp['baseline'])}</h2><table><tr>")
        parts += [f"<th>{e(h)}</th>" for h in header]
        parts.append("</tr>")
        for row, raw in zip(rows, comp["rows"], strict=True):
            cls = ""
            if raw["significance"] == stats.SIGNIFICANT and raw["worse"] is not None:
                cls = "worse" if raw["worse"] else "better"
            elif raw["significance"] == stats.WITHIN_NOISE:
                cls = "noise"
            cells = "".join(f'<td class="num">{e(c)}</td>' if i in (1, 2, 4) else f"<td>{e(c)}</td>" for i, c in enumerate(row))
            parts.append(f'<tr class="{cls}" title="{e(_figure_description(doc, raw["metric"]))}">{cells}</tr>')
        parts.append("</table>")
    if plots:
        parts.append("<h2>Time series</h2>")
        for title, png in plots.values():
            data = base64.b64encode(png).decode()
            parts.append(f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}"><figcaption>{e(title)}</figcaption></figure>')
    parts.append('<h2>Notes</h2><ul class="notes">')
    parts += [f"<li>{e(n)}</li>" for n in doc["notes"]]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def _figure_description(doc: dict[str, Any], metric: str) -> str:
    return next((f["description"] for f in doc["figures"] if f["metric"] == metric), "")


# --------------------------------------------------------------------------- entry point


def _format_of(fmt: str | None, output: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: unknown format", f"use one of: {', '.join(FORMATS)}")
        return fmt
    suffix = Path(output).suffix.lower() if output else ""
    return {".md": "markdown", ".json": "json", ".html": "html", ".htm": "html"}.get(suffix, "table")


def compare(
    inputs: Sequence[str],
    fmt: str | None = None,
    output: str | None = None,
    alpha: float = stats.ALPHA,
    extra_metrics: Sequence[str] = (),
    plots: bool = True,
    console: Any = None,
) -> dict[str, Any]:
    """`bench compare`: load, group, compare, and print or write the result; returns the document.

    ``fmt`` is ``table`` (rich, to the terminal), ``markdown``, ``json`` or ``html``;
    by default it follows the suffix of ``output`` (``.md``, ``.json``, ``.html``),
    else ``table``. Markdown written to a file gets its plots as PNG files next to it.
    """
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must be between 0 and 1", "use for example --alpha 0.05")
    fmt = _format_of(fmt, output)
    groups = load_groups(inputs)
    if len(groups) < 2:
        only = groups[0]
        raise UserError(
            f"only one group to compare ({only.label}, {len(only.runs)} run(s))",
            "pass two or more run directories or folders (each argument is its own group)",
        )
    figures = list(KEY_FIGURES) + [figure_for(k) for k in extra_metrics if k not in _BY_KEY]
    doc = compare_groups(groups, figures, alpha)
    if fmt == "table" and output is None:
        render_terminal(doc, console)
        return doc
    if fmt == "table":
        from rich.console import Console

        with open(output, "w") as fh:  # type: ignore[arg-type]
            render_terminal(doc, Console(file=fh, width=160, color_system=None))
        return doc
    if fmt == "json":
        text = render_json(doc)
    elif fmt == "html":
        text = render_html(doc, make_plots(groups) if plots else None)
    else:
        images: dict[str, str] = {}
        if output and plots:
            out = Path(output)
            for column, (title, png) in make_plots(groups).items():
                png_path = out.with_name(f"{out.stem}-{column}.png")
                png_path.write_bytes(png)
                images[title] = png_path.name
        text = render_markdown(doc, images)
    if output:
        Path(output).write_text(text)
    else:
        print(text, end="")
    return doc
