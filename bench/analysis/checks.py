"""Cross-checks between what the load generator counted and what HAProxy counted.

Each check compares two counts over the same interval: from the first to the last
HAProxy sample of the client-facing processes (a collector that starts before the
load and stops after it covers all of it; the processes' samplers tick a few ms
apart, so each process's counters are taken over all of its own samples). A check is ``ok`` when the two agree
within its tolerance, false when they do not, and null when one side has no data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..results.store import empty_frame
from .common import in_window, inside, num, seconds_overlapping
from .haproxy import CLIENT_KINDS, INTERNAL_FRONTENDS, STAT_FRONTEND, client_frontends, info_metric, ssl_session_counts, window_counter_delta
from .load import tls_mask

#: name -> (tolerance %, tolerance in absolute counts): a check passes within the larger.
TOLERANCES = {
    "requests": (2.0, 2.0),
    "connections": (2.0, 2.0),
    "handshakes": (10.0, 3.0),
    "resumption": (10.0, 3.0),
}


def sampled_span(info: pd.DataFrame) -> tuple[float, float] | None:
    """From the first to the last ``show info`` sample of the client-facing HAProxy processes.

    As every window, it is half-open (:func:`bench.analysis.common.inside`): it ends
    just after the last sample, so that sample is in it.
    """
    d = info[info["kind"].isin(CLIENT_KINDS)]
    if d.empty:
        return None
    start, end = float(d["t"].min()), float(d["t"].max())
    return (start, float(np.nextafter(end, math.inf))) if end > start else None


def make_check(name: str, client: float | None, haproxy: float | None, note: str) -> dict[str, Any]:
    """One check record ``{name, ok, client, haproxy, diff_pct, note}``."""
    if client is None or haproxy is None:
        return {"name": name, "ok": None, "client": num(client, 1), "haproxy": num(haproxy, 1), "diff_pct": None, "note": note}
    tol_pct, tol_abs = TOLERANCES[name]
    diff = client - haproxy
    diff_pct = 100.0 * diff / haproxy if haproxy else (0.0 if client == 0 else None)
    ok = abs(diff) <= max(tol_abs, tol_pct / 100.0 * abs(haproxy))
    note = f"{note}; tolerance {tol_pct:g}% or {tol_abs:g}"
    return {"name": name, "ok": bool(ok), "client": num(client, 1), "haproxy": num(haproxy, 1), "diff_pct": num(diff_pct, 2), "note": note}


def _in_span(req: pd.DataFrame, span: tuple[float, float]) -> np.ndarray:
    """Which requests started inside ``span`` (:func:`bench.analysis.common.inside`), as a numpy mask."""
    return np.asarray(inside(req["t"].to_numpy(dtype=float), span), dtype=bool)


def check_requests(
    req: pd.DataFrame, info: pd.DataFrame, stat: pd.DataFrame, span: tuple[float, float] | None, unfinished: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Requests the client got an HTTP answer to vs HAProxy's CumReq increase (less health checks).

    ``unfinished`` (the table of requests sent and never answered) is named in the note: HAProxy counted
    those it received, the client has no answer to count.
    """
    if span is None:
        return make_check("requests", None, None, "no HAProxy show info samples")
    inside = _in_span(req, span)
    status = req["status"].to_numpy()
    client = float((inside & (status > 0)).sum())
    cum = in_window(info_metric(info, "CumReq"), span)
    got = window_counter_delta(cum, ["node", "service"], "value", span)
    if got is None:
        return make_check("requests", client, None, "no CumReq samples")
    # HAProxy counts every stream in CumReq, the collector's stats-socket session too:
    # one per sample and process, each one inside the delta from the second sample on
    cli = float((cum.groupby(["node", "service"]).size() - 1).clip(lower=0).sum())
    haproxy = got[0] - cli
    note = f"requests answered with an HTTP status vs CumReq delta of the client-facing processes minus {cli:.0f} stats-socket sessions of the collector"
    internal = stat[(stat["type"] == STAT_FRONTEND) & stat["kind"].isin(CLIENT_KINDS) & stat["pxname"].isin(INTERNAL_FRONTENDS)]
    if not internal.empty:
        health = window_counter_delta(internal, ["node", "service", "pxname"], "req_tot", span)
        if health is not None:
            haproxy -= health[0]
            note += f" and {health[0]:.0f} health-check requests"
    else:
        note += " (health-check requests included: no show stat samples)"
    unanswered = int((inside & (status == 0)).sum())
    if unanswered:
        note += f"; {unanswered} requests without an answer left out"
    dropped = int(_in_span(unfinished, span).sum()) if unfinished is not None and len(unfinished) else 0
    if dropped:
        note += f"; {dropped} requests unfinished when the load stopped (sent, never answered) are in no client count"
    return make_check("requests", client, haproxy, note)


