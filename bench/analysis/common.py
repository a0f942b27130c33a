"""Shared pieces of the analysis: the run's tables, the steady-state window, counters.

Every analysis module takes plain DataFrames (as :func:`load_run` reads them) and
returns plain values or DataFrames, so each can be tested on a few hand-written rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd

from ..results import run as results_run
from ..results.events import read_events
from ..results.store import read_table, use_small_pages

T = TypeVar("T")

#: Seconds dropped at the end of the load window (requests cut off by the stop).
TAIL_S = 1.0

#: Columns the analysis reads of the tables that are wide or long (every other table is read
#: whole): the rest stays on disk. A column an analysis starts to use is added here (a unit
#: test checks that every column the analysis and report code name is).
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    # one row per request: everything (the writer's name and trace id join traced requests to request_timers)
    # per process, second and bucket: the analysis sums over processes (RunData.latency_hist)
    "latency_hist": ("t", "bucket", "count"),
    # one row per traced request and HAProxy process: what the latency decomposition joins
    "request_timers": ("kind", "id", "t_req", "t_resp", "Tw", "Tc", "term"),
    "requests": ("t", "latency_ms", "bytes", "status", "error", "name", "worker", "conn_new", "intended_t", "latency_corrected_ms", "trace_id"),
    "haproxy_stat": (
        "t", "node", "service", "kind", "pxname", "svname", "type", "status",
        "scur", "bin", "bout", "econ", "eresp", "wretr", "wredis", "rate", "req_rate", "req_tot", "hrsp_5xx",
        "qcur", "conn_rate", "conn_tot", "cli_abrt", "srv_abrt", "ssl_sess", "ssl_reused_sess",
        "slim", "stot", "qtime", "ctime", "rtime", "ttime",
    ),
}  # fmt: skip
#: Rows the analysis reads of the long-format tables: ``show info`` fields it uses (a unit
#: test checks that every field the code asks :func:`bench.analysis.haproxy.info_metric` for is here).
READ_ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "haproxy_info": ("metric", ("ConnRate", "SslRate", "SslFrontendKeyRate", "CumConns", "CumReq", "CurrConns", "CurrSslConns", "Idle_pct",
                              "Maxconn", "Ulimit-n", "Maxsock", "DroppedLogs")),
}


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory as written (validated and migrated by :mod:`bench.results.run`)."""
    return results_run.read_run(run_dir).model_dump(mode="json", exclude_unset=True)


def events_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Events as a DataFrame ``t, kind, name`` (for plots and tables)."""
    rows = [{"t": float(e["t"]), "kind": str(e.get("kind", "")), "name": str(e.get("name", ""))} for e in records]
    return pd.DataFrame(rows, columns=["t", "kind", "name"]).astype({"t": float})


@dataclass
class RunData:
    """What the analysis reads from one run directory: run.json and events at once, each sample table when first asked for."""

    run_dir: Path
    run: dict[str, Any]
    event_records: list[dict[str, Any]] = field(default_factory=list)
    #: tables read so far (or given, in tests), by name
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: tables being read in the background (:meth:`prefetch`)
    _pending: dict[str, Future[pd.DataFrame]] = field(default_factory=dict, repr=False)
    #: results computed from the tables that more than one part of the analysis or report uses (:meth:`memo`)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def events(self) -> pd.DataFrame:
        """Events as ``t, kind, name`` rows."""
        return events_frame(self.event_records)

    def table(self, name: str) -> pd.DataFrame:
        """Sample table ``name`` (:data:`READ_COLUMNS` of it): its declared columns, also when it has no rows."""
        if name not in self.tables:
            pending = self._pending.pop(name, None)
            self.tables[name] = pending.result() if pending is not None else self._read(name)
        return self.tables[name]

    def _read(self, name: str) -> pd.DataFrame:
        return read_table(self.run_dir, name, READ_COLUMNS.get(name), READ_ROWS.get(name))

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, once per run data: what the summary and the plots both need is computed once."""
        if key not in self._memo:
            self._memo[key] = compute()
        return cast(T, self._memo[key])

    def prefetch(self, *names: str) -> None:
        """Start reading tables in a background thread, in order.

        Arrow decodes Parquet without holding the GIL, so the analysis of the tables
        already read goes on meanwhile; :meth:`table` waits for a table still on its way.
        """
        todo = [n for n in names if n not in self.tables and n not in self._pending]
        if not todo:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lbbench-read")
        for name in todo:
            self._pending[name] = pool.submit(self._read, name)
        pool.shutdown(wait=False)

    @property
    def requests(self) -> pd.DataFrame:
        return self.table("requests")

    @property
    def latency_hist(self) -> pd.DataFrame:
        """``latency_hist`` summed over the load-generator processes, per second and bucket (:func:`per_second_histograms`)."""
        return self.memo("latency_hist.per_second", lambda: per_second_histograms(self.table("latency_hist")))

    @property
    def window(self) -> tuple[float, float]:
        return steady_window(self.run, self.requests, self.event_records)


