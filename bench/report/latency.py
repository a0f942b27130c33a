"""The latency distribution of a run: a percentile-spectrum / CDF plot and an HdrHistogram log.

``derived/latency.hlog`` is the run's latency in HdrHistogram's interval log
format (one interval per second of load, successful requests, values in
microseconds), readable by HdrHistogram's own tools (HistogramLogProcessor,
HdrHistogram plotters, ``hdrh.log.HistogramLogReader``) and by wrk2/Gatling-style
pipelines. Our histogram buckets (:mod:`bench.results.histogram`: 1 us units,
128 sub-buckets per power of two) have the same edges as an HdrHistogram with
2 significant digits, so each bucket maps onto exactly one HdrHistogram bucket
and the export loses nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis.common import distinct_ints, per_second_histograms
from ..results.histogram import Histogram, bucket_bounds

if TYPE_CHECKING:
    from matplotlib.figure import Figure  # drawn in plot_distribution (matplotlib imported there, when a plot is drawn)

#: HdrHistogram layout equal to ours: 1 us lowest, 2 significant digits, up to one hour.
HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS = 1, 3_600_000_000, 2
#: Percentiles marked on the spectrum.
MARKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def bucket_us(bucket: int) -> int:
    """The lowest value of a bucket in whole microseconds (lands in the same HdrHistogram bucket)."""
    return max(round(bucket_bounds(bucket)[0] * 1000.0), HDR_LOWEST_US)


def to_hdr(hist: Histogram, start_s: float | None = None, end_s: float | None = None):
    """An ``hdrh`` HdrHistogram with the counts of ``hist`` (values in microseconds)."""
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS)
    for bucket, count in sorted(hist.counts.items()):
        if count > 0:
            h.record_value(min(bucket_us(bucket), HDR_HIGHEST_US), count)
    if start_s is not None:
        h.set_start_time_stamp(int(start_s * 1000))
    if end_s is not None:
        h.set_end_time_stamp(int(end_s * 1000))
    return h


def write_hlog(latency_hist: pd.DataFrame, path: Path, base_t: float | None = None, comment: str = "") -> Path | None:
    """Write ``latency_hist`` (per-worker, per-second buckets) as an HdrHistogram interval log, one interval per second.

    The same histograms as :func:`to_hdr` per second, filled by index: each of the
    run's distinct buckets is mapped onto its HdrHistogram counter once, not once per
    second (a 10M-request run has ~12,000 seconds of ~300 buckets each), and one
    histogram's counters are filled and cleared as whole arrays for every second.
    Already merged rows (:func:`bench.analysis.common.per_second_histograms`) are welcome.
    """
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogWriter

    if latency_hist.empty:
        return None
    per_second = per_second_histograms(latency_hist)
    t = per_second["t"].to_numpy(dtype=np.int64)
    buckets = per_second["bucket"].to_numpy(dtype=np.int64)
    counts = per_second["count"].to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])  # t is sorted: each second's rows are one slice
    seconds = t[starts]
    ends = [*starts[1:].tolist(), len(t)]
    distinct, which = distinct_ints(buckets)
    values = np.array([min(bucket_us(int(b)), HDR_HIGHEST_US) for b in distinct], dtype=np.int64)
    h = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS)
    slots = np.array([h.get_counts_array_index(int(v)) for v in values], dtype=np.int64)[which.reshape(-1)]
    values = values[which.reshape(-1)]
    cells = np.ctypeslib.as_array(h.counts)  # the histogram's own counters, as numpy sees them
    base = float(min(base_t, seconds[0]) if base_t is not None else seconds[0])
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w") as fh:
        writer = HistogramLogWriter(fh)
        if comment:
            writer.output_comment(comment)
        writer.output_comment("lbbench: latency of successful requests in microseconds, one interval per second")
        writer.output_log_format_version()
        # hdrh 0.10's output_start_time() mistakes milliseconds for seconds: write the line as Java's writer does
        when = dt.datetime.fromtimestamp(base, dt.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
        fh.write(f"#[StartTime: {base:.3f} (seconds since epoch), {when}]\n")
        writer.output_base_time(int(base * 1000))
        writer.output_legend()
        for s, a, b in zip(seconds.tolist(), starts.tolist(), ends, strict=True):
            # interval timestamps: seconds since the base time (also stamped on the histogram, in ms, for a 0 start)
            start, end = float(s) - base, float(s) + 1.0 - base
            recorded = counts[a:b] > 0
            used = slots[a:b][recorded]
            cells[used] = counts[a:b][recorded]  # a second's buckets have distinct counters
            # what record_value() keeps besides the counts (a new histogram's when nothing was recorded)
            h.total_count = int(counts[a:b][recorded].sum())
            h.min_value = int(values[a:b][recorded].min()) if used.size else sys.maxsize
            h.max_value = int(values[a:b][recorded].max()) if used.size else 0
            h.set_start_time_stamp(int(start * 1000))
            h.set_end_time_stamp(int(end * 1000))
            writer.output_interval_histogram(h, start_time_stamp_sec=start, end_time_stamp_sec=end, max_value_unit_ratio=1000.0)
            cells[used] = 0
        writer.close()
    os.replace(tmp, path)
    return path


def spectrum(hist: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """(percentile, latency ms) at each bucket's upper rank: the points of a percentile spectrum / CDF."""
    if not hist.total:
        return np.array([]), np.array([])
    buckets = np.array(sorted(hist.counts), dtype=np.int64)
    counts = np.array([hist.counts[b] for b in buckets], dtype=float)
    cum = np.cumsum(counts) / counts.sum() * 100.0
    upper = np.array([bucket_bounds(int(b))[1] for b in buckets])
    return cum, upper


