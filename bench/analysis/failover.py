"""Failover figures per injected fault, from the run directory alone.

For each ``fault`` event of ``events.jsonl`` (see :mod:`bench.faults`):

``injected_at``
    epoch seconds of the injection (the host clock, like every request).
``vip_moved_after_s``
    seconds until another node entered MASTER state (keepalived's log, ms
    precision) or, failing that, until a ``vrrp`` sample saw another node
    hold the VIP (1 s precision). Null for faults that do not move the VIP.
``gap_s``
    the longest interval, from the injection to the end of the fault's
    window, without any successful response (by completion time). When no
    success came at all it is the whole window and ``censored`` is true.
``first_success_after_s``
    seconds from the injection to the first successful response of a request
    started after the injection was complete (``done_at``).
``errors``
    failed requests started between the injection and recovery, by kind.
``recovered_after_s``
    seconds until the success rate is back to 95 % of the rate in the 5 s
    before the injection, over a whole second.
``expected_vip_move_s``
    [low, high] the VRRP timers predict for the VIP to move (see
    :func:`expected_window`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..faults import VIP_MOVING
from .common import num
from .requests import counts_by_value, ok_mask

PRE_FAULT_S = 5.0
RECOVERED_FRACTION = 0.95
RECOVERY_SPAN_S = 1.0


def master_down_interval(advert_int: float, backup_priority: int) -> float:
    """VRRP's Master_Down_Interval of a backup: 3 x advert_int + skew (RFC 5798: skew scales with advert_int)."""
    skew = (256 - backup_priority) / 256 * advert_int
    return 3 * advert_int + skew


def expected_window(kind: str, topology: dict[str, Any]) -> list[float] | None:
    """[low, high] seconds after injection within which the VIP should move, from the VRRP timers.

    - crash, freeze, link-down: the backup notices only when adverts stop, after
      its Master_Down_Interval counted from the last advert it heard, which came
      0 to advert_int before the fault: [MDI - advert_int, MDI].
    - keepalived-stop: the master sends a priority-0 advert; the backup takes over
      after its skew time: [0, skew + advert_int / 10].
    - haproxy-kill: keepalived's track script (interval 1 s, fall 2, timeout 1 s)
      demotes the master after 1-3 s, which then sends a priority-0 advert:
      [1, 3 + skew].
    - others do not move the VIP: null.
    """
    ka = topology.get("keepalived") or {}
    advert = float(ka.get("advert_int", 1.0))
    prio = int(ka.get("priority_backup", 100))
    skew = (256 - prio) / 256 * advert
    mdi = master_down_interval(advert, prio)
    if kind in ("crash", "freeze", "link-down"):
        return [round(mdi - advert, 3), round(mdi, 3)]
    if kind == "keepalived-stop":
        return [0.0, round(skew + advert / 10, 3)]
    if kind == "haproxy-kill":
        return [1.0, round(3.0 + skew, 3)]
    return None


def _vip_moved(ev: dict[str, Any], t0: float, vrrp_events: pd.DataFrame, vrrp: pd.DataFrame) -> tuple[float | None, str | None]:
    node = ev.get("node")
    moved = vrrp_events[(vrrp_events["t"] >= t0) & (vrrp_events["state"] == "MASTER") & (vrrp_events["node"] != node)]
    if not moved.empty:
        return float(moved["t"].min() - t0), "keepalived log"
    held = vrrp[(vrrp["t"] >= t0) & vrrp["holds_vip"].fillna(False).to_numpy(dtype=bool) & (vrrp["node"] != node)]
    if not held.empty:
        return float(held["t"].min() - t0), "vrrp samples"
    return None, None


class Timeline:
    """The requests as the failover figures look at them, sorted once for every fault of the run.

    ``ok_done``: completion times of the successful requests, sorted; ``t``, ``done``,
    ``ok`` and ``error``: every request by start time. A fault then costs a binary
    search and a slice of its own window, not a pass over the whole run.
    """

    def __init__(self, requests: pd.DataFrame):
        t = requests["t"].to_numpy(dtype=float)
        done = t + requests["latency_ms"].to_numpy(dtype=float) / 1000.0
        ok = ok_mask(requests)
        self.ok_done = np.sort(done[ok])
        order = np.argsort(t, kind="stable")
        self.t, self.done, self.ok = t[order], done[order], ok[order]
        self.error = requests["error"].iloc[order]

    def started(self, start: float, end: float) -> slice:
        """Requests that started in ``[start, end]``."""
        return slice(int(np.searchsorted(self.t, start, side="left")), int(np.searchsorted(self.t, end, side="right")))