def load_run(run_dir: Path) -> RunData:
    """run.json and events of a run directory; its sample tables are read when first used."""
    run_dir = Path(run_dir)
    use_small_pages()  # a long run's tables: see its docstring
    return RunData(run_dir=run_dir, run=read_run(run_dir), event_records=read_events(run_dir))


def num(x: float | int | None, digits: int = 3) -> float | None:
    """A JSON-safe rounded float: None for None, NaN and infinities."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x, digits)


def schedule_span(events: list[dict[str, Any]] | None) -> tuple[float | None, float | None]:
    """Start and end of the load models' schedule (the controller's phases, ``schedule: true``); None where unknown."""
    phases = [e for e in events or [] if e.get("kind") == "phase" and e.get("schedule")]
    if not phases:
        return None, None
    start = min(float(e["t"]) for e in phases)
    ends = [float(e["end"]) for e in phases if isinstance(e.get("end"), int | float)]
    return start, (max(ends) if ends else None)


def plateau_start(events: list[dict[str, Any]] | None) -> float | None:
    """Start of a find-max run's plateau (after its settle time), from its ``plateau`` phase; None without one."""
    for ev in events or []:
        if ev.get("kind") == "phase" and ev.get("name") == "plateau":
            return float(ev["t"]) + float(ev.get("settle") or 0.0)
    return None


def steady_window(run: dict[str, Any], requests: pd.DataFrame, events: list[dict[str, Any]] | None = None) -> tuple[float, float]:
    """The steady-state window: after the ramp-up, before the tail (epoch seconds).

    With ``events`` (the run's events.jsonl): a load model's schedule (its
    controller's phases) bounds the window, the ramp-up counted from the
    schedule's start; a find-max run's steady window is its plateau, after the
    plateau's settle time.
    """
    load = run.get("load_window") or {}
    start = load.get("start")
    end = load.get("end")
    if start is None or end is None:
        if not len(requests):
            return 0.0, 0.0
        start = float(requests["t"].min()) if start is None else start
        end = float(requests["t"].max()) if end is None else end
    ramp = float((run.get("scenario") or {}).get("ramp_up", 0.0) or 0.0)
    s, e = start + ramp, end - TAIL_S
    # a load model's schedule starts after Locust has started and ends when Locust stops it:
    # time outside it is not steady state
    sched_start, sched_end = schedule_span(events)
    if sched_start is not None and sched_start + ramp < e - 1.0:
        s = max(s, sched_start + ramp)
    if sched_end is not None and sched_end - TAIL_S > s:
        e = min(e, sched_end - TAIL_S)
    plateau = plateau_start(events)
    if plateau is not None and plateau < e:
        s = max(s, plateau)
    if e <= s:  # very short runs: keep the whole window
        s, e = start, end
    return float(s), float(e)


def load_window(run: dict[str, Any], requests: pd.DataFrame) -> tuple[float, float] | None:
    """The whole load window (start, end), falling back to the span of the requests."""
    load = run.get("load_window") or {}
    start, end = load.get("start"), load.get("end")
    if start is None and len(requests):
        start = float(requests["t"].min())
    if end is None and len(requests):
        end = float(requests["t"].max())
    if start is None or end is None:
        return None
    return float(start), float(end)


# The one definition of "inside the steady window", used by every part of the analysis:
# a moment t is inside when start <= t < end (half-open, so adjacent windows such as
# find-max steps never count a request twice); a per-second row (t = its whole second,
# covering [t, t+1)) either overlaps the window or lies wholly inside it.


def inside(t: Any, window: tuple[float, float]) -> Any:
    """Mask of the moments ``t`` (an array, a Series or an Index) inside ``window``: ``start <= t < end``.

    >>> inside(np.array([1.0, 2.0, 2.5, 3.0, np.nan]), (2.0, 3.0)).tolist()
    [False, True, True, False, False]
    """
    return (t >= window[0]) & (t < window[1])


