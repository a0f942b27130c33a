"""Rendering a comparison document: the terminal (rich), markdown, JSON and self-contained HTML with plots.

Every renderer reads only the document of :mod:`bench.compare.comparison` (plus,
for the plots, the runs' per-second series), so all formats say the same.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from .. import stats
from .figures import fmt_value, is_count
from .runs import Group

FORMATS = ("table", "markdown", "json", "html")


def _change(row: dict[str, Any]) -> str:
    return "n/a" if row["change_pct"] is None else f"{row['change_pct']:+.1f}%"


def _test_text(row: dict[str, Any]) -> str:
    if row["test"] == "-" or row["evidence"] == "-":
        return row["test"]
    return f"{row['test']}, {row['evidence']}"


def _group_header(doc: dict[str, Any], label: str, comparison: dict[str, Any]) -> str:
    if doc.get("design") == "duet":
        n = max((r["n"][0] for r in comparison["rows"]), default=0)
        return f"{label} ({n} slices)"
    g = next(g for g in doc["groups"] if g["label"] == label)
    return f"{label} (n={len(g['runs'])})"


def table_rows(doc: dict[str, Any], comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of one comparison table (shared by every format)."""
    header = [
        "figure",
        _group_header(doc, comparison["baseline"], comparison),
        _group_header(doc, comparison["candidate"], comparison),
        "ratio",
        "change",
        "significance",
        "test",
    ]
    rows = [
        [
            r["metric"],
            fmt_value(r["baseline"], r["baseline_spread_pct"], is_count(r["metric"])),
            fmt_value(r["candidate"], r["candidate_spread_pct"], is_count(r["metric"])),
            r["phrase"],
            _change(r),
            r["significance"],
            _test_text(r),
        ]
        for r in comparison["rows"]
    ]
    return header, rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The comparison as GitHub-flavoured markdown (``images``: title -> relative PNG path)."""
    out = ["# bench compare", "", "Groups (the first is the baseline):", ""]
    out += ["| group | key | runs |", "| --- | --- | --- |"]
    for g in doc["groups"]:
        runs = ", ".join(f"`{r['path']}`" + ("" if r["status"] == "completed" else f" ({r['status']})") for r in g["runs"])
        out.append(f"| {_md_cell(g['label'])} | {_md_cell(g['key'])} | {_md_cell(runs)} |")
    for comp in doc["comparisons"]:
        header, rows = table_rows(doc, comp)
        out += ["", f"## {comp['candidate']} vs {comp['baseline']}", ""]
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("| --- | ---: | ---: | --- | ---: | --- | --- |")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    if images:
        out.append("")
        out += [f"![{title}]({path})" for title, path in images.items()]
    out += ["", "Notes:", ""]
    out += [f"- {n}" for n in doc["notes"]]
    return "\n".join(out) + "\n"


def render_json(doc: dict[str, Any]) -> str:
    """The comparison document as JSON (infinite ratios become null), validated against its model."""
    from ..results.compare import CompareDoc
    from ..results.document import document_dict

    return json.dumps(document_dict(CompareDoc, doc), indent=2, allow_nan=False) + "\n"


def _style(row: dict[str, Any]) -> str:
    if row["significance"] != stats.SIGNIFICANT:
        return "dim" if row["significance"] == stats.WITHIN_NOISE else ""
    return "red" if row["worse"] else "green" if row["worse"] is False else ""


def render_terminal(doc: dict[str, Any], console: Any = None) -> None:
    """Print the comparison with rich (significant regressions red, improvements green, noise dim)."""
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # every text is the user's (paths, keys holding HAProxy lines with [...]): never rich markup;
    # CI logs are no terminal: room for the table instead of every cell wrapped at 80 columns
    console = console or (Console() if sys.stdout.isatty() else Console(width=160))
    groups = Table(title="groups (the first is the baseline)", title_justify="left")
    for col in ("group", "runs"):
        groups.add_column(col)
    for g in doc["groups"]:
        groups.add_row(Text(g["label"]), Text("\n".join(r["path"] + ("" if r["status"] == "completed" else f" ({r['status']})") for r in g["runs"])))
    console.print(groups)
    for comp in doc["comparisons"]:
        header, rows = table_rows(doc, comp)
        t = Table(title=Text(f"{comp['candidate']} vs {comp['baseline']}"), title_justify="left")
        for i, h in enumerate(header):
            t.add_column(Text(h), justify="right" if i in (1, 2, 4) else "left")
        for row, raw in zip(rows, comp["rows"], strict=True):
            t.add_row(*(Text(c) for c in row), style=_style(raw))
        console.print(t)
    for n in doc["notes"]:
        console.print(f"note: {n}", style="dim", highlight=False, markup=False)


def plot_series(groups: list[Group], column: str, ylabel: str, title: str) -> bytes | None:
    """A PNG overlaying one per-second series of every run, one colour per group (None without data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    drawn = False
    colours = plt.get_cmap("tab10")
    for i, g in enumerate(groups):
        labelled = False
        for r in g.runs:
            s = r.series()
            if s.empty or s[column].isna().all():
                continue
            ax.plot(s["second"], s[column], color=colours(i % 10), alpha=0.85, linewidth=1.2, label=None if labelled else g.label)
            labelled = drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("seconds into the steady state")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


PLOTS = (
    ("requests", "successful requests/s", "request rate per second"),
    ("p99_ms", "p99 latency (ms)", "p99 latency per second"),
)


def make_plots(groups: list[Group]) -> dict[str, tuple[str, bytes]]:
    """Overlay plots of the per-second request rate and p99 latency: column -> (title, PNG bytes)."""
    out = {}
    for column, ylabel, title in PLOTS:
        png = plot_series(groups, column, ylabel, title)
        if png is not None:
            out[column] = (title, png)
    return out


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.worse td { background: #fde2e1; } tr.better td { background: #e3f6e5; } tr.noise td { color: #777; }
code { font-size: 13px; } .notes { color: #555; font-size: 13px; }
"""


def render_html(doc: dict[str, Any], plots: dict[str, tuple[str, bytes]] | None = None) -> str:
    """A self-contained HTML page: tables, notes and the overlay plots (embedded PNG)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>bench compare</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>bench compare</h1>",
        "<h2>Groups</h2><p>The first group is the baseline.</p>",
        "<table><tr><th>group</th><th>key</th><th>runs</th></tr>",
    ]
    for g in doc["groups"]:
        runs = "<br>".join(f"<code>{e(r['path'])}</code>" + ("" if r["status"] == "completed" else f" ({e(r['status'])})") for r in g["runs"])
        parts.append(f"<tr><td>{e(g['label'])}</td><td>{e(g['key'])}</td><td>{runs}</td></tr>")
    parts.append("</table>")
    for comp in doc["comparisons"]:
        header, rows = table_rows(doc, comp)
        parts.append(f"<h2>{e(comp['candidate'])} vs {e(comp['baseline'])}</h2><table><tr>")
        parts += [f"<th>{e(h)}</th>" for h in header]
        parts.append("</tr>")
        for row, raw in zip(rows, comp["rows"], strict=True):
            cls = ""
            if raw["significance"] == stats.SIGNIFICANT and raw["worse"] is not None:
                cls = "worse" if raw["worse"] else "better"
            elif raw["significance"] == stats.WITHIN_NOISE:
                cls = "noise"
            cells = "".join(f'<td class="num">{e(c)}</td>' if i in (1, 2, 4) else f"<td>{e(c)}</td>" for i, c in enumerate(row))
            parts.append(f'<tr class="{cls}" title="{e(_figure_description(doc, raw["metric"]))}">{cells}</tr>')
        parts.append("</table>")
    if plots:
        parts.append("<h2>Time series</h2>")
        for title, png in plots.values():
            data = base64.b64encode(png).decode()
            parts.append(f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}"><figcaption>{e(title)}</figcaption></figure>')
    parts.append('<h2>Notes</h2><ul class="notes">')
    parts += [f"<li>{e(n)}</li>" for n in doc["notes"]]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def _figure_description(doc: dict[str, Any], metric: str) -> str:
    return next((f["description"] for f in doc["figures"] if f["metric"] == metric), "")

