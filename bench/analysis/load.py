"""``load``: what the scenario asked of the load generator, what it achieved, and whether the difference is the client's.

Inputs: the scenario's ``load`` (run.json), the ``requests`` table, the
``pacing`` table (rate models: per process, flow and second the sends that came
due, were sent, late, dropped, found no free connection, resumed a TLS session),
the ``held`` table (held connections per process), the phases and find-max
events of ``events.jsonl``, and the summary sections already computed from
HAProxy's counters (``connections``, ``tls``, ``haproxy``) and CPU
(``bottleneck``).

Targets come from the scenario (after ``--scale``); a constant target is taken
as written, stages as the time-weighted mean of the schedule over the steady
window (the sends that came due), find-max as the plateau's target.
``achieved`` is counted by the client, ``achieved_haproxy`` by HAProxy where it
counts the same thing. A target counts as reached at :data:`REACHED` of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import inside, num, seconds_inside, seconds_overlapping, sum_across
from .requests import PERCENTILES, conn_new_mask, ok_mask, steady_mask, str_mask

#: Achieved / target at or above this is "reached" (the issue's 5 % accuracy).
REACHED = 0.95
#: Late or dropped sends (the generator behind its schedule with a connection free) above this share of the sends: the generator is the limit.
LOADGEN_BEHIND_SHARE = 0.05
#: Sends that found every connection busy above this share: the pool (users) was too small for the latency.
POOL_SHARE = 0.05
#: Prefix of the request names of held connections (bench/load/models.py).
HELD_PREFIX = "held "
RATE_MODELS = ("open", "connection-rate", "handshake-rate")
TARGET_FIELDS = {"keep-alive": "users", "open": "requests_per_s", "connection-rate": "connections_per_s", "handshake-rate": "handshakes_per_s"}


def model_mask(req: pd.DataFrame) -> np.ndarray:
    """Which requests are the model's (held connections' requests left out)."""
    return ~str_mask(req["name"], lambda names: names.str.startswith(HELD_PREFIX))


def tls_mask(req: pd.DataFrame, scheme: str) -> np.ndarray:
    """Which requests went over TLS: names ending ``(https)`` / ``(http)`` say so (two flows, held
    connections); any other name has the scenario's ``scheme``."""
    https = str_mask(req["name"], lambda names: names.str.endswith(" (https)"))
    http = str_mask(req["name"], lambda names: names.str.endswith(" (http)"))
    return https | (~(https | http) if scheme == "https" else False)


def corrected_latency(req: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any] | None:
    """Coordinated-omission corrected latency of the scheduled sends in the window, with the uncorrected beside it.

    Over the requests that carry an ``intended_t`` (the first request of each slot
    of a rate model), successful, intended inside the window. None when the run
    has none (a closed-loop model).
    """
    intended = req["intended_t"].to_numpy(dtype=float)
    if np.isnan(intended).all():
        return None
    rows = inside(intended, window) & ok_mask(req)  # NaN compares false
    out: dict[str, Any] = {"n": int(rows.sum())}
    corr = req["latency_corrected_ms"].to_numpy(dtype=float)[rows]
    plain = req["latency_ms"].to_numpy(dtype=float)[rows]
    for key, q in PERCENTILES.items():
        out[key] = num(np.percentile(corr, q)) if corr.size else None
        out[f"{key}_uncorrected"] = num(np.percentile(plain, q)) if plain.size else None
    out["mean"] = num(corr.mean()) if corr.size else None
    out["mean_uncorrected"] = num(plain.mean()) if plain.size else None
    out["max"] = num(corr.max()) if corr.size else None
    out["max_uncorrected"] = num(plain.max()) if plain.size else None
    return out