def in_window(df: pd.DataFrame, window: tuple[float, float], col: str = "t") -> pd.DataFrame:
    """Rows of ``df`` whose ``col`` is :func:`inside` ``window``."""
    return df[inside(df[col], window)]


def seconds_overlapping(t: Any, window: tuple[float, float]) -> Any:
    """Mask of the whole seconds ``t`` (each covering ``[t, t+1)``) that overlap ``window``.

    >>> seconds_overlapping(np.array([1.0, 2.0, 3.0, 4.0]), (2.5, 4.0)).tolist()
    [False, True, True, False]
    """
    return (t + 1.0 > window[0]) & (t < window[1])


def seconds_inside(t: Any, window: tuple[float, float]) -> Any:
    """Mask of the whole seconds ``t`` (each covering ``[t, t+1)``) lying wholly inside ``window``.

    >>> seconds_inside(np.array([1.0, 2.0, 3.0, 4.0]), (2.0, 4.0)).tolist()
    [False, True, True, False]
    """
    eps = 1e-9  # a second that ends exactly at the window's end is inside
    return (t >= window[0] - eps) & (t + 1.0 <= window[1] + eps)


def restart_proof(values: np.ndarray) -> np.ndarray:
    """A cumulative counter's running increase from its first sample, surviving restarts (a drop counts on from zero).

    >>> restart_proof(np.array([10.0, 15.0, 3.0, 5.0])).tolist()
    [0.0, 5.0, 8.0, 10.0]
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v
    d = np.diff(v)
    return np.concatenate([[0.0], np.cumsum(np.where(d >= 0, d, v[1:]))])


def counter_rates(df: pd.DataFrame, keys: list[str], value: str, scale: float = 1.0) -> pd.DataFrame:
    """Per-interval rates of a cumulative counter, per group of ``keys``.

    Returns ``keys + [t, rate]``: one row per pair of consecutive samples, stamped at
    the middle of the interval (so flooring ``t`` puts it in the second it mostly
    covers), ``rate = scale * delta(value) / delta(t)``. Intervals where the counter
    fell (a restart) or time did not advance are dropped.
    """
    cols = [*keys, "t", "rate"]
    d = df[[*keys, "t", value]].sort_values([*keys, "t"], kind="stable")
    grouped = d.groupby(keys, sort=False, dropna=False) if keys else None
    dv = grouped[value].diff() if grouped is not None else d[value].diff()
    dt = grouped["t"].diff() if grouped is not None else d["t"].diff()
    out = d[[*keys, "t"]].copy()
    out["t"] = d["t"] - dt / 2.0
    out["rate"] = scale * dv.astype(float) / dt.astype(float)
    ok = (dv >= 0) & (dt > 0)
    return out[ok.fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)[cols]


def group_codes(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """One integer per row naming its group of ``keys`` (0, 1, ... in sorted key order); all 0 without keys."""
    if not keys:
        return np.zeros(len(df), dtype=np.int64)
    if all(isinstance(df[k].dtype, pd.CategoricalDtype) for k in keys):
        # categories are in lexical order (bench.results.store.to_pandas): their codes sort like the names
        combined = np.zeros(len(df), dtype=np.int64)
        for k in keys:
            col = df[k].cat
            n = len(col.categories) + 1
            codes = col.codes.to_numpy().astype(np.int64)
            combined = combined * n + np.where(codes < 0, n - 1, codes)  # missing last, as groupby puts NaN
        return np.asarray(np.unique(combined, return_inverse=True)[1], dtype=np.int64)
    return np.asarray(df.groupby(keys, sort=True, dropna=False, observed=True).ngroup(), dtype=np.int64)


def sum_across(df: pd.DataFrame, keys: list[str], value: str, fill_limit: int = 1) -> pd.Series:
    """Per-second sum of a gauge over groups (``keys``), each group held for ``fill_limit`` missing seconds.

    Samplers of different processes tick at slightly different moments; a group that
    skipped one second keeps its last value instead of dropping out of the sum.
    A group's value in a second is its last sample there (samples without a value
    left out); seconds and groups without any value do not count. Returns a Series
    indexed by second (float, every second from the first to the last with a value),
    named ``value``.
    """
    v = df[value].to_numpy(dtype=float)
    has = ~np.isnan(v)
    if not has.any():
        return pd.Series(dtype=float, name=value)
    sec = np.floor(df["t"].to_numpy(dtype=float))[has]
    codes = group_codes(df, keys)[has]
    v = v[has]
    first = sec.min()
    rel = (sec - first).astype(np.int64)
    n_sec = int(rel.max()) + 1
    used, col = np.unique(codes, return_inverse=True)
    # the last sample of each (group, second): the first one met walking the rows backwards
    cell = col * n_sec + rel
    _, last = np.unique(cell[::-1], return_index=True)
    last = cell.size - 1 - last
    wide = np.full((n_sec, used.size), np.nan)
    wide[rel[last], col[last]] = v[last]
    if fill_limit > 0:
        # forward-fill at most fill_limit consecutive missing seconds per group
        rows = np.arange(n_sec)[:, None]
        seen = np.where(~np.isnan(wide), rows, -1)
        last_seen = np.maximum.accumulate(seen, axis=0)
        fill = np.isnan(wide) & (last_seen >= 0) & (rows - last_seen <= fill_limit)
        wide[fill] = wide[last_seen[fill], np.nonzero(fill)[1]]
    any_value = ~np.isnan(wide).all(axis=1)
    total = np.where(any_value, np.nansum(wide, axis=1), np.nan)
    return pd.Series(total, index=pd.Index(first + np.arange(n_sec, dtype=float), name="t"), name=value)


def distinct_ints(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of integers ``x`` and each one's index among them (``np.unique``'s, in one pass for a short range)."""
    lo, hi = int(x.min()), int(x.max())
    if hi - lo > 4 * x.size + 100_000:
        values, index = np.unique(x, return_inverse=True)
        return values, index.reshape(-1)
    offset = np.subtract(x, lo, dtype=np.int64)  # one temporary of x's length, not two
    present = np.bincount(offset, minlength=hi - lo + 1) > 0
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present) + lo, np.take(rank, offset, out=offset, mode="clip")  # in range: clip (unlike raise) does not buffer


