"""The capacity model on the terminal and as a page: cost per operation, predictions, prediction vs measurement.

Both are rendered from ``capacity.json`` alone (:func:`render_terminal`,
:func:`render_html`); the page (``report.html`` in the capacity folder) adds a plot of
measured against fitted cores per step and role, and the step table.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

REPORT_HTML = "report.html"
#: What the reference comparison always says.
OTHER_CPU = "cores of another CPU differ (clock, generation, AES-NI, OpenSSL version): a ratio, not a promise"


def fmt(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits (no exponent for everyday magnitudes).

    >>> fmt(0.000123456), fmt(12345.6), fmt(None), fmt(2.0)
    ('0.000123', '12346', '-', '2')
    """
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(digits - 1 - mag, 0)
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _iv(d: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    return f"{fmt(d['estimate'] * scale, digits)} ({fmt(d['low'] * scale, digits)}-{fmt(d['high'] * scale, digits)})"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f} %"


def cost_rows(doc: dict[str, Any]) -> list[list[str]]:
    """role, operation, cost (interval), unit, what it is."""
    rows = []
    for rc in doc["costs"]:
        for c in rc["costs"]:
            rows.append([rc["role"], c["operation"], f"{fmt(c['estimate'])} ({fmt(c['low'])} to {fmt(c['high'])})", c["unit"], c["doc"]])
    return rows


def fit_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for rc in doc["costs"]:
        f = rc["model"]["fit"]
        rows.append(
            [
                rc["role"], str(f["steps"]), str(f["df"]), fmt(f["r2"], 4), fmt(f["rmse"]), fmt(f["max_rel_residual_pct"], 2),
                ", ".join(rc["model"]["dropped"]) or "-",
            ]
        )  # fmt: skip
    return rows


def memory_rows(doc: dict[str, Any]) -> list[list[str]]:
    return [[m["role"], c["operation"], f"{fmt(c['estimate'])} ({fmt(c['low'])} to {fmt(c['high'])})", c["unit"]] for m in doc["memory"] for c in m["costs"]]


def prediction_rows(p: dict[str, Any]) -> list[list[str]]:
    """One row per resource: need (interval), have, headroom (at the pessimistic end)."""
    rows = []
    for role, iv in p["cores"].items():
        rows.append([f"cores: {role}", _iv(iv), "", "", ""])
    for r in p["resources"]:
        scale = 1e-9 if r["unit"] == "bytes" else 1.0
        unit = "GB" if r["unit"] == "bytes" else r["unit"]
        have = "-" if r["have"] is None else fmt(r["have"] * scale)
        head = "-" if r["headroom"] is None else f"{fmt(r['headroom'], 2)}x ({fmt(r['headroom_low'], 2)}x)"
        mark = " <- first" if r["name"] == p["first_limit"] else ""
        rows.append([r["name"] + mark, _iv(r["need"], scale), have, unit, head])
    return rows


def reference_lines(p: dict[str, Any]) -> list[str]:
    ref = p.get("reference")
    if not ref:
        return []
    m, r = ref["model"], ref["ratio"]
    return [
        f"original figure: {ref['text']} = {fmt(ref['cores'])} cores of a {ref['cpu']}",
        (f"this model, {ref['role']} role, same profile: {_iv(m)} cores of this machine's CPU = {fmt(r['estimate'], 2)}x ({fmt(r['low'], 2)}-{fmt(r['high'], 2)}x) the original's"),
        OTHER_CPU,
    ]