def pacing_summary(pacing: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any] | None:
    """Totals of the ``pacing`` table over whole seconds inside the window (None without a rate model)."""
    if pacing.empty:
        return None
    p = pacing[seconds_inside(pacing["t"], window)]
    if p.empty:
        p = pacing[seconds_overlapping(pacing["t"], window)]
    seconds = float(p["t"].nunique())
    sums = {c: int(p[c].sum()) for c in ("due", "sent", "late", "dropped", "waited", "resumed")}
    by_flow = {str(flow): {c: int(g[c].sum()) for c in ("due", "sent", "late", "dropped", "waited", "resumed")} for flow, g in p.groupby("flow")}
    sent = sums["sent"]
    return {
        **sums,
        "seconds": num(seconds, 1),
        "late_pct": num(100.0 * sums["late"] / sent, 2) if sent else None,
        "dropped_pct": num(100.0 * sums["dropped"] / sums["due"], 2) if sums["due"] else None,
        "waited_pct": num(100.0 * sums["waited"] / sums["due"], 2) if sums["due"] else None,
        "dispatch_lag_max_ms": num(p["dispatch_lag_max_ms"].max(), 3),
        "by_flow": by_flow,
    }


def held_summary(held: pd.DataFrame, window: tuple[float, float]) -> dict[str, Any] | None:
    """Held connections open, summed over processes: mean and minimum over the steady window."""
    if held.empty:
        return None
    total = sum_across(held, ["worker"], "open")
    tls = sum_across(held, ["worker"], "tls_open")
    target = sum_across(held, ["worker"], "target")

    def inside(s: pd.Series) -> pd.Series:
        return s[seconds_overlapping(s.index, window)].dropna()

    t, tl, tg = inside(total), inside(tls), inside(target)
    return {
        "target": num(tg.max(), 0),
        "open_mean": num(t.mean(), 1),
        "open_min": num(t.min(), 0),
        "open_max": num(t.max(), 0),
        "tls_open_mean": num(tl.mean(), 1),
        "opened": int(held["opened"].sum()),
        "failed": int(held["failed"].sum()),
    }


def _phase_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The controller's phases (stages, find-max steps, plateau), in time order."""
    return [e for e in events if e.get("kind") == "phase" and e.get("schedule")]


def phases_summary(events: list[dict[str, Any]], req: pd.DataFrame, end: float, field: str, rpc: int) -> list[dict[str, Any]]:
    """Per phase: its window, target and what the client achieved (the model's figure) inside it."""
    phs = _phase_events(events)
    verdicts = {int(e["step"]): e for e in events if e.get("kind") == "find-max" and e.get("step") is not None}
    out = []
    model = model_mask(req)
    scheduled = model & req["intended_t"].notna().to_numpy(dtype=bool)
    new = conn_new_mask(req)
    for i, ev in enumerate(phs):
        start = float(ev["t"])
        stop = float(phs[i + 1]["t"]) if i + 1 < len(phs) else end
        if ev.get("end") is not None:
            stop = min(stop, float(ev["end"]))
        settle = float(ev.get("settle") or 0.0)
        w = (start + settle, stop)
        secs = w[1] - w[0]
        achieved = None
        if scheduled.any() and field != "users":
            # a rate model's slots, by the time the schedule meant them: the same clock as the target
            rows = int((scheduled & steady_mask(req, w, "intended_t")).sum())
            achieved = rows / secs if secs > 0 else None
        else:
            rows_mask = model & steady_mask(req, w)
            if secs > 0 and rows_mask.any():
                if field in ("connections_per_s", "handshakes_per_s"):
                    achieved = float((rows_mask & new).sum()) / secs if new is not None else 0.0
                elif field == "requests_per_s":
                    achieved = int(rows_mask.sum()) / secs
        target = ev.get("target")
        if ev.get("ramp") and ev.get("target_start") is not None and target is not None:
            target = (float(ev["target_start"]) + float(target)) / 2.0
        entry: dict[str, Any] = {
            "name": ev.get("name"),
            "start": num(start),
            "end": num(stop),
            "target": num(target, 3),
            "achieved": num(achieved, 1) if field != "users" else None,
            "achieved_pct": num(100.0 * achieved / float(target), 1) if achieved is not None and target else None,
        }
        step = ev.get("step")
        if step is not None and int(step) in verdicts:
            v = verdicts[int(step)]
            entry.update(verdict=v.get("name"), reason=v.get("reason"), p99_ms=v.get("p99_ms"), loadgen_cpu_pct=v.get("loadgen_cpu_pct"))
        out.append(entry)
    return out


