"""Where every file of a run directory lives: the one place that spells their names.

A run directory (reports/README.md, "Layout")::

    run.json  summary.json  events.jsonl  report.html
    configs/  samples/<table>/  samples/collectors.json  derived/  plots/
    locust/   logs/<service>.log

A parent folder of a matrix or of repeats holds ``matrix.json`` and one run directory
per run; a lab's private state folder holds ``lab.json`` and ``faults.json``.

Code asks :class:`RunDir` for a path instead of joining a literal::

    >>> rd = RunDir(Path("/r/smoke"))
    >>> rd.run_json
    PosixPath('/r/smoke/run.json')
    >>> rd.table("requests")
    PosixPath('/r/smoke/samples/requests')
    >>> rd.log("lb-a-frontend")
    PosixPath('/r/smoke/logs/lb-a-frontend.log')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# File and folder names of a run directory.
RUN_JSON = "run.json"
SUMMARY_JSON = "summary.json"
EVENTS_JSONL = "events.jsonl"
REPORT_HTML = "report.html"
CONFIGS = "configs"
SAMPLES = "samples"
COLLECTORS_JSON = "collectors.json"  # in samples/
DERIVED = "derived"
PLOTS = "plots"
LOCUST = "locust"
LOCUST_CSV_PREFIX = "locust"  # locust/locust_stats.csv ...
LOCUST_LOG = "locust.log"
LOCUST_SETTINGS = "settings.json"
LOGS = "logs"
# A parent folder of several runs.
MATRIX_JSON = "matrix.json"
# A lab's private state folder.
LAB_JSON = "lab.json"
FAULTS_JSON = "faults.json"
OWNER_JSON = "owner.json"  # which process owns a lab (bench/topology/owner.py)
#: The unix datagram socket every HAProxy process of a lab sends its traced requests' timers to (bench/collect/timers.py).
TIMERS_SOCKET = "timers.sock"
LATENCY_HLOG = "latency.hlog"  # in derived/: HdrHistogram interval log (bench/report/latency.py)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or read here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def summary_json(self) -> Path:
        return self.root / SUMMARY_JSON

    @property
    def events(self) -> Path:
        return self.root / EVENTS_JSONL

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    @property
    def configs(self) -> Path:
        return self.root / CONFIGS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def collectors_json(self) -> Path:
        return self.samples / COLLECTORS_JSON

    @property
    def derived(self) -> Path:
        return self.root / DERIVED

    @property
    def plots(self) -> Path:
        return self.root / PLOTS

    @property
    def locust(self) -> Path:
        return self.root / LOCUST

    @property
    def locust_log(self) -> Path:
        return self.locust / LOCUST_LOG

    @property
    def locust_settings(self) -> Path:
        return self.locust / LOCUST_SETTINGS

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    def table(self, name: str) -> Path:
        """``samples/<name>/``: the chunks (and compacted file) of one sample table (:mod:`bench.results.store`)."""
        return self.samples / name

    @property
    def latency_hlog(self) -> Path:
        """``derived/latency.hlog``: the latency histograms as an HdrHistogram interval log."""
        return self.derived / LATENCY_HLOG

    def derived_file(self, name: str) -> Path:
        """``derived/<name>.parquet``: a time series the analysis computed."""
        return self.derived / f"{name}.parquet"

    def log(self, service: str) -> Path:
        """``logs/<service>.log``: one container's log."""
        return self.logs / f"{service}.log"


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run directory (it holds run.json); False for any path that cannot be one.

    >>> is_run_dir(Path("/nonexistent")), is_run_dir(Path("nul" + chr(0))), is_run_dir(Path("x" * 300))
    (False, False, False)
    """
    try:
        return (Path(path) / RUN_JSON).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte ...
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()`` that says False instead of raising for a path that cannot exist."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """``path.is_file()`` that says False instead of raising for a path that cannot exist."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def find_run_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a run directory, else every run directory below it, sorted."""
    path = Path(path)
    if is_run_dir(path):
        return [path]
    if not is_dir(path):
        return []
    return sorted({p.parent for p in path.rglob(RUN_JSON) if p.is_file()})


def matrix_json(parent: Path) -> Path:
    """``matrix.json`` of a parent folder of runs."""
    return Path(parent) / MATRIX_JSON


@dataclass(frozen=True)
class LabDir:
    """The private state folder of a running lab (under ``paths.STATE``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def lab_json(self) -> Path:
        return self.root / LAB_JSON

    @property
    def faults_json(self) -> Path:
        return self.root / FAULTS_JSON

    @property
    def owner_json(self) -> Path:
        """Which process owns the lab (pid, start time, boot): bench/topology/owner.py."""
        return self.root / OWNER_JSON

    @property
    def events(self) -> Path:
        """Where `bench fault` writes events while no run directory is attached (`bench up`)."""
        return self.root / EVENTS_JSONL

    @property
    def configs(self) -> Path:
        return self.root / CONFIGS

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def sockets(self) -> Path:
        """The HAProxy stats sockets, bind-mounted into the lab."""
        return self.root / "run"

    @property
    def timers_socket(self) -> Path:
        """Where the collectors receive the traced requests' timers (``/run/lbbench/timers.sock`` in the lab)."""
        return self.sockets / TIMERS_SOCKET
