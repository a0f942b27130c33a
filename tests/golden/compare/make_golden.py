"""Trim real run directories into the small golden runs under tests/golden/compare/runs/.

The golden runs were recorded on the shared 2-core lab machine (other labs running
at the same time, so they are noisy, like real CI machines):

    bench run smoke --duration 15s --out R/base/smoke-base-1        (x3, and base2/ x3 more)
    bench run tests/golden/compare/smoke-delay.yaml --duration 15s --out R/delay/smoke-delay-1   (x3)
    bench run smoke --variant monolith --duration 15s --out R/monolith/smoke-monolith-1

interleaved base, delay, base, delay ..., then trimmed with

    python tests/golden/compare/make_golden.py R tests/golden/compare/runs

Trimming keeps run.json and summary.json as recorded, and of ``samples/requests``
only the rows of the steady-state window and the columns compare reads (``t``,
``latency_ms``, ``error``), with ``t`` rounded to 1/1024 s and ``latency_ms`` to
1/256 ms so that Parquet compresses them to a few bytes per row. Everything else
(configs, logs, Locust CSVs, histograms) is dropped.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.stats import _read_requests


def trim(src: Path, dest: Path) -> None:
    """Copy one run directory into ``dest``, trimmed (see the module docstring)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "run.json", dest / "run.json")
    shutil.copy(src / "summary.json", dest / "summary.json")
    window = json.loads((src / "summary.json").read_text())["window"]
    req = _read_requests(src, ["t", "latency_ms", "error"])
    req = req[(req["t"] >= window["start"]) & (req["t"] < window["end"])].sort_values("t", kind="stable")
    table = pa.table(
        {
            "t": np.round(req["t"].to_numpy(dtype=float) * 1024) / 1024,
            "latency_ms": np.round(req["latency_ms"].to_numpy(dtype=float) * 256) / 256,
            "error": req["error"].astype(str).to_numpy(),
        }
    )
    folder = dest / "samples" / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        folder / "part-golden-000000.parquet",
        compression="zstd",
        compression_level=19,
        use_dictionary=["error"],
        use_byte_stream_split=["t", "latency_ms"],
    )


def main(argv: list[str]) -> None:
    src_root, dest_root = Path(argv[0]), Path(argv[1])
    for run_json in sorted(src_root.rglob("run.json")):
        src = run_json.parent
        trim(src, dest_root / src.relative_to(src_root))
        print(dest_root / src.relative_to(src_root))


if __name__ == "__main__":
    main(sys.argv[1:])
