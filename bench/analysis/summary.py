"""Turn a run directory into ``summary.json``.

Everything here reads only files of the run directory, so ``bench report DIR``
can rebuild the summary of any run, finished, interrupted or killed. Each section
comes from one module of this package (follow the names: ``cpu`` -> cpu.py ...);
this module only composes them. Every field is documented in reports/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..results.document import write_document
from ..results.layout import RunDir
from ..results.summary import SCHEMA_VERSION, Summary, summary_dict
from ..thresholds import evaluate as evaluate_thresholds
from ..thresholds import parse_thresholds, verdict_line
from .bottleneck import apply_load_verdict, find_bottleneck
from .checks import run_checks
from .common import TAIL_S, RunData, load_run, load_window, num, read_run, steady_window
from .cost import cost_summary
from .cpu import collector_overhead, cpu_pct, cpu_summary, socket_table
from .decomposition import decomposition_summary, traced_hops
from .failover import failover_summary
from .haproxy import connections_summary, haproxy_summary, process_limits, run_connection_series, server_pool, tls_summary, window_counter_delta
from .integrity import integrity_summary, mark_invalid
from .load import corrected_latency, load_summary
from .ports import established_by_hop, pair_sampling, ports_in_use, ports_summary, sockets_summary
from .requests import client_connections, error_summary, latency_summary, request_summary
from .series import Series
from .traffic import traffic_rates, traffic_summary
from .unfinished import note_in_bottleneck, unfinished_line, unfinished_summary
from .vrrp import vrrp_summary

__all__ = ["SCHEMA_VERSION", "TAIL_S", "read_run", "steady_window", "summarise", "summarise_data", "write_summary"]


def summarise_data(data: RunData, series: Series | None = None) -> dict[str, Any]:
    """The summary of already-loaded run data (see :func:`summarise`).

    ``series`` (from :func:`bench.analysis.series.build_series`) saves computing
    the CPU, ports, traffic and per-hop series again when the report has them.
    """
    run, req = data.run, data.requests
    if series is not None:
        hops, cpu_series, ports_series, traffic = series.hops, series.cpu, series.ports, series.traffic
    else:
        hops = established_by_hop(data.table("sockets"))
        cpu_series = cpu_pct(data.table("cpu"))
        ports_series = ports_in_use(data.table("sockets"), data.table("port_range"))
        traffic = traffic_rates(data.table("netdev"))
    window = data.window
    start, end = window
    info, stat = data.table("haproxy_info"), data.table("haproxy_stat")

    connections = connections_summary(info, stat, window, run_connection_series(data))
    connections["per_s_client"] = client_connections(req, window)["per_s"]
    split = ((run.get("topology") or {}).get("lb") or {}).get("layout", "split") != "monolith"
    connections["sockets"] = sockets_summary(hops, window, split)
    cpu = cpu_summary(cpu_series, window)
    load_start = (run.get("load_window") or {}).get("start")
    ports = ports_summary(ports_series, data.table("port_range"), load_start)
    ports.update(pair_sampling(data.table("sockets"), data.table("socket_totals"), data.table("port_range")))
    haproxy = haproxy_summary(info, stat, window)
    haproxy["pool"] = server_pool(stat, window)
    haproxy["limits"] = process_limits(info, window)
    tls = tls_summary(info, window, stat)
    latency = latency_summary(req, data.latency_hist, window)
    latency["corrected"] = corrected_latency(req, window)
    bottleneck = find_bottleneck(run, cpu, haproxy["idle_pct"], ports, haproxy["pool"], haproxy["limits"], latency.get("mean"))
    client_series = run_connection_series(data).set_index("t")["client"]
    load = load_summary(
        run,
        req,
        data.table("pacing"),
        data.table("held"),
        data.event_records,
        window,
        connections,
        tls,
        haproxy,
        bottleneck.get("utilisation_pct") or {},
        client_series,
    )
    bottleneck = apply_load_verdict(bottleneck, load, cpu, run, (load.get("achieved") or {}).get("requests_per_s"), latency.get("mean"))
    # requests sent and never answered: counted, and the figures they could change given as ranges
    unfinished = unfinished_summary(data.table("unfinished"), req, data.latency_hist, window, latency) if _counts_unfinished(data) else None
    if unfinished is not None:
        bottleneck = note_in_bottleneck(bottleneck, unfinished)
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": run.get("id"),
            "scenario": (run.get("scenario") or {}).get("name"),
            "variant": run.get("variant"),
            "status": run.get("status"),
            "started_at": run.get("started_at"),
            "ended_at": run.get("ended_at"),
        },
        "window": {"start": num(start), "end": num(end), "seconds": num(end - start if end > start else 0.0)},
        "requests": request_summary(req, window),
        "errors": error_summary(req, window),
        "latency_ms": latency,
        "bytes": {"total": int(req["bytes"].sum())},
        "connections": connections,
        "tls": tls,
        "haproxy": haproxy,
        "cpu": cpu,
        "cost": cost_summary(data.table("cpu"), stat, window),
        "ports": ports,
        "traffic": traffic_summary(traffic, window),
        "vrrp": vrrp_summary(data.table("vrrp"), data.table("vrrp_events")),
        "failover": _failover(data),
        "collectors": {**collector_overhead(data.table("collector_self"), window), **socket_table(data.table("port_range"))},
        "bottleneck": bottleneck,
        "load": load,
        "checks": run_checks(req, info, stat, run, data.table("pacing"), data.table("held"), data.table("unfinished") if unfinished is not None else None),
        "integrity": integrity_summary(data.event_records, load_start),
        "decomposition": decomposition_summary(req, None, window, run, _dropped_logs(info), traced_hops(data)),
        "unfinished": unfinished,
    }
    mark_invalid(summary, summary["integrity"])
    # last: thresholds judge the figures above (and whether the run can vouch for a pass)
    summary["thresholds"] = evaluate_thresholds(parse_thresholds((run.get("scenario") or {}).get("thresholds") or {}), summary)
    return summary_dict(summary)


def _counts_unfinished(data: RunData) -> bool:
    """Whether the run's load generator counted its unfinished requests (``samples/unfinished/``, made by every
    capture at its start): a run recorded before it could not tell, so its ``unfinished`` is null, not 0."""
    return "unfinished" in data.tables or RunDir(data.run_dir).table("unfinished").is_dir()


def _dropped_logs(info: pd.DataFrame) -> float | None:
    """Timer lines the HAProxy processes could not send (``DroppedLogs`` increase over the run, all processes)."""
    if info.empty:
        return None
    d = info[info["metric"] == "DroppedLogs"]
    got = window_counter_delta(d, ["node", "service"], "value", None) if not d.empty else None
    return got[0] if got is not None else None


def _failover(data: RunData) -> dict[str, Any]:
    """``failover``: per injected fault (events.jsonl), see :mod:`bench.analysis.failover`."""
    lw = load_window(data.run, data.requests)
    end = lw[1] if lw else max((float(e["t"]) for e in data.event_records), default=0.0)
    return failover_summary(
        data.event_records,
        data.requests,
        data.table("vrrp_events"),
        data.table("vrrp"),
        data.run.get("topology") or {},
        end,
    )


def summarise(run_dir: Path) -> dict[str, Any]:
    """The summary of a run directory as a dict (see reports/README.md for every field)."""
    return summarise_data(load_run(Path(run_dir)))


def save_summary(summary: dict[str, Any], run_dir: Path) -> Path:
    """Write ``summary.json`` atomically (checked against :class:`bench.results.summary.Summary`)."""
    path = RunDir(run_dir).summary_json
    write_document(Summary, summary, path)
    return path


def write_summary(run_dir: Path) -> dict[str, Any]:
    """Compute the summary and write ``summary.json`` atomically."""
    summary = summarise(run_dir)
    save_summary(summary, run_dir)
    return summary


def headline(summary: dict[str, Any], label: str = "") -> list[str]:
    """The lines `bench run` prints as soon as the summary exists: throughput, errors, latency, and the load's verdict."""
    lat = summary["latency_ms"]
    req = summary["requests"]
    lines = [
        (
            f"{label}{_n(req['per_s'], 1)} req/s, {_n(req['total'])} requests, {_n(summary['errors']['total'])} errors, "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms"
        )
    ]
    unfinished = unfinished_line(summary.get("unfinished"))
    if unfinished:  # requests sent and never answered: the figures above leave them out
        lines.append(f"{label}{unfinished}")
    load = summary.get("load") or {}
    if load.get("reached") is not None or load.get("find_max"):
        # target vs achieved; says so when the load generator could not reach it
        lines.append(f"{label}load: {load['verdict']}")
    verdict = verdict_line(summary.get("thresholds"))
    if verdict:  # the scenario's SLOs (docs/thresholds.md)
        lines.append(f"{label}{verdict}")
    return lines


def _n(v: Any, digits: int = 0) -> str:
    """A figure with thousands separators (as the report and the live view print them)."""
    return f"{v:,.{digits}f}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)
