"""A synthetic capacity folder: the sweep of bench/capacity/plan.py played on a model lab with known costs.

Every second of every phase gets the operations its stage drives, the CPU per role those
operations cost by :data:`TRUE_COSTS` (plus noise), and the counters, levels, memory and
sockets the collectors would have written; ``sweep.json`` records the windows as the
runner does. The analysis (bench/capacity/analyse.py) must find the costs again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.capacity.plan import FULL, IDLE_S, LEAD_S, Group, Phase
from bench.capacity.sweep import group_scenario, stage_windows
from bench.results.capacity import SweepDoc
from bench.results.document import write_document
from bench.results.store import ChunkWriter

#: Cores per operation (per second of it) of each role, and the idle intercept.
TRUE_COSTS: dict[str, dict[str, float]] = {
    "frontend": {
        "idle": 0.004, "request": 40e-6, "tls_request": 8e-6, "connection": 30e-6, "handshake_full_ecdsa": 600e-6,
        "handshake_full_rsa": 1500e-6, "handshake_resumed": 120e-6, "mb_in": 2e-3, "mb_out": 1.5e-3, "tls_mb": 3e-3, "held_kconn": 1e-3,
    },
    "backend": {"idle": 0.003, "request": 30e-6, "server_connection": 25e-6, "mb_in": 1e-3, "mb_out": 1e-3},
}  # fmt: skip
#: Memory: idle bytes per role, bytes per plain and per TLS connection open (frontend).
MEM_BASE = {"frontend": 12e6, "backend": 9e6}
MEM_PLAIN, MEM_TLS = 4000.0, 30000.0
#: Frontend -> backend sockets: a few pooled plus some per request/s.
HOP_BASE, HOP_PER_REQUEST = 4.0, 0.01


def group_operations(group: Group, target: float, key_type: str, server_close: bool) -> dict[str, float]:
    """What one second of a group's stage does (rates; held_kconn a level)."""
    load = group.load
    model = load["model"]
    tls = group.tls_share
    size = int(load.get("path", "/?size=1024").split("size=")[1]) if "size=" in load.get("path", "") else 1024
    body = float(load.get("request_body", 0))
    ops: dict[str, float] = {}
    if model == "open":
        req = target
        conn = 0.0
        held = load.get("held")
        if held:
            ops["held_kconn"] = held["connections"] / 1000.0
            req += held["connections"] / 30.0
    elif model == "connection-rate":
        req = conn = target
    else:
        req = conn = target
        full = 0.0 if load.get("resumption", True) else target
        ops["handshake_full_rsa" if key_type == "rsa-2048" else "handshake_full_ecdsa"] = full
        ops["handshake_resumed"] = target - full
    ops["request"] = req
    ops["tls_request"] = req * tls
    ops["connection"] = conn
    ops["mb_in"] = req * (80 + body) / 1e6
    ops["mb_out"] = req * (170 + size) / 1e6
    ops["tls_mb"] = (ops["mb_in"] + ops["mb_out"]) * tls
    ops.setdefault("held_kconn", 0.05)
    ops["server_connection"] = req if server_close else 0.0
    return ops