def plot_distribution(hist: Histogram, corrected: Histogram | None = None, title_note: str = "") -> Figure | None:
    """Latency distribution of the steady window: CDF (left) and percentile spectrum (right, HdrHistogram style)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    if not hist.total:
        return None
    fig, (ax_cdf, ax_sp) = plt.subplots(1, 2, figsize=(11.0, 3.4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.17, top=0.88, wspace=0.22)
    series = [("as measured", hist, "#1f77b4")]
    if corrected is not None and corrected.total:
        series.append(("from the intended send time", corrected, "#d62728"))
    for label, h, colour in series:
        q, v = spectrum(h)
        ax_cdf.step(v, q, where="post", color=colour, lw=1.4, label=label)
        # spectrum x: 1 / (1 - q), so 90, 99, 99.9 ... are evenly spaced
        keep = q < 100.0
        x = 1.0 / (1.0 - q[keep] / 100.0)
        ax_sp.step(x, v[keep], where="post", color=colour, lw=1.4, label=label)
    ax_cdf.set_xscale("log")
    ax_cdf.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_cdf.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
    ax_cdf.xaxis.set_minor_formatter(FuncFormatter(lambda _x, _p: ""))
    ax_cdf.set_xlabel("latency, ms (log)")
    ax_cdf.set_ylabel("% of successful requests")
    ax_cdf.set_ylim(0, 100.5)
    ax_cdf.grid(True, which="both", alpha=0.3)
    ax_cdf.set_title("CDF" + title_note, fontsize=9)
    ax_sp.set_xscale("log")
    ticks = [1.0] + [1.0 / (1.0 - m / 100.0) for m in MARKS]
    ax_sp.set_xticks(ticks)
    ax_sp.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{100.0 * (1.0 - 1.0 / x):g}%"))
    ax_sp.minorticks_off()
    ax_sp.set_xlim(1.0, max(ticks[-1], ax_sp.get_xlim()[1]))
    ax_sp.set_xlabel("percentile")
    ax_sp.set_ylabel("latency, ms")
    ax_sp.set_ylim(bottom=0)
    ax_sp.grid(True, alpha=0.3)
    ax_sp.set_title("percentile spectrum", fontsize=9)
    if len(series) > 1:
        ax_sp.legend(fontsize=7, frameon=False, loc="upper left")
    return fig
