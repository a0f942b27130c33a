"""The top of report.html: the run's key figures at a glance, then one coloured line per verdict.

Both are lists of small functions, so another section adds its own without
touching the others::

    TILES.append(my_tile)        # (run, summary) -> Tile | None
    VERDICTS.insert(0, my_line)  # (run, summary) -> Verdict | None  (order = order on the page)
    FIRST.append(my_line)        # a line that voids the run, said before the tiles

A function returns None when the run has nothing to say there (the tile or
line is then left out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from ..analysis.unfinished import of_the_load, unfinished_line

#: Colour class of the bottleneck verdict: a saturated load generator voids the result; a saturated host taints it.
#: The client's own pool as the limit taints it too (the run measured the closed loop, not the load balancer).
BOTTLENECK_CLASS = {None: "na", "none": "ok", "loadgen": "fail", "server": "fail", "host": "warn", "ports": "info", "contended": "warn", "client-pool": "warn"}

CSS = """
.tiles{display:flex;flex-wrap:wrap;gap:.5em;margin:.8em 0}.tile{border:1px solid #ddd;border-radius:6px;padding:.4em .8em;min-width:7.5em}
.tile .v{font-size:1.45em;font-weight:600;font-variant-numeric:tabular-nums}.tile .l{font-size:.78em;color:#555}.tile .d{font-size:.75em;color:#666}
.tile.ok{border-color:#137333}.tile.fail{border-color:#c5221f}.tile.warn{border-color:#8a5300}
pre.diff{background:#fafafa;border:1px solid #eee;padding:.5em;font-size:.8em;overflow-x:auto}.diff .add{color:#137333}.diff .del{color:#c5221f}.diff .hunk{color:#174ea6}
"""


@dataclass(frozen=True)
class Tile:
    """One key figure: label, value (already formatted), colour class, a short detail line."""

    label: str
    value: str
    cls: str = ""
    detail: str = ""

    def html(self) -> str:
        detail = f"<div class='d'>{escape(self.detail)}</div>" if self.detail else ""
        return f"<div class='tile {self.cls}'><div class='l'>{escape(self.label)}</div><div class='v'>{escape(self.value)}</div>{detail}</div>"


@dataclass(frozen=True)
class Verdict:
    """One coloured line: colour class, bold title, text."""

    cls: str
    title: str
    text: str

    def html(self) -> str:
        return f'<div class="verdict {self.cls}"><b>{escape(self.title)}:</b> {escape(self.text)}</div>'


def num(v: Any, digits: int = 0) -> str:
    """A figure with thousands separators; ``-`` when missing."""
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return "-"
    if isinstance(v, int) or digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ms(v: Any) -> str:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return "-"
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


# --------------------------------------------------------------------------- tiles


def _rate(run: dict[str, Any], s: dict[str, Any]) -> Tile | None:
    req = s.get("requests") or {}
    load = s.get("load") or {}
    pct = (load.get("achieved_pct") or {}).get("requests_per_s")
    target = (load.get("target") or {}).get("requests_per_s")
    detail = f"{num(pct, 1)}% of the {num(target)} target" if pct is not None and target else f"{num(req.get('total'))} requests in all"
    unfinished = s.get("unfinished")
    if unfinished is not None:  # (summaries from before the count have no section)
        # (those sent as the load stopped and cut by the stop are no request of the load: the verdict line names them)
        detail += f", {num(of_the_load(unfinished))} unfinished"
    cls = "" if load.get("reached") in (None, True) else "warn"
    return Tile("requests / s (steady)", num(req.get("per_s")), cls, detail)


def _latency(run: dict[str, Any], s: dict[str, Any]) -> Tile | None:
    lat = s.get("latency_ms") or {}
    if lat.get("p50") is None:
        return Tile("latency p50 / p99", "no data", "na")
    detail = f"p99.9 {ms(lat.get('p999'))} ms, max {ms(lat.get('max'))} ms"
    u = s.get("unfinished") or {}
    p99 = (u.get("bounds") or {}).get("latency_ms.p99")
    if p99 is not None and p99.get("high") != lat.get("p99"):
        # of the finished requests only: with the unfinished ones the p99 could be anywhere in this range
        high = f"{ms(p99['high'])} ms" if p99.get("high") is not None else "unbounded"
        return Tile("latency p50 / p99", f"{ms(lat.get('p50'))} / {ms(lat.get('p99'))} ms", "warn", f"{detail}; p99 up to {high} with {num(of_the_load(u))} unfinished")
    return Tile("latency p50 / p99", f"{ms(lat.get('p50'))} / {ms(lat.get('p99'))} ms", "", detail)


def _errors(run: dict[str, Any], s: dict[str, Any]) -> Tile | None:
    e = s.get("errors") or {}
    kinds = ", ".join(f"{k} {num(v)}" for k, v in sorted((e.get("by_kind") or {}).items(), key=lambda kv: -kv[1])[:3])
    pct = e.get("pct")
    return Tile("errors", num(e.get("total")), "fail" if e.get("total") else "ok", (f"{num(pct, 3)}% · " if pct is not None else "") + (kinds or "none"))


def _bottleneck(run: dict[str, Any], s: dict[str, Any]) -> Tile | None:
    b = s.get("bottleneck") or {}
    if b.get("valid") is False:
        return Tile("bottleneck", str(b.get("component") or "?"), "fail", "invalid: the lab changed")
    return Tile("bottleneck", str(b.get("component") or "?"), BOTTLENECK_CLASS.get(b.get("component"), "info"), str(b.get("limit") or ""))


def _checks(run: dict[str, Any], s: dict[str, Any]) -> Tile | None:
    checks = s.get("checks") or []
    if not checks:
        return None
    passed = sum(c.get("ok") is True for c in checks)
    failed = sum(c.get("ok") is False for c in checks)
    if any(c.get("valid") is False for c in checks):
        return Tile("cross-checks", f"{passed} / {passed + failed}", "fail", "invalid: the lab changed")
    return Tile("cross-checks", f"{passed} / {passed + failed}", "fail" if failed else "ok" if passed else "na", f"{failed} failed" if failed else "client = HAProxy")


def _slos(run: dict[str, Any], s: dict[str, Any]) -> Tile | None:
    t = s.get("thresholds") or {}
    if t.get("status") in (None, "none"):
        return None
    n = len(t.get("results") or [])
    cls = {"pass": "ok", "fail": "fail", "inconclusive": "warn"}[t["status"]]
    return Tile("SLO thresholds", f"{t.get('passed', 0)} / {n}", cls, t["status"].upper())


#: The key-figure tiles, in page order.
TILES: list[Callable[[dict[str, Any], dict[str, Any]], Tile | None]] = [_rate, _latency, _errors, _bottleneck, _checks, _slos]


# --------------------------------------------------------------------------- verdict lines


def _integrity_line(run: dict[str, Any], s: dict[str, Any]) -> Verdict | None:
    """The lab changed under the run (bench/analysis/integrity.py): said first, in red."""
    i = s.get("integrity") or {}
    if i.get("ok", True):
        return None
    since = i.get("invalid_from_s")
    when = f"From {since:+.1f} s after the load started" if isinstance(since, int | float) else "From then on"
    return Verdict(
        "fail",
        "INVALID: the lab changed during the run",
        f"{i.get('headline')}. {when} the figures no longer describe the lab that was set up; verdicts and checks "
        "reaching past that moment are marked invalid (every change: the Events table and events.jsonl)",
    )


def _bottleneck_line(run: dict[str, Any], s: dict[str, Any]) -> Verdict | None:
    b = s.get("bottleneck") or {}
    if b.get("valid") is False:
        return Verdict("fail", "Bottleneck", f"INVALID (the lab changed during the steady window): {b.get('component')}: {b.get('verdict') or ''}")
    return Verdict(BOTTLENECK_CLASS.get(b.get("component"), "info"), "Bottleneck", f"{b.get('component')}: {b.get('verdict') or ''}")


def _checks_line(run: dict[str, Any], s: dict[str, Any]) -> Verdict | None:
    checks = s.get("checks") or []
    failed = [c["name"] for c in checks if c.get("ok") is False]
    passed = [c["name"] for c in checks if c.get("ok") is True]
    unknown = [c["name"] for c in checks if c.get("ok") is None]
    text = f"{len(passed)} passed, {len(failed)} failed, {len(unknown)} not checked (no data on one side)"
    if any(c.get("valid") is False for c in checks):
        return Verdict("fail", "Cross-checks", f"invalid: the lab changed during the run, so client and HAProxy counted different labs ({text})")
    if failed:
        return Verdict("fail", "Cross-checks", f"{text} (FAILED: {', '.join(failed)})")
    return Verdict("ok" if passed else "na", "Cross-checks", text)


def _unfinished_line(run: dict[str, Any], s: dict[str, Any]) -> Verdict | None:
    """Requests sent and never answered when the load ended (bench/analysis/unfinished.py): none, no line."""
    u = s.get("unfinished") or {}
    line = unfinished_line(u)
    if line is None:
        return None
    if not of_the_load(u):  # only requests the stop itself cut: no request of the load
        return Verdict("na", "Unfinished requests", line)
    return Verdict("fail" if u.get("large") else "warn", "Unfinished requests", line)


def _load_line(run: dict[str, Any], s: dict[str, Any]) -> Verdict | None:
    load = s.get("load")
    if not load or (load.get("reached") is None and not load.get("find_max")):
        return None
    limited = load.get("limited_by")
    cls = "ok" if load.get("reached") else ("fail" if limited == "loadgen" else "warn")
    return Verdict(cls, "Load target vs achieved", str(load.get("verdict")))


def _thresholds_line(run: dict[str, Any], s: dict[str, Any]) -> Verdict | None:
    from ..thresholds import verdict_line

    t = s.get("thresholds") or {}
    line = verdict_line(t)
    if line is None:
        return None
    cls = {"pass": "ok", "fail": "fail", "inconclusive": "warn"}[t["status"]]
    return Verdict(cls, "SLO thresholds", line.removeprefix("thresholds: "))


#: The coloured verdict lines under the tiles, in page order.
VERDICTS: list[Callable[[dict[str, Any], dict[str, Any]], Verdict | None]] = [_bottleneck_line, _unfinished_line, _checks_line, _load_line, _thresholds_line]


#: Lines said before the tiles: what makes every figure below doubtful.
FIRST: list[Callable[[dict[str, Any], dict[str, Any]], Verdict | None]] = [_integrity_line]


def render_header(run: dict[str, Any], summary: dict[str, Any]) -> str:
    """The lines that void the run (FIRST), tiles, then verdict lines (each left out when it has nothing to say)."""
    first = [v for v in (fn(run, summary) for fn in FIRST) if v is not None]
    tiles = [t for t in (fn(run, summary) for fn in TILES) if t is not None]
    lines = [v for v in (fn(run, summary) for fn in VERDICTS) if v is not None]
    return "\n".join(v.html() for v in first) + f"<div class='tiles'>{''.join(t.html() for t in tiles)}</div>" + "\n".join(v.html() for v in lines)


def thresholds_section(summary: dict[str, Any]) -> str:
    """The table of every threshold: value, limit, result (empty without thresholds)."""
    t = summary.get("thresholds") or {}
    results = t.get("results") or []
    if not results:
        return ""
    rows = []
    for r in results:
        cls, word = {"pass": ("ok", "pass"), "fail": ("fail", "FAIL"), "no_data": ("na", "no data"), "undecided": ("warn", "undecided")}[r["status"]]
        value = r["value"]
        shown = num(value, 3) if value is not None and abs(value) < 1000 else num(value)
        limit = f"{r['limit']:,g}"
        rows.append(
            f"<tr class='{cls}'><td><code>{escape(r['metric'])}</code></td><td>{escape(r['op'])} {escape(limit)}</td>"
            f"<td class='num'>{escape(shown)}</td><td>{word}</td></tr>"
        )
    why = ""
    if t.get("untrustworthy"):
        items = "".join(f"<li>{escape(x)}</li>" for x in t["untrustworthy"])
        why = f"<p class='warn'>The run cannot vouch for a pass:</p><ul>{items}</ul>"
    return (
        "<h2>SLO thresholds (from the scenario)</h2>"
        f"<table><tr><th>metric</th><th>limit</th><th>value</th><th>result</th></tr>{''.join(rows)}</table>{why}"
    )


def config_diff_section(run: dict[str, Any]) -> str:
    """What this run changed in the rendered configs against the topology file's defaults (one line when nothing)."""
    diff = run.get("config_diff")
    overrides = run.get("overrides") or {}
    topo = (run.get("topology") or {}).get("name", "the topology")
    if diff is None:
        return ""
    if not diff.strip():
        what = "overrides that reach no config file" if overrides else "the topology's defaults"
        return f"<h2>Config diff</h2><p class='muted'>The rendered configs are those of {escape(str(topo))} as written ({what}).</p>"
    lines = []
    for line in diff.splitlines():
        cls = "hunk" if line.startswith("@@") else "add" if line.startswith("+") and not line.startswith("+++") else "del" if line.startswith("-") and not line.startswith("---") else ""
        lines.append(f"<span class='{cls}'>{escape(line)}</span>" if cls else escape(line))
    changed = sum(1 for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    return (
        f"<h2>Config diff against {escape(str(topo))}'s defaults</h2>"
        f"<details open><summary>{changed:,} changed line(s) in the rendered configs (scenario overrides, variant and --set)</summary>"
        f"<pre class='diff'>{chr(10).join(lines)}</pre></details>"
    )