#: ``attrs`` key of a frame :func:`per_second_histograms` made (its rows, or some of them): merging it again changes nothing.
MERGED_PER_SECOND = "lbbench.merged_per_second"


def per_second_histograms(hist: pd.DataFrame) -> pd.DataFrame:
    """``latency_hist`` merged over the load-generator processes: the summed ``count`` per second ``t`` and ``bucket``.

    One row per (second, bucket) some process had (also when its count is 0), sorted
    by second, then bucket: what ``hist.groupby(["t", "bucket"])["count"].sum()``
    gives, without sorting the rows (a 10M-request run has about 4 million).
    Every figure of the histograms sums over processes, so the analysis reads this
    (:attr:`RunData.latency_hist`); a frame it made (marked :data:`MERGED_PER_SECOND`)
    is returned as it is.
    """
    if hist.attrs.get(MERGED_PER_SECOND):
        return hist
    if hist.empty:
        out = pd.DataFrame({"t": np.zeros(0, dtype=np.int64), "bucket": np.zeros(0, dtype=np.int64), "count": np.zeros(0, dtype=np.int64)})
        out.attrs[MERGED_PER_SECOND] = True
        return out
    seconds, si = distinct_ints(hist["t"].to_numpy(dtype=np.int64))
    buckets, bi = distinct_ints(hist["bucket"].to_numpy(dtype=np.int64))
    counts = hist["count"].to_numpy(dtype=float, na_value=0.0)  # float sums of whole counts are exact below 2**53
    cell = np.multiply(si, buckets.size, out=si)  # si and bi are this function's own arrays: in place, no 35 MB temporaries at 10M
    cell += bi
    del bi
    if seconds.size * buckets.size <= 4 * cell.size + 1_000_000:  # a dense grid of cells costs less than sorting the rows
        occupied = np.zeros(seconds.size * buckets.size, dtype=bool)
        occupied[cell] = True
        cells = np.flatnonzero(occupied)
        sums = np.bincount(cell, weights=counts, minlength=occupied.size)[cells]
    else:
        cells, which = np.unique(cell, return_inverse=True)
        sums = np.bincount(which.reshape(-1), weights=counts, minlength=cells.size)
    second, bucket = np.divmod(cells, buckets.size)
    out = pd.DataFrame(
        {
            "t": np.take(seconds, second, out=second, mode="clip"),
            "bucket": np.take(buckets, bucket, out=bucket, mode="clip"),
            "count": sums.astype(np.int64),
        }
    )
    out.attrs[MERGED_PER_SECOND] = True
    return out
