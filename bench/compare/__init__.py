"""`bench compare RUN [RUN ...]`: runs side by side, with ratios, intervals and significance.

Each argument is a run directory (it holds ``run.json``) or a parent folder of
them; repeats of one configuration from one place form a group
(:mod:`bench.compare.runs`). The first group is the baseline; every other group is
compared with it, figure by figure (:mod:`bench.compare.comparison`):

- the group's value (the median of its runs, ``±`` the relative standard deviation
  when there are several);
- the ratio to the baseline, phrased by the figure's direction (``1.23x slower``
  for a rate that dropped or a latency that rose, ``1.10x faster``; ``worse`` and
  ``better`` for errors, CPU and ports), with its 95 % interval;
- ``significant``, ``within noise``, ``noise unknown`` (one run per side) or
  ``too few data`` (see :mod:`bench.stats`).

Figures missing from a run's summary.json show as ``n/a``; they are never an error.
The document (:func:`~bench.compare.comparison.compare_groups`) is rendered as a
terminal table, markdown, JSON or self-contained HTML (:mod:`bench.compare.render`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import stats
from ..errors import UserError
from ..inputs import check_output_file
from ..results.duet import DUET_JSON
from ..results.figures import MISSING, lookup, number
from ..results.layout import is_file
from .comparison import Row, compare_duet, compare_figure, compare_groups, compare_paired
from .figures import BY_KEY, KEY_FIGURES, Figure, figure_for, fmt_value, is_count, numeric_keys, phrase, ratio_of
from .render import FORMATS, make_plots, render_html, render_json, render_markdown, render_terminal, table_rows
from .runs import Group, Run, find_runs, group_key, load_groups, load_run, provenance_notes

__all__ = [
    "BY_KEY", "FORMATS", "KEY_FIGURES", "MISSING", "Figure", "Group", "Row", "Run", "compare", "compare_duet",
    "compare_figure", "compare_groups", "compare_paired", "figure_for", "find_runs", "fmt_value", "group_key",
    "is_count", "load_groups", "load_run", "lookup", "number", "numeric_keys", "phrase", "provenance_notes",
    "ratio_of", "render_doc", "table_rows",
]  # fmt: skip


def format_of(fmt: str | None, output: str | None) -> str:
    """The output format: ``fmt`` when given, else from the suffix of ``output``, else the terminal table."""
    if fmt:
        if fmt not in FORMATS:
            raise UserError(f"--format {fmt!r}: unknown format", f"use one of: {', '.join(FORMATS)}")
        return fmt
    suffix = Path(output).suffix.lower() if output else ""
    return {".md": "markdown", ".json": "json", ".html": "html", ".htm": "html"}.get(suffix, "table")


def render_doc(doc: dict[str, Any], groups: list[Group], fmt: str, output: str | None, plots: bool = True, console: Any = None) -> None:
    """Print or write a comparison document in ``fmt`` (markdown files get their plots as PNG files next to them)."""
    if fmt == "table" and output is None:
        render_terminal(doc, console)
        return
    if fmt == "table":
        from rich.console import Console

        with open(output, "w") as fh:  # type: ignore[arg-type]
            render_terminal(doc, Console(file=fh, width=160, color_system=None))
        return
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


def compare(
    inputs: Sequence[str],
    fmt: str | None = None,
    output: str | None = None,
    alpha: float = stats.ALPHA,
    extra_metrics: Sequence[str] = (),
    plots: bool = True,
    console: Any = None,
    run: str | None = None,
    rate: float | None = None,
    slice_s: float | None = None,
    warmup_s: float | None = None,
    budget_s: float | None = None,
    out: str | None = None,
    baseline_spec: dict[str, Any] | None = None,
    candidate_spec: dict[str, Any] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """`bench compare`: load, group, compare, and print or write the result; returns the document.

    ``fmt`` is ``table`` (rich, to the terminal), ``markdown``, ``json`` or ``html``;
    by default it follows the suffix of ``output`` (``.md``, ``.json``, ``.html``),
    else ``table``. Markdown written to a file gets its plots as PNG files next to it.
    With ``run`` both sides are measured first, at once (a duet, :func:`compare_run`).
    """
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must be between 0 and 1", "use for example --alpha 0.05")
    fmt = format_of(fmt, output)
    if output is not None:  # where the result goes is checked before anything is measured or read
        check_output_file(Path(output), "--output")
    if run:
        if inputs:
            raise UserError("use either --run SCENARIO or run directories, not both", "see `bench compare --help`")
        doc, groups = compare_run(run, baseline_spec or {}, candidate_spec or {}, rate, slice_s, warmup_s, budget_s, out, alpha, log)
        render_doc(doc, groups, fmt, output, plots, console)
        return doc
    duet_flags = [f for f, v in (("--rate", rate), ("--slice", slice_s), ("--warmup", warmup_s), ("--budget", budget_s), ("--out", out)) if v is not None]
    if duet_flags:
        raise UserError(f"{duet_flags[0]} applies to --run only", f"drop {duet_flags[0]}, or measure with --run SCENARIO")
    if not inputs:
        raise UserError("no runs to compare", "pass run directories or folders holding them, or --run SCENARIO")
    if len(inputs) == 1 and is_file(Path(inputs[0]) / DUET_JSON):
        doc, groups = compare_duet_folder(Path(inputs[0]), alpha)
        render_doc(doc, groups, fmt, output, plots, console)
        return doc
    groups = load_groups(inputs)
    if len(groups) < 2:
        only = groups[0]
        raise UserError(
            f"only one group to compare ({only.label}, {len(only.runs)} run(s))",
            "pass two or more run directories or folders (each argument is its own group)",
        )
    figures = list(KEY_FIGURES) + [figure_for(k) for k in extra_metrics if k not in BY_KEY]
    doc = compare_groups(groups, figures, alpha)
    render_doc(doc, groups, fmt, output, plots, console)
    return doc


def compare_run(
    scenario: str,
    baseline_spec: dict[str, Any],
    candidate_spec: dict[str, Any],
    rate: float | None,
    slice_s: float | None,
    warmup_s: float | None,
    budget_s: float | None,
    out: str | None,
    alpha: float,
    log: Any = print,
) -> tuple[dict[str, Any], list[Group]]:
    """`bench compare --run`: a duet for the whole budget (no early stop), then every per-slice figure compared."""
    from .. import duet

    specs = [duet.SideSpec(s.get("scenario"), s.get("variant"), list(s.get("sets") or [])) for s in (baseline_spec, candidate_spec)]
    sides, design, target = duet.plan_duet(
        scenario, specs[0], specs[1], Path(out) if out else None, rate, slice_s or duet.SLICE_S,
        duet.WARMUP_S if warmup_s is None else warmup_s, budget_s or duet.BUDGET_S, log,
    )  # fmt: skip
    duet.run_duet(sides, design, target, lambda n: False, [design.planned], log=log)
    return compare_duet_folder(target, alpha)


def compare_duet_folder(folder: Path, alpha: float = stats.ALPHA) -> tuple[dict[str, Any], list[Group]]:
    """Every per-slice figure of a finished duet folder, paired slice by slice (`bench compare DUET_FOLDER`)."""
    from ..duet import read_duet, slices_between
    from ..slices import FIGURES, paired_figures, side_slices

    doc = read_duet(folder)
    n = int(doc.get("slices") or 0)
    edges = slices_between(doc["design"], n)
    dirs = {side: Path(folder) / rel for side, rel in doc["sides"].items()}
    base, cand = (side_slices(dirs[side], edges) for side in ("baseline", "candidate"))
    groups = []
    for side in ("baseline", "candidate"):
        run = load_run(dirs[side])
        groups.append(Group(group_key(run.run), side, str(dirs[side]), [run]))
    figures = [Figure(k, better, description) for k, better, description in FIGURES]
    return compare_duet(paired_figures(base, cand), figures, groups, alpha, {**doc["design"], "folder": str(folder), "slices": n}), groups