class _Phase:
    """Per-second operations of one phase, then the tables."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.seconds: list[tuple[float, dict[str, float], bool]] = []  # (t, ops, tls held)

    def add(self, start: float, end: float, ops: dict[str, float], tls_held: bool = False) -> None:
        t = start
        while t < end:
            self.seconds.append((t, ops, tls_held))
            t += 1.0


def _write_phase(folder: Path, ph: _Phase, rng: np.random.Generator, noise: tuple[float, float]) -> None:
    ts = np.array([s[0] for s in ph.seconds] + [ph.seconds[-1][0] + 1.0])
    n = len(ph.seconds)

    def series(name: str) -> np.ndarray:
        return np.array([s[1].get(name, 0.0) for s in ph.seconds])

    def cumulative(rate: np.ndarray) -> list[float]:
        return [0.0, *np.cumsum(rate).tolist()]

    cpu_rows: dict[str, list[Any]] = {k: [] for k in ("t", "container", "role", "node", "cpu", "usage_s")}

    def cpu(container: str, role: str, node: str, per_s: np.ndarray) -> None:
        for t, u in zip(ts, cumulative(per_s), strict=True):
            for k, v in (("t", float(t)), ("container", container), ("role", role), ("node", node), ("cpu", 0), ("usage_s", u)):
                cpu_rows[k].append(v)

    absolute, relative = noise
    for role, costs in TRUE_COSTS.items():
        mu = costs["idle"] + sum(c * series(op) for op, c in costs.items() if op != "idle")
        per_s = mu + rng.normal(0.0, 1.0, n) * np.sqrt(absolute**2 + (relative * mu) ** 2)
        if role == "frontend":
            cpu("lb-a-frontend", "frontend", "lb-a", per_s)
        else:
            cpu("lb-a-backend1", "backend", "lb-a", per_s / 2)
            cpu("lb-a-backend2", "backend", "lb-a", per_s / 2)
    cpu("lb-b-frontend", "frontend", "lb-b", np.full(n, 0.002))
    cpu("loadgen", "loadgen", "", np.full(n, 0.4))
    cpu("host", "host", "", np.full(n, 1.2))
    ChunkWriter(folder, "cpu", "synthetic").write(cpu_rows)

    base = {"node": "lb-a", "service": "lb-a-frontend", "kind": "frontend", "pxname": "clients", "svname": "FRONTEND", "type": 0, "status": "OPEN"}
    conns = series("held_kconn") * 1000.0
    stat: dict[str, list[Any]] = {
        "t": ts.tolist(),
        **{k: [v] * (n + 1) for k, v in base.items()},
        "req_tot": cumulative(series("request")),
        "conn_tot": cumulative(series("connection")),
        "ssl_sess": cumulative(series("handshake_full_ecdsa") + series("handshake_full_rsa")),
        "ssl_reused_sess": cumulative(series("handshake_resumed")),
        "bin": (np.array(cumulative(series("mb_in"))) * 1e6).tolist(),
        "bout": (np.array(cumulative(series("mb_out"))) * 1e6).tolist(),
        "scur": [*conns.tolist(), conns[-1]],
    }
    servers = {
        "t": ts.tolist(), "node": ["lb-a"] * (n + 1), "service": ["lb-a-backend1"] * (n + 1), "kind": ["backend"] * (n + 1),
        "pxname": ["servers"] * (n + 1), "svname": ["BACKEND"] * (n + 1), "type": [1] * (n + 1), "status": ["UP"] * (n + 1),
        "connect": cumulative(series("server_connection")),
    }  # fmt: skip
    w = ChunkWriter(folder, "haproxy_stat", "synthetic")
    w.write(stat)
    w.write(servers)
    tls_open = np.array([s[1].get("held_kconn", 0.0) * 1000.0 if s[2] else 0.0 for s in ph.seconds])
    ChunkWriter(folder, "haproxy_info", "synthetic").write(
        {"t": ts[:-1].tolist(), "node": ["lb-a"] * n, "service": ["lb-a-frontend"] * n, "kind": ["frontend"] * n, "metric": ["CurrSslConns"] * n, "value": tls_open.tolist()}
    )
    plain_open = conns - tls_open
    mem: dict[str, list[Any]] = {k: [] for k in ("t", "container", "role", "node", "usage_bytes")}
    for role, container in (("frontend", "lb-a-frontend"), ("backend", "lb-a-backend1")):
        values = MEM_BASE[role] + (MEM_PLAIN * plain_open + MEM_TLS * tls_open if role == "frontend" else 0.0) + rng.normal(0, 20e3, n)
        for t, v in zip(ts[:-1], values, strict=True):
            for k, x in (("t", float(t)), ("container", container), ("role", role), ("node", "lb-a"), ("usage_bytes", float(v))):
                mem[k].append(x)
    ChunkWriter(folder, "memory", "synthetic").write(mem)
    hop = HOP_BASE + HOP_PER_REQUEST * series("request")
    ChunkWriter(folder, "sockets", "synthetic").write(
        {
            "t": ts[:-1].tolist(), "node": ["lb-a"] * n, "state": ["ESTABLISHED"] * n, "direction": ["out"] * n, "src": ["127.0.0.1"] * n,
            "lport": [0] * n, "dst": ["127.0.0.1"] * n, "dport": [8001] * n, "count": np.round(hop).astype(int).tolist(),
        }
    )  # fmt: skip


def build(folder: Path, plan: tuple[Phase, ...] = FULL, stage_s: float = 10.0, seed: int = 1, noise: tuple[float, float] = (0.002, 0.03)) -> Path:
    """Write a synthetic capacity folder (sweep.json + samples) for ``plan``; returns it."""
    rng = np.random.default_rng(seed)
    t = float(int(time.time()))
    doc: dict[str, Any] = {
        "schema_version": 1, "status": "completed", "scenario": "seed-peak", "variant": None, "sets": [], "plan": "synthetic",
        "stage_s": stage_s, "started_at": t, "ended_at": None, "versions": {"lbbench": "test"},
        "machine": {"hostname": "synthetic", "cpus": 2, "cpu_model": "synthetic CPU"}, "phases": [], "error": None,
    }  # fmt: skip
    for phase in plan:
        key_type = phase.key_type
        server_close = phase.overrides.get("lb", {}).get("server_close") is not False
        ph = _Phase(t)
        pdir = folder / "phases" / phase.name
        record: dict[str, Any] = {
            "name": phase.name, "description": phase.description, "overrides": phase.overrides, "key_type": key_type,
            "project": f"synthetic-{phase.name}", "folder": f"phases/{phase.name}", "started_at": t, "ended_at": None,
            "idle_window": [t + 0.5, t + IDLE_S - 0.2], "groups": [],
        }  # fmt: skip
        ph.add(t, t + IDLE_S, {})
        t += IDLE_S
        for group in phase.groups:
            scenario = group_scenario(group, "split", stage_s)
            start_at = t + LEAD_S
            ph.add(t, start_at, {})
            stages = stage_windows(group, scenario, start_at)
            for st in stages:
                ops = group_operations(group, float(st["target"]), key_type, server_close)
                ph.add(st["start"], st["end"], ops, tls_held=group.held and group.tls_share > 0)
            t = stages[-1]["end"] + 1.0
            ph.add(stages[-1]["end"], t, {})
            gdir = pdir / "groups" / group.name
            ChunkWriter(gdir, "requests", "synthetic").write({"t": [s["window"][0] for s in stages], "error": [""] * len(stages)})
            record["groups"].append({
                "name": group.name, "description": group.description, "model": scenario.load.model, "target_field": scenario.load.target_field,
                "tls_share": group.tls_share, "held": group.held, "folder": f"phases/{phase.name}/groups/{group.name}", "start_at": start_at,
                "exit_code": 0, "stages": stages,
            })  # fmt: skip
        record["ended_at"] = t
        _write_phase(pdir, ph, rng, noise)
        doc["phases"].append(record)
        t += 5.0
    doc["ended_at"] = t
    folder.mkdir(parents=True, exist_ok=True)
    write_document(SweepDoc, doc, folder / "sweep.json")
    return folder
