"""Build everything a run directory's report consists of, from the run directory alone.

``build_report(run_dir)`` writes, inside ``run_dir``:

- ``summary.json`` (:mod:`bench.analysis.summary`);
- ``derived/*.parquet``: the time series the plots are drawn from (:mod:`bench.analysis.series`);
- ``derived/latency.hlog``: the latency histograms as an HdrHistogram interval log (:mod:`bench.report.latency`);
- ``plots/<name>.png``: every plot as a file;
- ``report.html``: one self-contained page with the plots embedded.

It is what ``bench report DIR`` and the end of ``bench run`` call. It first
compacts the run's sample tables (:func:`bench.results.store.compact_run`: one
file per table instead of one per second), also those of a run that was killed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..analysis.common import RunData, load_run, read_run
from ..analysis.series import Series, build_series, write_series
from ..analysis.summary import save_summary, summarise_data
from ..proc import Forked, group_alive
from ..results.layout import RunDir
from ..results.store import compact_run, newest_write, use_small_pages
from .html import render_html
from .latency import write_hlog

if TYPE_CHECKING:
    from .plots import Plot

# The plots (matplotlib: about 0.5 s of CPU to import) are imported by the forked copy (beside the summary) and
# here once the summary is saved: `bench run` imports this module while its lab starts, and nothing it needs
# before its headline draws.

T = TypeVar("T")

#: A run whose writers' streams have not grown for this long while its load generator is gone was killed.
QUIET_S = 5.0


def writers_gone(run_dir: Path, run: dict[str, Any]) -> bool:
    """Whether nothing writes into ``run_dir`` any more: the run ended, or it was killed.

    A killed run's run.json still says ``running``; its load generator's process group
    is then gone and no stream has grown for :data:`QUIET_S` (the collectors append
    every second while they live). A report made just after the kill waits until
    the streams have been quiet that long (at most :data:`QUIET_S`): leaving them
    open would keep the killed writers' files beside the compacted one.
    """
    if run.get("status") != "running":
        return True
    pid = run.get("load_pid")
    if isinstance(pid, int) and pid > 0 and group_alive(pid):
        return False
    newest = newest_write(run_dir)
    if newest is None:
        return True
    wait = newest + QUIET_S - time.time()
    if wait <= 0:
        return True
    time.sleep(min(wait, QUIET_S))
    return newest_write(run_dir) == newest  # a stream grew meanwhile: somebody still writes


def build_report(run_dir: Path, on_summary: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Rebuild summary.json, derived series, plots and report.html of ``run_dir``; returns the report's path.

    ``on_summary`` is called with the summary as soon as summary.json is written,
    before the plots and the page (`bench run` prints its headline then).
    """
    run_dir = Path(run_dir)
    run = read_run(run_dir)  # not a run directory: say so before anything is written
    use_small_pages()  # before compaction reads the long tables (see its docstring)
    compact_run(run_dir, final=writers_gone(run_dir, run))
    data = load_run(run_dir)
    data.prefetch("requests", "latency_hist")  # the longest tables, read while the collectors' series are computed
    series = build_series(data)
    # derived/ and the plots of FORKED_PLOTS need no summary: a copy of this process does them while this one computes it
    theirs = Forked(lambda: _early_steps(data, series, run_dir, NO_SUMMARY))
    try:
        summary = summarise_data(data, series)
        save_summary(summary, run_dir)
        if on_summary is not None:
            on_summary(summary)
        from .plots import PLOTS, make_context, render_plots

        ctx = make_context(data, series, summary)
        mine = render_plots(ctx, RunDir(run_dir).plots, [name for name, _, _ in PLOTS if name not in FORKED_PLOTS])
        drawn = {p.name: p for p in [*mine, *_await(theirs, lambda: _early_steps(data, series, run_dir, summary))]}
    finally:
        theirs.close(wait_s=CLOSE_WAIT_S)
    plots = [drawn[name] for name, _, _ in PLOTS]
    page = render_html(data.run, summary, plots, data.events, ctx.t0)
    path = RunDir(run_dir).report_html
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    os.replace(tmp, path)
    return path


#: The plots a forked copy draws (after writing derived/) while this process computes the summary and then draws the
#: others: those that read nothing of the summary, about half of the drawing at any run length.
FORKED_PLOTS = frozenset({"latency_distribution", "cpu_cores", "cpu_containers", "connections", "traffic"})


class _NoSummary(dict[str, Any]):
    """The summary of a plot context made before the summary exists: reading it is an error, not an empty summary."""

    def _missing(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("this plot reads the summary: it cannot be one of build.FORKED_PLOTS")

    __getitem__ = __contains__ = __iter__ = __len__ = get = keys = items = values = _missing


#: What a plot of :data:`FORKED_PLOTS` sees as the summary (it reads none).
NO_SUMMARY: dict[str, Any] = _NoSummary()


def _early_steps(data: RunData, series: Series, run_dir: Path, summary: dict[str, Any]) -> list[Plot]:
    """``derived/`` written, then the plots of :data:`FORKED_PLOTS` drawn (in :data:`~bench.report.plots.PLOTS`' order)."""
    _write_derived(data, series, run_dir)
    from .plots import make_context, render_plots  # in the copy: matplotlib's import too runs beside the summary

    return render_plots(make_context(data, series, summary), RunDir(run_dir).plots, FORKED_PLOTS)


#: How long a forked step may go on once the report failed or was interrupted before it is killed (it finishes its file meanwhile).
CLOSE_WAIT_S = 5.0


def _await(job: Forked, redo: Callable[[], T]) -> T:
    """The forked step's value; if the copy failed or stalled, the step done again here (where its error, if any, is raised)."""
    try:
        return cast(T, job.result())
    except Exception:  # noqa: BLE001 - whatever went wrong in the copy, this process does the step itself
        return redo()


def _write_derived(data: RunData, series: Series, run_dir: Path) -> None:
    """``derived/``: the series' Parquet files and the HdrHistogram log."""
    write_series(series, run_dir)
    write_hlog(data.latency_hist, RunDir(run_dir).latency_hlog, base_t=(data.run.get("load_window") or {}).get("start"), comment=f"run {data.run.get('id')}")
