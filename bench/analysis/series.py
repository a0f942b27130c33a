"""Time series of a run for plots and compare tools, also written as derived Parquet files.

``derived/`` in a run directory holds what :func:`build_series` computes; it is
rebuilt with the summary and never read back by the analysis (the raw samples stay
the source of truth). Every file carries ``lbbench.schema_version`` in its Parquet
metadata.

- ``timeline.parquet``: the 100 ms request timeline (:func:`bench.analysis.requests.timeline`).
- ``per_second.parquet``: one row per second, client and HAProxy figures side by side.
- ``cpu.parquet``: CPU % per container and core (:func:`bench.analysis.cpu.cpu_pct`).
- ``ports.parquet``: ephemeral ports per node and source (:func:`bench.analysis.ports.ports_in_use`).
- ``traffic.parquet``: Mbit/s and packets/s per node and network (:func:`bench.analysis.traffic.traffic_rates`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..results.layout import RunDir
from .common import RunData
from .cpu import cpu_pct
from .haproxy import haproxy_series, run_connection_series
from .ports import established_by_hop, ports_in_use
from .requests import per_second_requests, timeline
from .traffic import network_series, traffic_rates
from .vrrp import vip_holders

DERIVED_SCHEMA_VERSION = 1

PER_SECOND_COLUMNS = [
    "t",
    # client side
    "requests",
    "ok",
    "errors",
    "conn_new",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    # HAProxy, client-facing processes of all nodes
    "conn_rate",
    "req_rate",
    "ssl_key_rate",
    "ssl_rate",
    "client",
    "frontend_backend",
    "backend_server",
    # the same hops as the kernel counts ESTABLISHED sockets, all LB nodes
    "client_sockets",
    "frontend_backend_sockets",
    "backend_server_sockets",
    # traffic, all LB nodes
    "client_in_mbps",
    "client_out_mbps",
    "server_in_mbps",
    "server_out_mbps",
    # VRRP
    "vip_holder",
]


@dataclass
class Series:
    """The derived time series of one run."""

    timeline: pd.DataFrame
    per_second: pd.DataFrame
    cpu: pd.DataFrame
    ports: pd.DataFrame
    traffic: pd.DataFrame
    #: established connections per hop (kernel view), the per-second table's source; not written on its own
    hops: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        return {"timeline": self.timeline, "per_second": self.per_second, "cpu": self.cpu, "ports": self.ports, "traffic": self.traffic}


def per_second_table(data: RunData, traffic: pd.DataFrame, hops: pd.DataFrame | None = None) -> pd.DataFrame:
    """The per-second table (columns :data:`PER_SECOND_COLUMNS`), over the union of all sources' seconds."""
    if hops is None:
        hops = established_by_hop(data.table("sockets"))
    haproxy = haproxy_series(data.table("haproxy_info"), data.table("haproxy_stat"), run_connection_series(data)).set_index("t")  # before the requests: see build_series
    parts = [per_second_requests(data.requests, data.latency_hist).set_index("t"), haproxy, hops.set_index("t")]
    for network in ("client", "server"):
        s = network_series(traffic, network)
        parts.append(s.rename(columns={"in_mbps": f"{network}_in_mbps", "out_mbps": f"{network}_out_mbps"}))
    parts = [p for p in parts if not p.empty]
    holders = vip_holders(data.table("vrrp")).set_index("t")
    if parts:
        out = pd.concat(parts, axis=1).sort_index()
    else:
        out = pd.DataFrame(index=pd.Index([], dtype=float, name="t"))
    out = out.join(holders.rename(columns={"holder": "vip_holder"}), how="outer") if not holders.empty else out
    for c in PER_SECOND_COLUMNS[1:]:
        if c not in out:
            out[c] = np.nan if c != "vip_holder" else None
    out.index.name = "t"
    out = out.reset_index()
    numeric = [c for c in PER_SECOND_COLUMNS if c != "vip_holder"]
    out[numeric] = out[numeric].astype(float)
    out["vip_holder"] = out["vip_holder"].astype(object).where(out["vip_holder"].notna(), None)
    return out[PER_SECOND_COLUMNS]


def build_series(data: RunData) -> Series:
    """Compute every derived time series of a run.

    The collectors' series come first: a long run's requests table may still be on
    its way (:meth:`RunData.prefetch`).
    """
    traffic = traffic_rates(data.table("netdev"))
    hops = established_by_hop(data.table("sockets"))
    cpu = cpu_pct(data.table("cpu"))
    ports = ports_in_use(data.table("sockets"), data.table("port_range"))
    per_second = per_second_table(data, traffic, hops)
    return Series(timeline=timeline(data.requests), per_second=per_second, cpu=cpu, ports=ports, traffic=traffic, hops=hops)


def write_series(series: Series, run_dir: Path) -> Path:
    """Write each series to ``<run_dir>/derived/<name>.parquet`` (atomically); returns the folder."""
    folder = RunDir(run_dir).derived
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in series.frames().items():
        df = frame.reset_index(drop=True)
        # names read as categories are plain strings in the files others read
        df = df.astype({c: str for c, dtype in df.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)})
        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"lbbench.schema_version"] = str(DERIVED_SCHEMA_VERSION).encode()
        table = table.replace_schema_metadata(meta)
        final = RunDir(run_dir).derived_file(name)
        tmp = final.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    return folder
