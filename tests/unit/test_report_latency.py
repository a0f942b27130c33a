"""The latency distribution: HdrHistogram log export (read back by hdrh) and the CDF / spectrum plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.analysis.common import load_run
from bench.analysis.requests import merged_histogram
from bench.report.latency import plot_distribution, spectrum, to_hdr, write_hlog
from bench.results.histogram import Histogram, buckets_of

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "runs"


def _hist(values: np.ndarray) -> Histogram:
    b, n = np.unique(buckets_of(values), return_counts=True)
    return Histogram(dict(zip(b.tolist(), n.tolist(), strict=True)))


def test_every_bucket_maps_onto_one_hdr_bucket_with_the_same_percentiles() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=2.0, sigma=1.2, size=50_000)  # ms, 0.03 .. ~1000
    ours = _hist(values)
    hdr = to_hdr(ours)
    assert hdr.get_total_count() == ours.total
    for q in (50, 90, 99, 99.9):
        # hdrh reports a bucket's highest equivalent value, ours its midpoint: within one bucket (< 1 %)
        assert hdr.get_value_at_percentile(q) / 1000.0 == pytest.approx(ours.percentile(q), rel=0.01)


def test_hlog_of_a_real_run_reads_back_with_hdrh(tmp_path: Path) -> None:
    from hdrh.log import HistogramLogReader

    data = load_run(GOLDEN / "smoke")
    path = write_hlog(data.latency_hist, tmp_path / "latency.hlog", base_t=(data.run.get("load_window") or {}).get("start"))
    assert path is not None and path.read_text().startswith("#")
    from hdrh.histogram import HdrHistogram

    total = HdrHistogram(1, 3_600_000_000, 2)
    reader = HistogramLogReader(str(path), total)
    intervals = 0
    while (h := reader.get_next_interval_histogram()) is not None:
        total.add(h)
        intervals += 1
    reader.close()
    merged = merged_histogram(data.latency_hist)
    assert intervals == data.latency_hist["t"].nunique()
    assert total.get_total_count() == merged.total
    assert total.get_value_at_percentile(99) / 1000.0 == pytest.approx(merged.percentile(99), rel=0.01)


def test_each_interval_of_the_log_is_the_seconds_histogram_as_to_hdr_records_it(tmp_path: Path) -> None:
    import pandas as pd

    rng = np.random.default_rng(11)
    rows = []
    for t in (100.0, 101.0, 103.0):
        for worker in ("a", "b"):
            b, n = np.unique(buckets_of(rng.lognormal(2.0, 1.5, size=3000)), return_counts=True)
            rows += [(t, worker, int(k), int(c)) for k, c in zip(b, n, strict=True)]
    rows += [(102.0, "a", 700, 0), (103.0, "b", 5, 0)]  # a second with nothing recorded, a bucket with no count
    hist = pd.DataFrame(rows, columns=["t", "worker", "bucket", "count"]).sample(frac=1.0, random_state=3)
    path = write_hlog(hist, tmp_path / "x.hlog", base_t=98.0)
    assert path is not None
    intervals = [line.split(",") for line in path.read_text().splitlines() if line[:1].isdigit()]
    assert [float(start) for start, *_ in intervals] == [2.0, 3.0, 4.0, 5.0]
    for (_start, _length, _max, blob), t in zip(intervals, (100.0, 101.0, 102.0, 103.0), strict=True):
        second = hist[(hist["t"] == t) & (hist["count"] > 0)].groupby("bucket")["count"].sum()
        expected = to_hdr(Histogram({int(b): int(c) for b, c in second.items()}))
        assert blob == expected.encode().decode()


def test_no_latency_means_no_log_and_no_plot(tmp_path: Path) -> None:
    import pandas as pd

    assert write_hlog(pd.DataFrame(columns=["t", "worker", "bucket", "count"]), tmp_path / "x.hlog") is None
    assert not (tmp_path / "x.hlog").exists()
    assert plot_distribution(Histogram()) is None


def test_spectrum_is_monotonic_and_ends_at_100() -> None:
    q, v = spectrum(_hist(np.array([1.0, 2.0, 2.0, 5.0, 40.0])))
    assert q[-1] == pytest.approx(100.0) and np.all(np.diff(q) > 0) and np.all(np.diff(v) > 0)
    fig = plot_distribution(_hist(np.array([1.0, 2.0, 5.0])), _hist(np.array([3.0, 9.0])))
    assert fig is not None and len(fig.axes) == 2
