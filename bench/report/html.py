"""report.html: one self-contained page (inline CSS, plots as base64 PNG, no external assets)."""

from __future__ import annotations

import base64
import datetime as dt
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from .header import CSS as HEADER_CSS
from .header import config_diff_section, render_header, thresholds_section

if TYPE_CHECKING:
    from .plots import Plot

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#e6f4ea;color:#137333}.warn{background:#fef7e0;color:#8a5300}.info{background:#e8f0fe;color:#174ea6}.fail{background:#fce8e6;color:#c5221f;font-weight:bold}.na{background:#f1f3f4;color:#5f6368}
.verdict{padding:.6em .9em;border-radius:4px;margin:.4em 0}.muted{color:#666;font-size:.85em}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
code{background:#f5f5f5;padding:0 .2em}
"""


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return '<span class="na">no data</span>'
    if isinstance(v, float):
        text = f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    elif isinstance(v, int) and not isinstance(v, bool):
        text = f"{v:,}"
    else:
        text = escape(str(v))
    return f"{text}{(' ' + escape(unit)) if unit else ''}"


def _when(t: float | None) -> str:
    if t is None:
        return "?"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rows(pairs: list[tuple[str, Any, str]]) -> str:
    def cls(v: Any) -> str:
        return " class='num'" if isinstance(v, int | float) and not isinstance(v, bool) else ""

    return "".join(f"<tr><th>{escape(k)}</th><td{cls(v)}>{_fmt(v, u)}</td></tr>" for k, v, u in pairs)


def _checks_table(checks: list[dict[str, Any]]) -> str:
    head = "<tr><th>check</th><th>result</th><th>client</th><th>HAProxy</th><th>diff %</th><th>how</th></tr>"
    body = []
    for c in checks:
        if c.get("valid") is False:
            cls, word = "fail", "INVALID (lab changed)"
        elif c["ok"] is True:
            cls, word = "ok", "pass"
        elif c["ok"] is False:
            cls, word = "fail", "FAIL"
        else:
            cls, word = "na", "not checked"
        body.append(
            f"<tr class='{cls}'><td>{escape(c['name'])}</td><td>{word}</td><td class='num'>{_fmt(c['client'])}</td>"
            f"<td class='num'>{_fmt(c['haproxy'])}</td><td class='num'>{_fmt(c['diff_pct'])}</td><td>{escape(c['note'])}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _container_table(by_container: dict[str, Any]) -> str:
    head = "<tr><th>container</th><th>role</th><th>node</th><th>total mean %</th><th>total max %</th><th>per-core mean %</th><th>per-core max %</th></tr>"
    rows = []
    for name, c in by_container.items():
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{escape(c['role'])}</td><td>{escape(c['node'])}</td>"
            f"<td class='num'>{_fmt(c['total_mean_pct'])}</td><td class='num'>{_fmt(c['total_max_pct'])}</td>"
            f"<td class='num'>{_fmt(c['mean_pct'])}</td><td class='num'>{_fmt(c['max_pct'])}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p class='na'>no CPU samples</p>"


def _events_table(events: pd.DataFrame, t0: float) -> str:
    if events.empty:
        return "<p class='muted'>no events.jsonl in this run (no phases or faults recorded)</p>"
    rows = "".join(f"<tr><td class='num'>{ev.t - t0:+.3f}</td><td>{escape(ev.kind)}</td><td>{escape(ev.name)}</td></tr>" for ev in events.itertuples())
    return f"<table><tr><th>s since load start</th><th>kind</th><th>name</th></tr>{rows}</table>"


def _failover_table(failover: dict[str, Any] | None, t0: float) -> str:
    events = (failover or {}).get("events") or []
    if not events:
        return ""
    head = (
        "<tr><th>fault</th><th>target</th><th>s since load start</th><th>VIP moved after s (expected)</th>"
        "<th>failover gap s</th><th>first success after s</th><th>errors</th><th>recovered after s</th></tr>"
    )
    rows = []
    for e in events:
        expected = e.get("expected_vip_move_s")
        moved = _fmt(e.get("vip_moved_after_s")) + (f" ({expected[0]:g}-{expected[1]:g})" if expected else "")
        gap = _fmt(e.get("gap_s")) + (" (no success at all)" if e.get("censored") else "")
        errors = e.get("errors") or {}
        kinds = ", ".join(f"{k} {v}" for k, v in (errors.get("by_kind") or {}).items())
        injected = e.get("injected_at")
        rows.append(
            f"<tr><td>{escape(str(e.get('kind')))}</td><td>{escape(str(e.get('target') or e.get('node') or ''))}</td>"
            f"<td class='num'>{_fmt(None if injected is None else round(injected - t0, 3))}</td><td class='num'>{moved}</td>"
            f"<td class='num'>{gap}</td><td class='num'>{_fmt(e.get('first_success_after_s'))}</td>"
            f"<td class='num'>{_fmt(errors.get('total'))}{(' (' + escape(kinds) + ')') if kinds else ''}</td>"
            f"<td class='num'>{_fmt(e.get('recovered_after_s'))}</td></tr>"
        )
    return f"<h2>Failover</h2><table>{head}{''.join(rows)}</table>"


def render_html(run: dict[str, Any], summary: dict[str, Any], plots: list[Plot], events: pd.DataFrame, t0: float) -> str:
    """The whole report page as a string."""
    s = summary
    r = s["run"]
    versions = run.get("versions") or {}
    topo = run.get("topology") or {}
    lb = topo.get("lb") or {}
    b = s["bottleneck"]
    lat, conn, tls, ports, traffic = s["latency_ms"], s["connections"], s["tls"], s["ports"], s["traffic"]
    key = _rows(
        [
            ("successful requests / s (steady)", s["requests"]["per_s"], ""),
            ("requests total / ok", f"{s['requests']['total']:,} / {s['requests']['ok']:,}", ""),
            ("errors total", s["errors"]["total"], ""),
            ("errors by kind", ", ".join(f"{k}: {v:,}" for k, v in s["errors"]["by_kind"].items()) or "none", ""),
            ("latency p50 / p90 / p99 / p99.9", " / ".join(_plain(lat[k]) for k in ("p50", "p90", "p99", "p999")), "ms"),
            ("new client connections / s", conn["per_s"], ""),
            ("client connections (max)", conn["client_max"], ""),
            ("frontend -> backend connections (max)", conn["backend_max"], ""),
            ("backend -> server connections (max)", conn["server_max"], ""),
            ("full TLS handshakes / s", tls["handshakes_per_s"], ""),
            ("TLS resumption", tls["resumption_pct"], "%"),
            ("ephemeral ports, busiest source (max)", _ports(ports), ""),
            ("client network in / out", _pair(traffic["client_mbps"]), "Mbit/s"),
            ("server network in / out", _pair(traffic["server_mbps"]), "Mbit/s"),
            ("host CPU per core (mean)", s["cpu"]["host_per_core_pct"], "%"),
            ("VIP holder(s), changes", None if s["vrrp"]["changes"] is None else f"{', '.join(s['vrrp']['holders']) or 'none'}; {s['vrrp']['changes']} change(s)", ""),
            ("collectors' own CPU", _collectors(s["collectors"]), "% of a core"),
            *_decomposition_key(s.get("decomposition")),
        ]
    )
    header = _rows(
        [
            ("run", r["id"], ""),
            ("scenario", f"{r['scenario']} ({(run.get('scenario') or {}).get('description', '')})", ""),
            ("variant", r["variant"] or "base", ""),
            (
                "topology",
                (
                    f"{topo.get('name')}: layout {lb.get('layout')}, {lb.get('nodes')} node(s), {((lb.get('backend') or {}).get('processes'))} backend process(es), "
                    f"{lb.get('local_addresses')} local address(es), TLS {(topo.get('tls') or {}).get('key_type')} resumption {(topo.get('tls') or {}).get('resumption')}"
                ),
                "",
            ),
            ("overrides", ", ".join(f"{k}={v}" for k, v in (run.get("overrides") or {}).items()) or "none", ""),
            ("versions", _versions_text(versions), ""),
            ("status", r["status"], ""),
            ("load", _load_text(run), ""),
            ("steady window", f"{_when(s['window']['start'])} + {s['window']['seconds']} s", ""),
        ]
    )
    vers = _rows([(k, v, "") for k, v in versions.items()])
    figs = []
    from .plots import OPTIONAL_PLOTS  # imported by the drawing already (matplotlib: not before it is needed)

    empty = [p.title for p in plots if p.png is None and p.name not in OPTIONAL_PLOTS]
    for p in plots:
        if p.png is None:
            continue  # an empty panel is left out; the ones a run of this kind should have are named below
        b64 = base64.b64encode(p.png).decode("ascii")
        figs.append(
            f"<h2>{escape(p.title)}</h2><figure><img alt='{escape(p.title)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{escape(p.caption)} (also <code>plots/{escape(p.name)}.png</code>)</figcaption></figure>"
        )
    evidence = "".join(f"<li>{escape(e)}</li>" for e in b["evidence"]) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lbbench report {escape(str(r['id']))}</title><style>{CSS}{HEADER_CSS}</style></head>
<body>
<h1>lbbench report: {escape(str(r['scenario']))} / {escape(str(r['variant'] or 'base'))}</h1>
<p class="muted">{escape(str(r['id']))}, started {escape(str(r['started_at']))}. Built from the run directory alone by <code>bench report</code>; figures in <code>summary.json</code>.</p>
{render_header(run, s)}
<h2>Run</h2><table>{header}</table>
<h2>Key figures (steady window)</h2><table>{key}</table>
{thresholds_section(s)}
<h2>Cross-checks: client vs HAProxy</h2>{_checks_table(s['checks'])}
{_load_section(s.get('load'), s['latency_ms'].get('corrected'), t0)}
{_failover_table(s.get('failover'), t0)}
{_decomposition_section(s.get('decomposition'))}
<h2>Bottleneck evidence</h2>{_limits_table(b.get('limits') or [])}<ul>{evidence}</ul>
<h2>CPU by container (steady window, % of one core)</h2>{_container_table(s['cpu']['by_container'])}
{''.join(figs)}
{"<p class='muted'>Not drawn (no data in this run): " + escape(", ".join(empty)) + ".</p>" if empty else ""}
{config_diff_section(run)}
<h2>Events</h2>{_events_table(events, t0)}
<h2>Versions</h2><table>{vers}</table>
{_build_section(run)}
</body></html>
"""


def _decomposition_key(dec: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    """Key-figure rows: the median of each hop of a traced request, and the servers' delay asked vs served."""
    if not dec or not dec.get("requests"):
        return [("latency by hop (p50)", None, "")]
    h = dec["hops_ms"]
    p50 = lambda k: _plain(h[k]["p50"])  # noqa: E731
    rows: list[tuple[str, Any, str]] = [
        (
            "latency by hop (p50): client<->frontend / LB added / queue / server",
            f"{p50('client_frontend')} / {p50('lb_added')} / {p50('queue')} / {p50('server')} (sum {_plain(dec['sum_p50_ms'])}, client {_plain(dec['client_ms']['p50'])})",
            "ms",
        )
    ]
    if dec.get("requested_delay_ms") is not None:
        served = dec["served_delay_ms"]
        rows.append(("server delay asked / served p50 / p99", f"{_plain(dec['requested_delay_ms'])} / {_plain(served['p50'])} / {_plain(served['p99'])}", "ms"))
    return rows


def _decomposition_section(dec: dict[str, Any] | None) -> str:
    """Per hop p50 / p90 / p99 / mean of the traced requests (their hops add up to each request's latency)."""
    if not dec or not dec.get("requests"):
        return ""
    names = {
        "client_frontend": "client <-> frontend: network, TLS, the client",
        "frontend_backend": "frontend process <-> backend process",
        "queue": "queue for a server connection (Tw)",
        "connect": "connect to the server (Tc)",
        "backend_server": "backend process <-> server",
        "server": "the server's own time",
        "lb_added": "added by the load balancer (frontend_backend + connect + backend_server)",
    }
    rows = "".join(
        f"<tr><td>{escape(names[k])}</td>" + "".join(f"<td class='num'>{_fmt(v.get(q))}</td>" for q in ("p50", "p90", "p99", "mean")) + "</tr>"
        for k, v in dec["hops_ms"].items()
        if v.get("p50") is not None
    )
    c = dec["client_ms"]
    rows += "<tr><th>client latency of the same requests</th>" + "".join(f"<td class='num'>{_fmt(c.get(q))}</td>" for q in ("p50", "p90", "p99", "mean")) + "</tr>"
    every = dec.get("trace_every")
    how = "every request" if every == 1 else (f"1 in {every} requests" if every else "automatically, about 100 requests/s per load-generator process")
    dropped = dec.get("dropped_logs")
    note = (
        f"{dec['requests']} traced requests of the steady window ({_fmt(dec.get('sampled_pct'))}% of them; traced {how}), "
        f"followed through every HAProxy process by their X-Lbbench-Id. The hops of one request add up to its latency; "
        f"their p50s add up to {_fmt(dec.get('sum_p50_ms'))} ms against the client's {_fmt(c.get('p50'))} ms. "
        + (f"{dropped:g} timer lines were dropped by HAProxy (DroppedLogs). " if dropped else "")
        + f"Termination states: {escape(str(dec.get('termination')))}."
    )
    return (
        "<h2>Latency decomposition</h2><table><tr><th>hop</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>mean ms</th></tr>"
        f"{rows}</table><p class='muted'>{note}</p>"
    )


def _limits_table(limits: list[dict[str, Any]]) -> str:
    """The limits the run came near (>= 50 % used), ranked: reached ones first."""
    if not limits:
        return "<p class='muted'>no limit came within half of its capacity</p>"
    rows = "".join(
        f"<tr class='{'warn' if x.get('reached') else ''}'><td class='num'>{i}</td><td>{escape(str(x.get('component')))}</td><td>{escape(str(x.get('limit')))}</td>"
        f"<td class='num'>{_fmt(x.get('used_pct'))}</td><td>{'yes' if x.get('reached') else 'no'}</td>"
        f"<td>{escape(str(x.get('detail')))}</td><td>{escape(str(x.get('knob')))}</td></tr>"
        for i, x in enumerate(limits, 1)
    )
    head = "<tr><th>rank</th><th>component</th><th>limit</th><th>used %</th><th>reached</th><th>numbers</th><th>what moves it</th></tr>"
    return f"<table>{head}{rows}</table>"


def _build_section(run: dict[str, Any]) -> str:
    """The HAProxy build that ran the LB processes (`haproxy -vv`) and the user's own configuration, if any."""
    b = run.get("haproxy_build")
    out = ""
    if b:
        rows = _rows(
            [
                ("image", f"{b.get('image')} ({str(b.get('image_id') or '')[7:19]})", ""),
                ("version", b.get("version_line"), ""),
                ("target", b.get("target"), ""),
                ("build options", b.get("options"), ""),
                ("TLS library", b.get("tls_library"), ""),
                ("Lua", b.get("lua") or "none", ""),
                ("features", " ".join(b.get("features") or []), ""),
            ]
        )
        out += f"<h2>HAProxy build (haproxy -vv; the whole output is in run.json)</h2><table>{rows}</table>"
    cfg = ((run.get("topology") or {}).get("lb") or {}).get("haproxy") or {}
    parts = []
    for role in ("all", "frontend", "backend", "monolith"):
        r = cfg.get(role) or {}
        for section, lines in (r.get("lines") or {}).items():
            parts.append((f"{role}: lines in {section}", "\n".join(lines), ""))
        if (r.get("sections") or "").strip():
            parts.append((f"{role}: sections", r["sections"].strip(), ""))
        if r.get("template"):
            parts.append((f"{role}: template", r["template"], ""))
    if cfg.get("files"):
        parts.append(("files", ", ".join(cfg["files"]), ""))
    if parts:
        rows = "".join(f"<tr><th>{escape(k)}</th><td><pre>{escape(str(v))}</pre></td></tr>" for k, v, _ in parts)
        out += f"<h2>Your HAProxy configuration (lb.haproxy; rendered configs in <code>configs/</code>)</h2><table>{rows}</table>"
    return out


def _plain(v: Any) -> str:
    return "?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _ports(ports: dict[str, Any]) -> str | None:
    """The busiest pair against the range, how often pairs were read, and the per-second bound."""
    if ports["max_in_use"] is None:
        return None
    text = f"{ports['max_in_use']:,} of {ports['range_size']:,} ({ports['max_utilisation_pct']}%)"
    every, bound = ports.get("pairs_every_s"), ports.get("max_sockets")
    if every is not None and every > 1:
        text += f"; pairs read every {every:g} s"
        if bound is not None:
            text += f", every second at most {bound:,} sockets in a namespace ({ports.get('max_sockets_pct')}% of its range)"
    return text


def _collectors(c: dict[str, Any]) -> str | None:
    """The collectors' total CPU, where known each collector's share and the LB namespaces' TCP table: "0.8 (sockets 0.2, write 0.3, ...); ..."."""
    if c.get("cpu_pct") is None:
        return None
    parts = [f"{name} {_plain(v)}" for name, v in (c.get("by_collector") or {}).items() if v is not None]
    text = f"{_plain(c['cpu_pct'])} ({', '.join(parts)})" if parts else _plain(c["cpu_pct"])
    table = c.get("socket_table")
    if table == "own":
        text += "; LB namespaces with a TCP table of their own"
    elif table == "shared":
        text += "; LB namespaces sharing the host's TCP table (the socket dumps grow with the host's sockets)"
    return text


def _pair(d: dict[str, Any]) -> str | None:
    if d.get("in") is None and d.get("out") is None:
        return None
    return f"{_plain(d.get('in'))} / {_plain(d.get('out'))} (peak {_plain(d.get('in_max'))} / {_plain(d.get('out_max'))})"


def _versions_text(versions: dict[str, Any]) -> str:
    """The versions that decide a result, in one line (all of them are in the Versions table)."""
    parts = []
    for key, label in (("haproxy", "HAProxy"), ("keepalived", "keepalived"), ("locust", "Locust"), ("lbbench", "lbbench")):
        v = versions.get(key)
        if v:
            words = str(v).split()
            # "HAProxy version 2.6.12-1+deb12u3 2025/10/03 - ..." and "Keepalived v2.2.7 (...)" -> the version word
            ver = next((w for w in words if w[:1].isdigit() or (w[:1] == "v" and w[1:2].isdigit())), str(v))
            parts.append(f"{label} {ver.lstrip('v')}")
    sha = versions.get("git_sha")
    if sha:
        parts[-1:] = [f"{parts[-1]} (git {str(sha)[:7]})"] if parts else [f"git {str(sha)[:7]}"]
    return ", ".join(parts) or "unknown"


def _load_text(run: dict[str, Any]) -> str:
    sc = run.get("scenario") or {}
    load = sc.get("load") or {}
    model = load.get("model")
    targets = ", ".join(
        f"{k} {load[k]:g}" for k in ("requests_per_s", "connections_per_s", "handshakes_per_s") if isinstance(load.get(k), int | float)
    )
    extra = f" ({targets})" if targets else ""
    if model in ("connection-rate", "handshake-rate") or load.get("requests_per_connection"):
        extra += f", {load.get('requests_per_connection') or 'unlimited'} request(s) per connection"
    if load.get("stages"):
        extra += f", {len(load['stages'])} stage(s)"
    if load.get("find_max"):
        extra += ", find-max"
    held = load.get("held")
    if held:
        extra += f", {held.get('connections')} held connection(s) (TLS: {held.get('tls')})"
    pool = "users" if model == "keep-alive" else "connections in the pool"
    scale = f", scale {run['scale']:g}" if isinstance(run.get("scale"), int | float) else ""
    workers = run.get("load_workers") or {}
    where = f"{workers.get('count')} worker container(s) x {workers.get('processes')} process(es)" if workers.get("count") else f"{load.get('processes')} process(es)"
    return (
        f"{load.get('engine')} {model}{extra}, {load.get('scheme')} {load.get('path')}, {load.get('users')} {pool}, "
        f"{where}, {sc.get('duration')} s incl. {sc.get('ramp_up')} s ramp-up{scale}"
    )


def _load_section(load: dict[str, Any] | None, corrected: dict[str, Any] | None, t0: float) -> str:
    """Targets next to what the client and HAProxy achieved; phases; find-max steps; corrected latency."""
    if not load:
        return ""
    target, client, hap, pct = load.get("target") or {}, load.get("achieved") or {}, load.get("achieved_haproxy") or {}, load.get("achieved_pct") or {}
    rows = []
    for key, label, hkey in (
        ("requests_per_s", "requests / s", "requests_per_s"),
        ("connections_per_s", "new connections / s", "connections_per_s"),
        ("handshakes_per_s", "TLS handshakes / s (full + resumed)", "handshakes_per_s"),
        ("resumption_pct", "TLS resumption %", "resumption_pct"),
        ("held_connections", "held connections (open, mean)", "client_connections"),
        ("held_tls_connections", "held TLS connections (open, mean)", None),
    ):
        t, c, h = target.get(key), client.get(key), hap.get(hkey) if hkey else None
        if t is None and key not in ("requests_per_s", "resumption_pct") and not (key == "connections_per_s" and c):
            continue  # a figure the model does not target (keep the request rate, and new connections when there are any)
        if key == "resumption_pct" and c is None and h is None:
            continue
        rows.append(
            f"<tr><td>{escape(label)}</td><td class='num'>{_fmt(t)}</td><td class='num'>{_fmt(c)}</td>"
            f"<td class='num'>{_fmt(pct.get(key))}</td><td class='num'>{_fmt(h)}</td></tr>"
        )
    if hap.get("full_handshakes_per_s") is not None and target.get("handshakes_per_s"):
        rows.append(f"<tr><td>full TLS handshakes / s (SslFrontendKeyRate)</td><td></td><td></td><td></td><td class='num'>{_fmt(hap['full_handshakes_per_s'])}</td></tr>")
    table = (
        "<table><tr><th>figure</th><th>target</th><th>achieved (client)</th><th>% of target</th><th>HAProxy</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else ""
    )
    pace = load.get("pacing")
    pacing = ""
    if pace:
        pacing = (
            f"<p class='muted'>Schedule (steady window): {pace['due']} sends due, {pace['sent']} sent, {pace['late']} late (&gt; 10 ms), "
            f"{pace['dropped']} dropped (&gt; max_lag), {pace['waited']} found every connection busy; generator dispatch lag up to "
            f"{_fmt(pace.get('dispatch_lag_max_ms'))} ms.</p>"
        )
    lat = ""
    if corrected and corrected.get("n"):
        cells = "".join(
            f"<tr><td>{k}</td><td class='num'>{_fmt(corrected.get(k))}</td><td class='num'>{_fmt(corrected.get(k + '_uncorrected'))}</td></tr>"
            for k in ("p50", "p90", "p99", "p999", "mean", "max")
        )
        lat = (
            "<h3>Latency from the intended send time (coordinated-omission corrected)</h3>"
            f"<table><tr><th></th><th>corrected ms</th><th>uncorrected ms</th></tr>{cells}</table>"
        )
    phases = ""
    if load.get("phases"):
        prow = "".join(
            f"<tr><td>{escape(str(p.get('name')))}</td><td class='num'>{_fmt(None if p.get('start') is None else round(p['start'] - t0, 2))}</td>"
            f"<td class='num'>{_fmt(None if p.get('end') is None else round(p['end'] - t0, 2))}</td><td class='num'>{_fmt(p.get('target'))}</td>"
            f"<td class='num'>{_fmt(p.get('achieved'))}</td><td>{escape(str(p.get('verdict') or ''))} {escape(str(p.get('reason') or ''))}</td></tr>"
            for p in load["phases"]
        )
        phases = (
            "<h3>Phases</h3><table><tr><th>phase</th><th>start s</th><th>end s</th><th>target</th><th>achieved</th><th>verdict</th></tr>"
            f"{prow}</table>"
        )
    return f"<h2>Load: target vs achieved ({escape(str(load.get('model')))})</h2>{table}{pacing}{lat}{phases}"