def find_max_summary(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The search's outcome, from the ``plateau`` phase and the per-step verdicts."""
    plateau = next((e for e in events if e.get("kind") == "phase" and e.get("name") == "plateau"), None)
    steps = [e for e in events if e.get("kind") == "find-max"]
    if plateau is None and not steps:
        return None
    return {
        "max_ok": num((plateau or {}).get("max_ok"), 3),
        "first_bad": num((plateau or {}).get("first_bad"), 3),
        "fraction": (plateau or {}).get("fraction"),
        "plateau_target": num((plateau or {}).get("target"), 3),
        "plateau_start": num((plateau or {}).get("t")),
        "limited_by": (plateau or {}).get("limited_by"),
        "steps": [
            {
                "step": e.get("step"),
                "target": num(e.get("target"), 3),
                "verdict": e.get("name"),
                "achieved": e.get("achieved"),
                "p99_ms": e.get("p99_ms"),
                "errors": e.get("errors"),
                "dropped": e.get("dropped"),
                "loadgen_cpu_pct": e.get("loadgen_cpu_pct"),
                "reason": e.get("reason"),
            }
            for e in steps
        ],
    }


def _targets(load: dict[str, Any], pacing: dict[str, Any] | None, fm: dict[str, Any] | None) -> dict[str, float | None]:
    """The targets over the steady window (see the module docstring)."""
    model = load.get("model", "keep-alive")
    field = TARGET_FIELDS.get(model, "users")
    rpc = int(load.get("requests_per_connection") or 0)
    stages = load.get("stages") or []
    value: float | None = load.get(field)
    if model in RATE_MODELS:
        if fm is not None and fm.get("plateau_target") is not None:
            value = float(fm["plateau_target"])
        elif stages and pacing and pacing.get("seconds"):
            value = pacing["due"] / float(pacing["seconds"])
    out: dict[str, float | None] = {
        "users": None,
        "requests_per_s": None,
        "connections_per_s": None,
        "handshakes_per_s": None,
        "held_connections": None,
        "held_tls_connections": None,
    }
    if model == "keep-alive":
        out["users"] = float(load.get("users") or 0) if not stages else None
    elif model == "open":
        out["requests_per_s"] = value
    elif model == "connection-rate":
        out["connections_per_s"] = value
        hs, conn = load.get("handshakes_per_s"), load.get("connections_per_s")
        if value is not None:
            out["requests_per_s"] = value * rpc
            if hs is not None and conn:
                out["handshakes_per_s"] = value * float(hs) / float(conn)
            elif load.get("scheme") == "https":
                out["handshakes_per_s"] = value
    elif model == "handshake-rate":
        out["handshakes_per_s"] = value
        out["connections_per_s"] = value
        out["requests_per_s"] = None if value is None else value * rpc
    held = load.get("held")
    if held:
        out["held_connections"] = float(held["connections"])
        tls = held.get("tls", True)
        out["held_tls_connections"] = float(held["connections"] if tls is True else 0 if tls is False else tls)
    return out


def load_summary(
    run: dict[str, Any],
    req: pd.DataFrame,
    pacing: pd.DataFrame,
    held: pd.DataFrame,
    events: list[dict[str, Any]],
    window: tuple[float, float],
    connections: dict[str, Any],
    tls: dict[str, Any],
    haproxy: dict[str, Any],
    utilisation: dict[str, Any],
    client_series: pd.Series | None = None,
) -> dict[str, Any]:
    """``load`` of summary.json (see reports/README.md)."""
    scenario = run.get("scenario") or {}
    load = scenario.get("load") or {}
    model = load.get("model", "keep-alive")
    field = TARGET_FIELDS.get(model, "users")
    rpc = int(load.get("requests_per_connection") or 0)
    span = window[1] - window[0]
    pace = pacing_summary(pacing, window)
    fm = find_max_summary(events)
    targets = _targets(load, pace, fm)

    rows = model_mask(req) & steady_mask(req, window)
    new = conn_new_mask(req)
    known = new is not None and bool((req["conn_new"].notna().to_numpy(dtype=bool) & rows).any())
    conn_new = int((rows & new).sum()) if known else None
    tls_rows = rows & tls_mask(req, load.get("scheme", "https"))
    tls_new = int((tls_rows & new).sum()) if known and tls_rows.any() else None
    hold = held_summary(held, window)

    def rate(n: float | int | None) -> float | None:
        return num(n / span, 1) if n is not None and span > 0 else None

    achieved: dict[str, float | None] = {
        "requests_per_s": rate(int(rows.sum())) if rows.any() or span > 0 else None,
        "ok_requests_per_s": rate(int((rows & ok_mask(req)).sum())),
        "connections_per_s": rate(conn_new),
        "handshakes_per_s": rate(tls_new),
        "resumption_pct": None,
        "held_connections": hold["open_mean"] if hold else None,
        "held_tls_connections": hold["tls_open_mean"] if hold else None,
    }
    if pace and pace.get("by_flow", {}).get("https", {}).get("sent"):
        https = pace["by_flow"]["https"]
        if model in ("connection-rate", "handshake-rate"):
            achieved["resumption_pct"] = num(100.0 * https.get("resumed", 0) / https["sent"], 1)
    client_conns = None
    if client_series is not None:
        s = client_series[seconds_overlapping(client_series.index, window)]
        client_conns = num(s.mean(), 1)
    achieved_haproxy = {
        "requests_per_s": haproxy.get("requests_per_s"),
        "connections_per_s": connections.get("per_s"),
        "handshakes_per_s": tls.get("connections_per_s"),
        "full_handshakes_per_s": tls.get("handshakes_per_s"),
        "resumption_pct": tls.get("resumption_pct"),
        "client_connections": client_conns,
        "client_connections_max": connections.get("client_max"),
        "tls_connections_max": tls.get("connections_max"),
    }

    pct: dict[str, float | None] = {}
    for key, target in targets.items():
        got = achieved.get(key)
        if target and got is not None and key != "users":
            pct[key] = num(100.0 * got / target, 1)
    missed: dict[str, float | None] = {k: v for k, v in pct.items() if v is not None and v < 100.0 * REACHED}
    limited_by, why = _cause(missed, pace, hold, utilisation, targets)
    broken = [e for e in events if e.get("kind") == "error" and e.get("name") == "controller"]
    if broken and missed:
        # the harness fell short (a process without its schedule): never blame the load balancer for it
        limited_by, why = "loadgen", "its schedule broke"
    verdict = _verdict(model, field, targets, achieved, pct, missed, limited_by, why, fm)
    if broken:
        verdict = f"THE SCHEDULE BROKE ({broken[0].get('error')}): the load did not follow the scenario; " + verdict
    return {
        "model": model,
        "engine": load.get("engine"),
        "processes": load.get("processes"),
        "workers": (run.get("load_workers") or {}).get("count") if isinstance(run.get("load_workers"), dict) else None,
        "scale": run.get("scale"),
        "requests_per_connection": rpc,
        "target": {k: num(v, 3) for k, v in targets.items()},
        "achieved": achieved,
        "achieved_haproxy": achieved_haproxy,
        "achieved_pct": pct,
        "reached": None if not pct else not missed,
        "limited_by": limited_by,
        "verdict": verdict,
        "pacing": pace,
        "held": hold,
        "phases": phases_summary(events, req, window[1], field, rpc),
        "find_max": fm,
    }


def _cause(
    missed: dict[str, float | None],
    pace: dict[str, Any] | None,
    hold: dict[str, Any] | None,
    utilisation: dict[str, Any],
    targets: dict[str, float | None],
) -> tuple[str | None, str]:
    """Why a target was missed: ``loadgen``, ``pool``, ``held`` or ``lb`` (None when nothing was missed)."""
    if not missed:
        return None, ""
    loadgen_u = utilisation.get("loadgen")
    if loadgen_u is not None and loadgen_u >= 90.0:
        return "loadgen", f"the load generator's processes used {loadgen_u:.0f}% of their cores"
    if pace and pace.get("due"):  # a generator that sent nothing at all is the most behind of all
        own_late = max(pace["late"] - pace["waited"], 0) + pace["dropped"]
        if own_late / max(pace["due"], 1) > LOADGEN_BEHIND_SHARE and pace["waited"] < own_late:
            return "loadgen", (
                f"{own_late} of {pace['due']} sends were late or dropped with a connection free: "
                f"the generator fell behind its own schedule (dispatch lag up to {pace.get('dispatch_lag_max_ms')} ms)"
            )
        if pace["waited"] / max(pace["due"], 1) > POOL_SHARE:
            return "pool", (
                f"{pace['waited']} of {pace['due']} sends found every connection busy: responses were too slow for "
                "the pool (load.users); the load balancer or the servers did not keep up, or the pool is too small"
            )
    if "held_connections" in missed and hold is not None:
        return "held", f"only {hold.get('open_mean')} of {targets.get('held_connections'):g} held connections open on average ({hold.get('failed')} failed requests)"
    if loadgen_u is not None and loadgen_u >= 70.0:
        return "loadgen", f"the load generator's processes used {loadgen_u:.0f}% of their cores"
    return "lb", "the load generator kept its schedule: the load balancer (or the servers) did not keep up"


def _fmt(v: float | None) -> str:
    if v is None:
        return "?"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


LABELS = {
    "requests_per_s": "req/s",
    "connections_per_s": "conn/s",
    "handshakes_per_s": "handshakes/s",
    "held_connections": "held connections",
    "held_tls_connections": "held TLS connections",
}


def _verdict(
    model: str,
    field: str,
    targets: dict[str, float | None],
    achieved: dict[str, float | None],
    pct: dict[str, float | None],
    missed: dict[str, float | None],
    limited_by: str | None,
    why: str,
    fm: dict[str, Any] | None,
) -> str:
    """One line for the terminal and the report header."""
    parts = []
    for key in ("connections_per_s", "handshakes_per_s", "requests_per_s", "held_connections"):
        if targets.get(key) and achieved.get(key) is not None:
            parts.append(f"{_fmt(achieved[key])} of {_fmt(targets[key])} {LABELS[key]} ({pct.get(key):g}%)")
    head = f"{model}: "
    if fm is not None:
        if fm.get("max_ok") is None:
            head += "find-max: no step held the bounds; "
        else:
            head += f"find-max: highest good {_fmt(fm['max_ok'])}/s"
            head += " (stopped by the load generator)" if fm.get("limited_by") == "loadgen" else ""
            head += f", plateau at {_fmt(fm.get('plateau_target'))}/s; "
    if not parts:
        if model == "keep-alive":
            users = f"{targets['users']:g} users" if targets.get("users") else "users in stages"
            return head + f"{users}, closed loop (no rate target): {_fmt(achieved.get('requests_per_s'))} req/s"
        return head + "no target figures measured"
    text = head + ", ".join(parts)
    if not missed:
        return text + ": target reached"
    if limited_by == "loadgen":
        return text + f": TARGET MISSED, the load generator is the limit ({why}); these figures are the client's, not the load balancer's"
    return text + f": TARGET MISSED ({why})"