def _conn_new(req: pd.DataFrame, rows: np.ndarray) -> float | None:
    """Requests among ``rows`` (a mask) that opened a connection; None without any that could tell."""
    known = req["conn_new"].notna().to_numpy(dtype=bool) & rows
    if not known.any():
        return None
    return float((req["conn_new"].fillna(False).to_numpy(dtype=bool) & rows).sum())


def check_connections(req: pd.DataFrame, stat: pd.DataFrame, span: tuple[float, float] | None) -> dict[str, Any]:
    """New connections the client opened vs the client frontends' ``conn_tot`` increase."""
    if span is None:
        return make_check("connections", None, None, "no HAProxy samples")
    client = _conn_new(req, _in_span(req, span))
    got = window_counter_delta(client_frontends(stat), ["node", "service", "pxname"], "conn_tot", span)
    haproxy = got[0] if got is not None else None
    note = "requests flagged conn_new vs conn_tot delta of the client-facing frontends"
    if client is None:
        note += "; the load generator does not report new connections (conn_new is null)"
    return make_check("connections", client, haproxy, note)


def integrate_rate(rows: pd.DataFrame, span: tuple[float, float]) -> float | None:
    """Events counted by a per-second rate gauge sampled over ``span``: sum of rate x interval, per process."""
    d = in_window(rows, span)
    if d.empty:
        return None
    total = 0.0
    for _, g in d.sort_values("t", kind="stable").groupby(["node", "service"], sort=False):
        t = g["t"].to_numpy(dtype=float)
        v = g["value"].to_numpy(dtype=float)
        if t.size >= 2:
            total += float(np.nansum(v[1:] * np.diff(t)))
    return total


def client_resumes(run: dict[str, Any]) -> bool:
    """Whether the load generator may resume TLS sessions (then not every new connection is a full handshake).

    The lean engine offers the previous session unless ``load.resumption`` is false;
    Locust's FastHttpUser never does; a topology with ``tls.resumption`` false refuses it.
    """
    load = ((run.get("scenario") or {}).get("load")) or {}
    if ((run.get("topology") or {}).get("tls") or {}).get("resumption") is False:
        return False
    return load.get("engine", "fasthttp") == "lean" and bool(load.get("resumption", True))


