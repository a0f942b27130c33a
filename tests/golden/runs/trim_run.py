"""Turn a real run directory into a golden one: python tests/golden/runs/trim_run.py RUN_DIR NAME.

Keeps run.json, events.jsonl and every sample table, each as one Parquet chunk in
the chunked layout of a run that was not compacted (same rows, the declared
columns), so the golden runs also keep that layout's reader tested; drops what the analysis does
not read (logs, Locust CSVs, configs, derived files, plots, the report). The
expected summary.json is then written by `pytest tests/unit/test_report_golden.py --update-golden`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq

from bench.results.store import read_arrow

HERE = Path(__file__).parent


def trim(run_dir: Path, name: str) -> Path:
    dest = HERE / name
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "samples").mkdir(parents=True)
    shutil.copy(run_dir / "run.json", dest / "run.json")
    if (run_dir / "events.jsonl").exists():
        shutil.copy(run_dir / "events.jsonl", dest / "events.jsonl")
    for folder in sorted((run_dir / "samples").iterdir()):
        if folder.is_file():
            shutil.copy(folder, dest / "samples" / folder.name)
            continue
        table = read_arrow(run_dir, folder.name)
        if not table.num_rows:
            continue
        (dest / "samples" / folder.name).mkdir()
        pq.write_table(table, dest / "samples" / folder.name / "part-golden-000000.parquet", compression="zstd")
    return dest


if __name__ == "__main__":
    print(trim(Path(sys.argv[1]), sys.argv[2]))