def analyse_event(
    ev: dict[str, Any],
    window_end: float,
    req: Timeline,
    vrrp_events: pd.DataFrame,
    vrrp: pd.DataFrame,
    topology: dict[str, Any],
) -> dict[str, Any]:
    """Figures of one fault (see the module docstring)."""
    t0 = float(ev["t"])
    kind = ev["name"]
    ok_done = req.ok_done

    pre = ok_done[np.searchsorted(ok_done, t0 - PRE_FAULT_S, side="left") : np.searchsorted(ok_done, t0, side="left")]
    pre_rate = pre.size / PRE_FAULT_S

    in_window = ok_done[np.searchsorted(ok_done, t0, side="left") : np.searchsorted(ok_done, window_end, side="right")]
    edges = np.concatenate([[t0], in_window])
    censored = in_window.size == 0
    if censored:
        gap = window_end - t0
    else:
        gap = float(np.max(np.diff(edges))) if edges.size > 1 else 0.0

    # A request counts as "after" once the injection is complete (freezing five
    # containers takes tens of ms; a SIGKILL from the host, microseconds).
    t_done = float(ev.get("done_at") or t0)
    after = req.started(t_done, window_end)
    first_done = req.done[after][req.ok[after]]
    first_success = float(first_done.min() - t0) if first_done.size else None

    recovered = None
    if pre_rate > 0 and in_window.size:
        need = RECOVERED_FRACTION * pre_rate * RECOVERY_SPAN_S
        # earliest start s (at a success) with >= need successes in [s, s + span)
        ends = np.searchsorted(in_window, in_window + RECOVERY_SPAN_S, side="left")
        counts = ends - np.arange(in_window.size)
        full = in_window + RECOVERY_SPAN_S <= window_end
        hits = np.nonzero((counts >= need) & full)[0]
        if hits.size:
            recovered = float(in_window[hits[0]] - t0)

    err_until = t0 + (recovered if recovered is not None else (window_end - t0))
    during = req.started(t0, err_until)
    failed = ~req.ok[during]
    by_kind = counts_by_value(req.error.iloc[during], failed)

    moved, moved_source = (None, None)
    if kind in VIP_MOVING:
        moved, moved_source = _vip_moved(ev, t0, vrrp_events, vrrp)
    return {
        "id": ev.get("id"),
        "kind": kind,
        "target": ev.get("target"),
        "node": ev.get("node"),
        "injected_at": num(t0, 3),
        "vip_moved_after_s": num(moved),
        "vip_moved_source": moved_source,
        "expected_vip_move_s": expected_window(kind, topology),
        "gap_s": num(gap),
        "censored": bool(censored),
        "first_success_after_s": num(first_success),
        "errors": {"total": int(failed.sum()), "by_kind": by_kind},
        "recovered_after_s": num(recovered),
        "pre_fault_per_s": num(pre_rate, 1),
        "window_s": num(window_end - t0),
    }


def _dist(values: list[float]) -> dict[str, float | None] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=float)
    return {
        "n": int(arr.size),
        "min": num(arr.min()),
        "median": num(np.median(arr)),
        "p95": num(np.percentile(arr, 95)),
        "max": num(arr.max()),
    }


FIGURES = ("vip_moved_after_s", "gap_s", "first_success_after_s", "recovered_after_s")


def failover_summary(
    events: list[dict[str, Any]],
    requests: pd.DataFrame,
    vrrp_events: pd.DataFrame,
    vrrp: pd.DataFrame,
    topology: dict[str, Any],
    load_end: float,
) -> dict[str, Any]:
    """``failover`` section of summary.json: one entry per fault plus distributions per kind."""
    faults = sorted((e for e in events if e.get("kind") == "fault"), key=lambda e: e["t"])
    if not faults:
        return {"events": [], "by_kind": {}, **dict.fromkeys(FIGURES)}
    out = []
    timeline = Timeline(requests)
    for i, ev in enumerate(faults):
        # A fault's window ends at the next fault (or the end of the load).
        window_end = faults[i + 1]["t"] if i + 1 < len(faults) else load_end
        out.append(analyse_event(ev, float(window_end), timeline, vrrp_events, vrrp, topology))
    by_kind: dict[str, Any] = {}
    for kind in sorted({e["kind"] for e in out}):
        mine = [e for e in out if e["kind"] == kind]
        by_kind[kind] = {"n": len(mine), "expected_vip_move_s": mine[0]["expected_vip_move_s"]}
        for fig in FIGURES:
            by_kind[kind][fig] = _dist([e[fig] for e in mine])
        by_kind[kind]["errors_total"] = _dist([e["errors"]["total"] for e in mine])
    summary: dict[str, Any] = {"events": out, "by_kind": by_kind}
    # Over every fault of the run, so a gate can say `failover.gap_s.p95: +20%`.
    for fig in FIGURES:
        summary[fig] = _dist([e[fig] for e in out])
    return summary