def check_handshakes(req: pd.DataFrame, info: pd.DataFrame, stat: pd.DataFrame, run: dict[str, Any], span: tuple[float, float] | None) -> dict[str, Any]:
    """New TLS connections the client opened vs HAProxy's handshakes.

    When the client does not resume sessions, each of its new connections is a full
    handshake: compared with the full handshakes the client frontends counted
    (``ssl_sess``), else with SslFrontendKeyRate x sampling interval, summed (an
    estimate from a one-second rate, poor for bursts). When it may resume, the client cannot tell full
    from resumed handshakes, so its new connections are compared with every new TLS
    handshake HAProxy counted (``ssl_sess`` + ``ssl_reused_sess``, else SslRate integrated).
    """
    haproxy: float | None
    scheme = (((run.get("scenario") or {}).get("load")) or {}).get("scheme")
    if scheme != "https":
        return make_check("handshakes", None, None, f"not a TLS run (scheme {scheme})")
    if span is None:
        return make_check("handshakes", None, None, "no HAProxy samples")
    # plain-HTTP connections of a two-flow model or held ones do no handshake
    client = _conn_new(req, _in_span(req, span) & tls_mask(req, scheme))
    full = integrate_rate(info_metric(info, "SslFrontendKeyRate"), span)
    counts = ssl_session_counts(stat, span)
    if not client_resumes(run):
        if counts is not None:
            # The exact counter wins: a 1 s rate sampled at 1 Hz misjudges bursts (all
            # connections of a keep-alive run open within the first second).
            haproxy = counts[0]
            note = (
                f"new TLS connections of the client (it does not resume sessions: each is a full handshake) vs full handshakes "
                f"the client frontends counted (ssl_sess; {counts[1]:.0f} resumed)"
            )
            if full is not None:
                note += f"; SslFrontendKeyRate x interval summed gives about {full:.0f}"
        else:
            haproxy = full
            note = "new TLS connections of the client (it does not resume sessions: each is a full handshake) vs SslFrontendKeyRate x interval summed (an estimate from a 1 s rate sampled at 1 Hz)"
    elif counts is not None:
        haproxy = counts[0] + counts[1]
        note = (
            f"new TLS connections of the client (it may resume sessions) vs TLS handshakes of the client frontends: "
            f"{counts[0]:.0f} full (ssl_sess) + {counts[1]:.0f} resumed (ssl_reused_sess)"
        )
        if full is not None:
            note += f"; full handshakes from SslFrontendKeyRate: about {full:.0f}"
    else:
        haproxy = integrate_rate(info_metric(info, "SslRate"), span)
        note = "new TLS connections of the client (it may resume sessions) vs SslRate x interval summed (an estimate from a 1 s rate sampled at 1 Hz)"
        if full is not None:
            note += f"; full handshakes from SslFrontendKeyRate: about {full:.0f}"
    if client is None:
        note += "; the load generator does not report new connections (conn_new is null)"
    return make_check("handshakes", client, haproxy, note)


def check_resumption(pacing: pd.DataFrame, held: pd.DataFrame, stat: pd.DataFrame, run: dict[str, Any], span: tuple[float, float] | None) -> dict[str, Any] | None:
    """Resumed TLS handshakes the client counted vs the client frontends' ``ssl_reused_sess`` increase.

    Only for runs whose client counts them: the connection-rate and handshake-rate
    models (``pacing.resumed``) and held connections (``held.resumed``). None (no
    check at all) for other runs.
    """
    model = (((run.get("scenario") or {}).get("load")) or {}).get("model")
    has_pacing = not pacing.empty and model in ("connection-rate", "handshake-rate")
    has_held = not held.empty
    if not has_pacing and not has_held:
        return None
    if span is None:
        return make_check("resumption", None, None, "no HAProxy samples")
    client = 0.0
    if has_pacing:
        # pacing rows are whole seconds of intended send time
        p = pacing[seconds_overlapping(pacing["t"], span)]
        client += float(p["resumed"].sum())
    if has_held:
        # a held row counts what happened in the second before it was sampled
        h = in_window(held, (span[0], span[1] + 1.0))
        client += float(h["resumed"].sum())
    counts = ssl_session_counts(stat, span)
    note = "TLS connections the client saw resume a session (pacing.resumed + held.resumed) vs ssl_reused_sess increase of the client frontends"
    if counts is None:
        return make_check("resumption", client, None, note + "; HAProxy does not report ssl_reused_sess")
    return make_check("resumption", client, counts[1], note + f" ({counts[0]:.0f} full handshakes there)")


def run_checks(
    req: pd.DataFrame,
    info: pd.DataFrame,
    stat: pd.DataFrame,
    run: dict[str, Any],
    pacing: pd.DataFrame | None = None,
    held: pd.DataFrame | None = None,
    unfinished: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """All cross-checks, in a fixed order (``resumption`` only where the client counts resumed handshakes)."""
    span = sampled_span(info)
    checks = [
        check_requests(req, info, stat, span, unfinished),
        check_connections(req, stat, span),
        check_handshakes(req, info, stat, run, span),
    ]
    resumption = check_resumption(
        pacing if pacing is not None else empty_frame("pacing"), held if held is not None else empty_frame("held"), stat, run, span
    )
    if resumption is not None:
        checks.append(resumption)
    return checks