def validation_rows(v: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in [*v["roles"], v["total"]]:
        rows.append(
            [
                c["role"], fmt(c["measured"]), _iv(c["predicted"]), _pct(c["error_pct"]),
                _iv(c["predicted_at_measured_rates"]), _pct(c["error_at_measured_rates_pct"]), "yes" if c["within_interval"] else "no",
            ]
        )  # fmt: skip
    return rows


def validation_lines(v: dict[str, Any]) -> list[str]:
    t = v["total"]
    o = v["what_else_ran"]
    verdict = "within" if v["within_tolerance"] else "NOT within"
    return [
        (
            f"validation run {v['run_dir']} ({v['scenario']}, scale {fmt(v['scale'])}): load balancer total {fmt(t['measured'])} cores measured, "
            f"{_iv(t['predicted'])} predicted: {_pct(t['error_pct'])}, {verdict} {v['tolerance_pct']:g} %"
        ),
        "what else ran in that window (cores): " + ", ".join(f"{k.replace('_cores', '')} {fmt(val)}" for k, val in o.items() if val is not None),
    ]


VALIDATION_HEADER = ["role", "measured cores", "predicted (profile)", "error", "predicted (measured rates)", "error", "in interval"]
PREDICTION_HEADER = ["resource", "need (interval)", "have", "unit", "headroom (pessimistic)"]


def render_terminal(doc: dict[str, Any], console: Any = None) -> None:
    """Print costs, fit quality, memory, predictions and the validation with rich."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()

    def table(title: str, header: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> None:
        t = Table(title=Text(title), title_justify="left")
        for i, h in enumerate(header):
            t.add_column(Text(h), justify="right" if i in right else "left")
        for row in rows:
            t.add_row(*(Text(c) for c in row))
        console.print(t)

    level = f"{doc['level']:.0%}"
    table(f"cost per operation ({level} intervals; cores of {doc['machine'].get('cpu_model', '?')})", ["role", "operation", "cost", "unit", "what"], cost_rows(doc))
    table("fit", ["role", "steps", "df", "R²", "RMSE (cores)", "max |residual| %", "not measured"], fit_rows(doc), (1, 2, 3, 4, 5))
    if doc["memory"]:
        table("memory", ["role", "what", "estimate", "unit"], memory_rows(doc))
    for p in doc["predictions"]:
        print_prediction(p, console)
    v = doc.get("validation")
    if v:
        table("validation: predicted vs measured cores", VALIDATION_HEADER, validation_rows(v), (1, 3, 5))
        for line in validation_lines(v):
            console.print(line, highlight=False, markup=False)
    for n in doc["notes"]:
        console.print(f"note: {n}", style="dim", highlight=False, markup=False)


def print_prediction(p: dict[str, Any], console: Any = None) -> None:
    """One prediction: cores per role and every resource with its headroom, what runs out first, the reference figure."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    title = f"prediction: {p['profile']} on {p['machine'].get('name') or 'the given machine'} ({fmt(p['machine']['cores'])} cores, {fmt(p['machine']['memory_gb'])} GB)".replace(", - GB", "")
    if p.get("extrapolated"):
        title += " - EXTRAPOLATED far beyond the measured rates"
    t = Table(title=Text(title), title_justify="left")
    for i, h in enumerate(PREDICTION_HEADER):
        t.add_column(Text(h), justify="right" if i in (2, 4) else "left")
    for row in prediction_rows(p):
        t.add_row(*(Text(c) for c in row))
    console.print(t)
    lines = [
        (f"processes the file descriptors ask for: frontend {p['processes']['frontend']}, backend {p['processes']['backend']}; localhost addresses M: {p['processes'].get('local_addresses', 1)}"),
        f"runs out first: {p['first_limit']}",
        *reference_lines(p),
        *p["notes"],
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False)


def residual_plot(doc: dict[str, Any]) -> bytes | None:
    """Measured against fitted cores of every step, one panel per role (PNG)."""
    if not doc["residuals"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = sorted({r["role"] for r in doc["residuals"]})
    fig, axes = plt.subplots(1, len(roles), figsize=(4.2 * len(roles), 3.8), dpi=100, squeeze=False)
    for ax, role in zip(axes[0], roles, strict=True):
        rs = [r for r in doc["residuals"] if r["role"] == role]
        x = [r["fitted"] for r in rs]
        y = [r["measured"] for r in rs]
        top = max([*x, *y, 1e-3]) * 1.08
        ax.plot([0, top], [0, top], color="#999", linewidth=1)
        ax.scatter(x, y, s=14)
        v = doc.get("validation")
        if v:
            c = next((c for c in [*v["roles"], v["total"]] if c["role"] == role), None)
            if c:
                ax.scatter([c["predicted"]["estimate"]], [c["measured"]], marker="*", s=120, color="#d62728", label="validation run")
                ax.legend(fontsize="small", loc="upper left")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("fitted cores")
        ax.set_ylabel("measured cores")
        ax.set_title(role)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notes { color: #555; font-size: 13px; } .ok { color: #176f2c; } .bad { color: #b00020; }
"""

STEP_COLUMNS = (
    "step", "request", "connection", "handshake_full_ecdsa", "handshake_full_rsa", "handshake_resumed", "mb_in", "mb_out",
    "held_kconn", "server_connection", "cpu_frontend", "cpu_backend", "cpu_loadgen", "cpu_host", "error_pct", "excluded",
)  # fmt: skip


def _table(header: list[str], rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    e = html.escape
    out = ["<table><tr>", *(f"<th>{e(h)}</th>" for h in header), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="num">{e(c)}</td>' if i in numeric else f"<td>{e(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(doc: dict[str, Any], plot: bytes | None = None) -> str:
    """The report page (self-contained: the plot is embedded)."""
    e = html.escape
    m = doc["machine"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>bench capacity</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Capacity model</h1>",
        (
            f"<p>Sweep <code>{e(doc['sweep'])}</code> on {e(str(m.get('hostname')))} ({e(str(m.get('cpus')))} cores, {e(str(m.get('cpu_model')))}), "
            f"topology of scenario <code>{e(doc['scenario'])}</code>; intervals at {doc['level']:.0%}. Every cost is CPU of this machine's cores.</p>"
        ),
        "<h2>Cost per operation</h2>",
        _table(["role", "operation", "cost (interval)", "unit", "what"], cost_rows(doc)),
        ("<h2>Fit</h2><p>Cores per role = idle + cost x rate, over the sweep's steps (bench/capacity/fit.py). Residuals: measured - fitted.</p>"),
        _table(["role", "steps", "df", "R²", "RMSE (cores)", "max |residual| %", "not measured"], fit_rows(doc), (1, 2, 3, 4, 5)),
    ]
    if plot:
        data = base64.b64encode(plot).decode()
        caption = "measured against fitted cores per step; the star is the validation run (predicted from its profile)"
        parts.append(f'<figure><img alt="measured vs fitted cores" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>')
    if doc["memory"]:
        parts += ["<h2>Memory</h2>", _table(["role", "what", "estimate (interval)", "unit"], memory_rows(doc))]
    v = doc.get("validation")
    if v:
        parts += ["<h2>Prediction vs measurement</h2>", _table(VALIDATION_HEADER, validation_rows(v), (1, 3, 5))]
        cls = "ok" if v["within_tolerance"] else "bad"
        lines = validation_lines(v)
        parts.append(f'<p class="{cls}">{e(lines[0])}</p><p>{e(lines[1])}</p>')
    for p in doc["predictions"]:
        parts.append(f"<h2>Prediction: {e(p['profile'])}</h2>")
        if p.get("extrapolated"):
            parts.append('<p class="bad">Extrapolated far beyond the rates the sweep measured (see the notes below): a linear model past its data.</p>')
        parts.append(f"<p>On {e(p['machine'].get('name') or 'the given machine')}: {fmt(p['machine']['cores'])} cores, {fmt(p['machine']['memory_gb'])} GB memory, "
                     f"{p['machine']['fd_limit']:,} file descriptors per process, {p['machine']['port_range']:,} ephemeral ports.</p>")  # fmt: skip
        parts.append(_table(PREDICTION_HEADER, prediction_rows(p)))
        parts.append(f"<p>Runs out first: <b>{e(str(p['first_limit']))}</b>. Processes the file descriptors ask for: frontend {p['processes']['frontend']}, "
                     f"backend {p['processes']['backend']}; localhost addresses M: {p['processes'].get('local_addresses', 1)}.</p>")  # fmt: skip
        for line in reference_lines(p):
            parts.append(f"<p>{e(line)}</p>")
        if p["notes"]:
            parts.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in p["notes"]) + "</ul>")
    if doc["steps"]:
        parts.append("<h2>Steps</h2>")
        rows = [[fmt(s.get(c)) if isinstance(s.get(c), float) else str(s.get(c) or "") for c in STEP_COLUMNS] for s in doc["steps"]]
        parts.append(_table(list(STEP_COLUMNS), rows, tuple(range(1, len(STEP_COLUMNS) - 1))))
    parts.append('<h2>Notes</h2><ul class="notes">')
    parts += [f"<li>{e(n)}</li>" for n in doc["notes"]] or ["<li>none</li>"]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def write_report(folder: Path, doc: dict[str, Any]) -> Path:
    """Write ``report.html`` into the capacity folder."""
    path = Path(folder) / REPORT_HTML
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(doc, residual_plot(doc)))
    tmp.replace(path)
    return path
