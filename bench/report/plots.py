"""The report's plots, drawn with matplotlib (Agg) from the derived series of a run.

Each ``plot_*`` function takes a :class:`Context` and returns a Figure, or None when
the run has no data for it (the report then says so instead of drawing an empty
frame). Time runs along x in seconds since the load started, so every plot of a
report lines up with the others and with the event markers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..analysis.bottleneck import capacities
from ..analysis.common import RunData
from ..analysis.requests import ok_mask
from ..analysis.series import Series

WIDTH = 11.0
DPI = 90
EVENT_COLOURS = {"phase": "#555555", "fault": "#d62728", "recovery": "#2ca02c", "integrity": "#8b0000"}
ROLE_ORDER = ("host", "loadgen", "frontend", "backend", "monolith", "keepalived", "node", "server")


@dataclass
class Context:
    """What a plot needs: the run's data and series, the time origin and the steady window."""

    data: RunData
    series: Series
    summary: dict[str, Any]
    t0: float
    window: tuple[float, float]
    xlim: tuple[float, float] = (-1.0, 1.0)

    def rel(self, t: pd.Series | np.ndarray | float) -> Any:
        """Epoch seconds -> seconds since the load started."""
        return np.asarray(t, dtype=float) - self.t0 if not isinstance(t, float) else t - self.t0


def make_context(data: RunData, series: Series, summary: dict[str, Any]) -> Context:
    """A plot context; the time origin is the start of the load (or the first sample)."""
    load = data.run.get("load_window") or {}
    t0 = load.get("start")
    if t0 is None:
        starts = [float(df["t"].min()) for df in series.frames().values() if not df.empty]
        t0 = min(starts) if starts else 0.0
    end = load.get("end")
    if end is None:
        ends = [float(df["t"].max()) for df in series.frames().values() if not df.empty]
        end = max(ends) if ends else float(t0)
    return Context(data, series, summary, float(t0), data.window, (-1.0, float(end) - float(t0) + 1.5))


#: Points one line keeps: two per pixel of the figure's width. A longer series (a long run's
#: 100 ms or per-second values) is drawn as the minimum and maximum of each run of points, so
#: every spike and dip stays visible and the drawing costs the same at any run length.
MAX_POINTS = 2 * int(WIDTH * DPI)
#: A line with more points than this is drawn without markers (they would merge into a band).
MARKER_POINTS = 300


def envelope(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` thinned to the minimum and maximum ``y`` of ``buckets`` runs of consecutive points, in order.

    A run with no value (all NaN) keeps one NaN, so a gap in the data stays a gap in the line.
    """
    n = x.size
    k = -(-n // buckets)
    rows = -(-n // k)
    pad = rows * k - n
    yy = np.concatenate([y, np.full(pad, np.nan)]).reshape(rows, k)
    empty = np.isnan(yy).all(axis=1)
    lo = np.argmin(np.where(np.isnan(yy), np.inf, yy), axis=1)
    hi = np.argmax(np.where(np.isnan(yy), -np.inf, yy), axis=1)
    base = np.arange(rows) * k
    idx = np.sort(np.unique(np.concatenate([base + lo, base + hi])))
    idx = idx[idx < n]
    gaps = base[empty]
    keep = np.union1d(idx, gaps[gaps < n])
    xs, ys = x[keep], y[keep].copy()
    ys[np.isin(keep, gaps)] = np.nan
    return xs, ys


def _line(ax: Axes, x: Any, y: Any, *args: Any, **kw: Any) -> Any:
    """``ax.plot`` of one series, thinned to :data:`MAX_POINTS` (see :func:`envelope`), markers only on short ones."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size > MARKER_POINTS:
        kw.pop("marker", None)
        kw.pop("ms", None)
    if x.size > MAX_POINTS:
        x, y = envelope(x, y, MAX_POINTS // 2)
    return ax.plot(x, y, *args, **kw)


def _sec(ctx: Context, t: pd.Series) -> Any:
    """x of a per-second value: the middle of its second."""
    return ctx.rel(t) + 0.5


def _decorate(ax: Axes, ctx: Context, labels: bool = False) -> None:
    """Steady-window shading, phase/fault/recovery markers, VIP holder changes, the common x range."""
    ax.set_xlim(*ctx.xlim)
    s, e = ctx.window
    if e > s:
        ax.axvspan(ctx.rel(s), ctx.rel(e), color="#2ca02c", alpha=0.06, lw=0, label="steady window" if labels else None)
    for ev in ctx.data.events.itertuples():
        colour = EVENT_COLOURS.get(ev.kind, "#555555")
        x = ctx.rel(float(ev.t))
        ax.axvline(x, color=colour, lw=1.2, ls="--" if ev.kind == "phase" else "-", alpha=0.8)
        if labels:
            ax.annotate(f"{ev.kind}: {ev.name}", (x, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=7, color=colour)
    ps = ctx.series.per_second
    if ps["vip_holder"].notna().any():
        h = ps[["t", "vip_holder"]].dropna()
        changed = h["vip_holder"].ne(h["vip_holder"].shift()) & h.index.to_series().gt(h.index.min())
        for row in h[changed].itertuples():
            x = ctx.rel(float(row.t)) + 0.5
            ax.axvline(x, color="#9467bd", lw=1.5, alpha=0.9)
            if labels:
                ax.annotate(f"VIP -> {row.vip_holder or 'none'}", (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, va="bottom", ha="left", fontsize=7, color="#9467bd")


def _legend(ax: Axes) -> None:
    """A legend outside the plot, on the right, so it never hides a line."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0.0)


def _margins(fig: Figure, height: float, left_in: float = 0.9, right_in: float = 2.4) -> None:
    """Fixed margins in inches (a layout engine costs more time than all the drawing); legends go in the right margin."""
    fig.subplots_adjust(left=left_in / WIDTH, right=1.0 - right_in / WIDTH, top=1.0 - 0.3 / height, bottom=0.5 / height, hspace=0.4)


def _figure(rows: int, height_per_row: float = 2.2) -> tuple[Figure, list[Axes]]:
    height = max(2.5, rows * height_per_row)
    fig, axes = plt.subplots(rows, 1, figsize=(WIDTH, height), sharex=True, squeeze=False)
    _margins(fig, height)
    return fig, list(axes[:, 0])


def plot_requests(ctx: Context) -> Figure | None:
    """Request rate (successes and errors, 100 ms bins scaled to per second), error share and latency percentiles."""
    tl = ctx.series.timeline
    ps = ctx.series.per_second
    if tl.empty:
        return None
    fig, (ax_rate, ax_err, ax_lat) = _figure(3, 2.4)
    x = ctx.rel(tl["t"]) + 0.05
    scale = 1.0 / 0.1
    _line(ax_rate, x, tl["ok"] * scale, lw=0.6, color="#1f77b4", alpha=0.45, label="successes/s (100 ms bins)")
    if ps["ok"].notna().any():
        _line(ax_rate, _sec(ctx, ps["t"]), ps["ok"], lw=1.6, color="#1f77b4", marker=".", ms=4, label="successes/s (per second)")
    if ps["req_rate"].notna().any():
        _line(ax_rate, _sec(ctx, ps["t"]), ps["req_rate"], lw=1.2, color="#ff7f0e", ls="--", marker="x", ms=4, label="HAProxy req_rate (client frontends)")
    pacing = ctx.data.table("pacing")
    if not pacing.empty:
        # the load model's schedule: what the target asked for, per second (all processes)
        load = (ctx.data.run.get("scenario") or {}).get("load") or {}
        per = 1 if load.get("model") == "open" else max(int(load.get("requests_per_connection") or 1), 1)
        due = pacing.groupby("t")["due"].sum()
        label = "target (the schedule's sends due/s)" if per == 1 else f"target ({per} x connections due/s)"
        ax_rate.step(ctx.rel(due.index.to_series()) + 0.5, due.to_numpy() * per, where="mid", lw=1.2, color="#2ca02c", label=label)
    ax_rate.set_ylabel("requests/s")
    ax_rate.set_ylim(bottom=0)
    _legend(ax_rate)
    _decorate(ax_rate, ctx, labels=True)

    _line(ax_err, x, tl["errors"] * scale, lw=0.8, color="#d62728", alpha=0.6, label="errors/s (100 ms bins)")
    if ps["errors"].notna().any():
        _line(ax_err, _sec(ctx, ps["t"]), ps["errors"], lw=1.6, color="#d62728", marker=".", ms=4, label="errors/s (per second)")
    total, errors = int(tl["requests"].sum()), int(tl["errors"].sum())
    by_kind = ", ".join(f"{k} {v}" for k, v in ctx.summary["errors"]["by_kind"].items())
    ax_err.set_title(f"errors: {errors} of {total} requests ({100.0 * errors / max(total, 1):.2f}%){': ' + by_kind if by_kind else ''}", fontsize=9, loc="left")
    ax_err.set_ylabel("errors/s")
    ax_err.set_ylim(bottom=0, top=max(1.0, float((tl["errors"] * scale).max()) * 1.1))
    _legend(ax_err)
    _decorate(ax_err, ctx)

    colours = {"p50_ms": "#2ca02c", "p90_ms": "#1f77b4", "p99_ms": "#ff7f0e", "p999_ms": "#d62728"}
    plotted = False
    for col, colour in colours.items():
        if ps[col].notna().any():
            _line(ax_lat, _sec(ctx, ps["t"]), ps[col], lw=1.4, color=colour, label=col.replace("_ms", "") + " (per second)", marker=".", ms=3)
            plotted = True
    if tl["p99_ms"].notna().any():
        _line(ax_lat, x, tl["p99_ms"], lw=0.5, color="#ff7f0e", alpha=0.35, label="p99 (100 ms bins)")
        plotted = True
    if plotted:
        ax_lat.set_yscale("log")
        ax_lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        # label the minor ticks at 2x and 5x only, so a wide range stays readable
        ax_lat.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax_lat.tick_params(axis="y", which="minor", labelsize=7)
        lo, hi = ax_lat.get_ylim()
        if lo > 0 and hi / lo < 10:  # less than a decade: label every minor tick, or the axis shows no number at all
            ax_lat.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        _legend(ax_lat)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("seconds since load start")
    _decorate(ax_lat, ctx)
    return fig


def _cpu_rows(cpu: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(container, role, core) rows of the heatmap: per-core rows where known, else the total."""
    rows = []
    meta = cpu.drop_duplicates(["container", "cpu"])[["container", "role", "cpu"]]
    for container, g in meta.groupby("container", sort=False):
        role = str(g["role"].iloc[0])
        cores = sorted(c for c in g["cpu"] if c >= 0)
        for c in cores or [-1]:
            rows.append((str(container), role, int(c)))
    order = {r: i for i, r in enumerate(ROLE_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r[1], len(order)), r[0], r[2]))


def plot_cpu_heatmap(ctx: Context) -> Figure | None:
    """CPU per core over time: one heatmap row per container and core, % of one core."""
    cpu = ctx.series.cpu
    if cpu.empty:
        return None
    rows = _cpu_rows(cpu)
    sec = np.floor(cpu["t"].to_numpy(dtype=float))
    t_first, t_last = sec.min(), sec.max()
    n = int(t_last - t_first) + 1
    grid = np.full((len(rows), n), np.nan)
    d = cpu.assign(sec=(sec - t_first).astype(int))
    for i, (container, _role, core) in enumerate(rows):
        r = d[(d["container"] == container) & (d["cpu"] == core)]
        if not r.empty:
            vals = r.groupby("sec")["pct"].mean()
            grid[i, vals.index.to_numpy()] = vals.to_numpy()
    height = max(3.0, 0.22 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(WIDTH, height))
    _margins(fig, height, left_in=1.6, right_in=1.2)
    extent = (ctx.rel(t_first), ctx.rel(t_first + n), len(rows) - 0.5, -0.5)
    cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="#f0f0f0")
    im = ax.imshow(np.clip(grid, 0, 100), aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=100, extent=extent)
    labels = [f"{c} {'cpu' + str(k) if k >= 0 else 'total'}" for c, _r, k in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlim(*ctx.xlim)
    ax.set_xlabel("seconds since load start")
    cb = fig.colorbar(im, ax=ax, pad=0.015, fraction=0.04)
    cb.set_label("% of one core (total rows clipped at 100)")
    for ev in ctx.data.events.itertuples():
        ax.axvline(ctx.rel(float(ev.t)), color=EVENT_COLOURS.get(ev.kind, "#555555"), lw=1.2)
    s, e = ctx.window
    for edge in (s, e):
        ax.axvline(ctx.rel(edge), color="#2ca02c", lw=1, ls=":")
    return fig


def plot_cpu_totals(ctx: Context) -> Figure | None:
    """CPU of each container over time (sum over its cores), one panel per role, against the cores it may use."""
    cpu = ctx.series.cpu
    if cpu.empty:
        return None
    tot = cpu[cpu["cpu"] == -1]
    roles = [r for r in ROLE_ORDER if r in set(tot["role"])] + sorted(set(tot["role"]) - set(ROLE_ORDER))
    caps = capacities(ctx.data.run)  # what each role's container may use
    fig, axes = _figure(len(roles), 1.8)
    for ax, role in zip(axes, roles, strict=True):
        for container, g in tot[tot["role"] == role].groupby("container"):
            _line(ax, ctx.rel(g["t"]), g["pct"], lw=1.2, label=str(container))
        if role in caps:
            ax.axhline(100.0 * caps[role], color="#d62728", lw=1.0, ls=":", label=f"limit: {caps[role]:g} core(s)")
        ax.set_ylabel(f"{role}\n% of a core", fontsize=8)
        ax.set_ylim(bottom=0)
        _legend(ax)
        _decorate(ax, ctx)
    axes[-1].set_xlabel("seconds since load start")
    return fig


def plot_ports(ctx: Context) -> Figure | None:
    """Ephemeral ports in use per (source address -> destination) pair, per LB node, against ip_local_port_range; the first exhaustion is marked."""
    ports = ctx.series.ports
    if ports.empty:
        return None
    nodes = sorted(ports["node"].unique())
    fig, axes = _figure(len(nodes), 2.8)
    first = (ctx.summary.get("ports") or {}).get("first_exhaustion_at")
    for ax, node in zip(axes, nodes, strict=True):
        d = ports[ports["node"] == node]
        limit = float(d["range_size"].max())
        groups = list(d.groupby(["src", "dst", "dport"]))
        colours = plt.get_cmap("tab20" if len(groups) > 10 else "tab10")
        for i, ((src, dst, dport), g) in enumerate(groups):
            line = _line(ax, ctx.rel(g["t"]), g["in_use"], lw=1.4, color=colours(i % colours.N), label=f"{src} -> {dst}:{dport}")[0]
            if g["time_wait"].max() > 0:
                _line(ax, ctx.rel(g["t"]), g["time_wait"], lw=0.8, ls="--", color=line.get_color(), label=f"{src} -> {dst}:{dport} TIME_WAIT")
        ax.axhline(limit, color="black", lw=1.6, ls="--", label=f"limit {limit:.0f} (ip_local_port_range)")
        if first is not None:
            ax.axvline(ctx.rel(float(first)), color="black", lw=1.2, ls=":", label="first exhaustion")
        peak = d["in_use"].max()
        if peak >= 0.1 * limit:  # near the limit a linear axis shows the plateau plainly
            ax.set_ylim(0, limit * 1.15)
        else:  # far below it, symlog keeps both the few ports in use and the limit visible
            ax.set_yscale("symlog", linthresh=10)
            ax.set_ylim(0, limit * 2)
        ax.set_ylabel(f"{node}\nports", fontsize=8)
        ax.set_title(f"{node}: peak {peak:.0f} of {limit:.0f} ports of one source -> destination pair ({100 * peak / limit:.2f}%)", fontsize=9, loc="left")
        _legend(ax)
        _decorate(ax, ctx)
    axes[-1].set_xlabel("seconds since load start")
    return fig


def plot_connections(ctx: Context) -> Figure | None:
    """Established connections per hop (HAProxy sessions, solid; kernel ESTABLISHED sockets, dashed), new connections and full TLS handshakes per second."""
    ps = ctx.series.per_second
    hops = {"client": ("client -> frontend", "#1f77b4"), "frontend_backend": ("frontend -> backend", "#ff7f0e"), "backend_server": ("backend -> server", "#2ca02c")}
    rates = {"conn_rate": ("new connections/s (HAProxy)", "-", "o"), "ssl_key_rate": ("full TLS handshakes/s", "--", "x"), "conn_new": ("new connections/s (client)", ":", "s")}
    cols = [*hops, *(f"{h}_sockets" for h in hops), *rates]
    if not any(ps[c].notna().any() for c in cols):
        return None
    fig, (ax, ax_rate) = _figure(2, 2.6)
    x = _sec(ctx, ps["t"])
    for col, (label, colour) in hops.items():
        if ps[col].notna().any():
            _line(ax, x, ps[col], lw=1.5, color=colour, label=f"{label} (scur)", marker=".", ms=3)
        if ps[f"{col}_sockets"].notna().any():
            _line(ax, x, ps[f"{col}_sockets"], lw=1.2, ls="--", color=colour, label=f"{label} (sockets)")
    ax.set_ylabel("established")
    ax.set_ylim(bottom=0)
    _legend(ax)
    _decorate(ax, ctx, labels=True)
    for col, (label, ls, marker) in rates.items():
        if ps[col].notna().any():
            _line(ax_rate, x, ps[col], lw=1.2, ls=ls, marker=marker, ms=4, label=label)
    ax_rate.set_ylabel("per second")
    ax_rate.set_ylim(bottom=0)
    ax_rate.set_xlabel("seconds since load start")
    if ax_rate.lines:
        _legend(ax_rate)
    _decorate(ax_rate, ctx)
    return fig


def plot_traffic(ctx: Context) -> Figure | None:
    """Traffic in and out of the LB nodes, on the client and on the server network (Mbit/s)."""
    ps = ctx.series.per_second
    cols = ["client_in_mbps", "client_out_mbps", "server_in_mbps", "server_out_mbps"]
    if not any(ps[c].notna().any() for c in cols):
        return None
    fig, axes = _figure(2, 2.2)
    x = _sec(ctx, ps["t"])
    for ax, network in zip(axes, ("client", "server"), strict=True):
        _line(ax, x, ps[f"{network}_in_mbps"], lw=1.4, label="in (received by the LB)")
        _line(ax, x, ps[f"{network}_out_mbps"], lw=1.4, label="out (sent by the LB)")
        ax.set_ylabel(f"{network} network\nMbit/s", fontsize=8)
        ax.set_ylim(bottom=0)
        _legend(ax)
        _decorate(ax, ctx)
    axes[-1].set_xlabel("seconds since load start")
    return fig


FAILOVER_BEFORE_S = 3.0
FAILOVER_AFTER_MIN_S = 8.0
HOLDER_COLOURS = {"lb-a": "#1f77b4", "lb-b": "#ff7f0e"}


def _holding(ctx: Context, node: str, t_from: float, t_to: float) -> list[tuple[float, float]]:
    """(start, width) spans in which ``node``'s namespace held the VIP, from the 1 Hz ``vrrp`` samples.

    A sample stands until the next one. A frozen or cut-off node still has
    the address configured, so during such a fault both nodes may show it: what
    the clients reach then depends on the host's ARP cache.
    """
    vrrp = ctx.data.table("vrrp")
    if vrrp.empty:
        return []
    d = vrrp[(vrrp["node"] == node) & (vrrp["t"] >= t_from - 3.0) & (vrrp["t"] <= t_to)].sort_values("t")
    times = d["t"].to_numpy(dtype=float)
    holds = d["holds_vip"].to_numpy(dtype=bool)
    spans = []
    for k, (t, held) in enumerate(zip(times, holds, strict=True)):
        if not held:
            continue
        # a sample holds until the next one (the collector can be late while a node is frozen), at most 3 s
        nxt = times[k + 1] if k + 1 < len(times) else t + 1.0
        a, b = max(t, t_from), min(nxt, t + 3.0, t_to)
        if b > a:
            spans.append((a, b - a))
    return spans


def plot_failover(ctx: Context) -> Figure | None:
    """Around each injected fault (x = seconds since the injection): successful responses and errors per 100 ms, p99 latency, and who held the VIP."""
    faults = (ctx.summary.get("failover") or {}).get("events") or []
    if not faults:
        return None
    req = ctx.data.requests
    longest = max((f.get("gap_s") or 0.0) for f in faults)
    after = max(FAILOVER_AFTER_MIN_S, longest + 4.0)
    fig, (ax_ok, ax_err, ax_lat, ax_vip) = _figure(4, 2.0)
    # by completion time, sorted once: each fault then looks at its own few seconds only
    lat = req["latency_ms"].to_numpy(dtype=float)
    done = req["t"].to_numpy(dtype=float) + lat / 1000.0
    order = np.argsort(done, kind="stable")
    done, ok, lat = done[order], ok_mask(req)[order], lat[order]
    bins = np.arange(-FAILOVER_BEFORE_S, after + 1e-9, 0.1)
    cmap = plt.get_cmap("tab10")
    nodes = sorted(set(ctx.data.table("vrrp")["node"]) | {"lb-a"})
    band = 0.8 / len(nodes)
    logged = ctx.data.table("vrrp_events")
    masters = logged[logged["state"] == "MASTER"]
    for i, f in enumerate(faults):
        t0 = float(f["injected_at"])
        colour = cmap(i % 10)
        label = f"#{f['id']} {f['kind']} on {f.get('node') or f.get('target')}"
        near = slice(int(np.searchsorted(done, t0 + bins[0], side="left")), int(np.searchsorted(done, t0 + bins[-1], side="right")))
        rel, ok_near, lat_near = done[near] - t0, ok[near], lat[near]
        sel = (rel >= bins[0]) & (rel < bins[-1])
        n_ok, _ = np.histogram(rel[sel & ok_near], bins=bins)
        n_err, _ = np.histogram(rel[sel & ~ok_near], bins=bins)
        ax_ok.step(bins[:-1], n_ok * 10, where="post", lw=1.1, color=colour, label=label)
        ax_err.step(bins[:-1], n_err * 10, where="post", lw=1.1, color=colour)
        idx = np.digitize(rel[sel & ok_near], bins) - 1
        if idx.size:
            p99 = np.full(bins.size - 1, np.nan)  # NaN where no success: the line breaks over the gap
            q = pd.Series(lat_near[sel & ok_near]).groupby(idx).quantile(0.99)
            p99[q.index.to_numpy()] = q.to_numpy()
            ax_lat.plot(bins[:-1] + 0.05, p99, lw=1.0, color=colour)
        for j, node in enumerate(nodes):
            y = i - 0.4 + j * band
            h = band * 0.9
            spans = [(a - t0, w) for a, w in _holding(ctx, node, t0 + bins[0], t0 + bins[-1])]
            ax_vip.broken_barh(spans, (y, h), color=HOLDER_COLOURS.get(node, "#999999"))
            if len(masters):
                became = masters[(masters["node"] == node) & (masters["t"] >= t0 + bins[0]) & (masters["t"] <= t0 + bins[-1])]
                ax_vip.plot(became["t"].to_numpy(dtype=float) - t0, [y + h / 2] * len(became), "v", color="black", ms=5)
        for ax in (ax_ok, ax_err, ax_lat):
            if f.get("gap_s") is not None:
                ax.axvspan(0, f["gap_s"], color=colour, alpha=0.05, lw=0)
    expected = faults[0].get("expected_vip_move_s")
    for ax in (ax_ok, ax_err, ax_lat, ax_vip):
        ax.axvline(0, color=EVENT_COLOURS["fault"], lw=1.4)
        if expected:
            ax.axvspan(expected[0], expected[1], color="#9467bd", alpha=0.12, lw=0, label="VIP move expected" if ax is ax_ok else None)
        ax.set_xlim(bins[0], bins[-1])
    ax_ok.set_ylabel("successes/s\n(100 ms bins)", fontsize=8)
    ax_err.set_ylabel("errors/s\n(100 ms bins)", fontsize=8)
    ax_lat.set_ylabel("p99 latency\n(ms)", fontsize=8)
    ax_lat.set_yscale("log")
    ax_vip.set_ylabel("VIP held by", fontsize=8)
    ax_vip.set_yticks(range(len(faults)), [f"#{f['id']}" for f in faults], fontsize=7)
    ax_vip.set_ylim(-0.6, len(faults) - 0.4)
    ax_vip.invert_yaxis()
    for holder in ("lb-a", "lb-b"):
        ax_vip.bar(0, 0, color=HOLDER_COLOURS[holder], label=f"{holder} holds the VIP (1 s samples)")
    ax_vip.plot([], [], "v", color="black", ms=5, label="entered MASTER (keepalived log)")
    _legend(ax_ok)
    _legend(ax_vip)
    ax_vip.set_xlabel("seconds since the injection (shaded: the gap without a successful response)")
    return fig


def plot_failover_distribution(ctx: Context) -> Figure | None:
    """Distribution over repeated faults of each kind: failover gap, VIP move and recovery, with the window VRRP's timers predict."""
    by_kind = (ctx.summary.get("failover") or {}).get("by_kind") or {}
    faults = (ctx.summary.get("failover") or {}).get("events") or []
    if len(faults) < 2:
        return None
    figures = [("gap_s", "gap without success (s)"), ("vip_moved_after_s", "VIP moved after (s)"), ("recovered_after_s", "back to 95 % after (s)")]
    kinds = sorted(by_kind)
    fig, axes = plt.subplots(1, len(figures), figsize=(WIDTH, 2.2 + 0.35 * len(kinds)), squeeze=False)
    fig.subplots_adjust(left=0.14, right=0.98, bottom=0.25, top=0.78, wspace=0.35)
    rng = np.random.default_rng(0)  # jitter only, for legibility
    for ax, (key, title) in zip(axes[0], figures, strict=True):
        for y, kind in enumerate(kinds):
            vals = np.asarray([f[key] for f in faults if f["kind"] == kind and f.get(key) is not None], dtype=float)
            if vals.size:
                ax.scatter(vals, y + rng.uniform(-0.15, 0.15, vals.size), s=18, color="#1f77b4", zorder=3)
                ax.plot([np.median(vals)] * 2, [y - 0.3, y + 0.3], color="#d62728", lw=2, zorder=4)
            window = (by_kind.get(kind) or {}).get("expected_vip_move_s")
            if key == "vip_moved_after_s" and window:
                ax.barh(y, window[1] - window[0], left=window[0], height=0.7, color="#9467bd", alpha=0.15, lw=0)
        ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
        ax.set_ylim(-0.6, len(kinds) - 0.4)
        ax.set_title(title, fontsize=9)
        right = max([f[key] for f in faults if f.get(key) is not None] + [w[1] for k in kinds if key == "vip_moved_after_s" and (w := (by_kind.get(k) or {}).get("expected_vip_move_s"))] + [1.0])
        ax.set_xlim(0, right * 1.15)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("dots: each fault; red bar: median; shaded: expected VIP-move window", fontsize=8, y=0.97)
    return fig


def plot_latency_distribution(ctx: Context) -> Figure | None:
    """Latency of successful requests in the steady window: CDF and percentile spectrum (also as an HdrHistogram log in derived/latency.hlog)."""
    from ..analysis.requests import merged_histogram
    from ..results.histogram import Histogram, buckets_of
    from .latency import plot_distribution

    hist = merged_histogram(ctx.data.latency_hist, ctx.window)
    corrected = None
    req = ctx.data.requests
    if not req.empty and "latency_corrected_ms" in req and req["latency_corrected_ms"].notna().any():
        s, e = ctx.window
        ok = req[(req["t"] >= s) & (req["t"] < e) & (req["error"] == "")]["latency_corrected_ms"].dropna()
        if not ok.empty:
            b, n = np.unique(buckets_of(ok.to_numpy(dtype=float)), return_counts=True)
            corrected = Histogram(dict(zip(b.tolist(), n.tolist(), strict=True)))
    return plot_distribution(hist, corrected)


HOP_COLOURS = {
    "client_frontend": "#1f77b4",
    "frontend_backend": "#9467bd",
    "queue": "#d62728",
    "connect": "#ff7f0e",
    "backend_server": "#8c564b",
    "server": "#2ca02c",
}
HOP_LABELS = {
    "client_frontend": "client <-> frontend (network, TLS, client)",
    "frontend_backend": "frontend process <-> backend process",
    "queue": "queue for a server connection (Tw)",
    "connect": "connect to the server (Tc)",
    "backend_server": "backend process <-> server",
    "server": "server's own time",
}


def plot_decomposition(ctx: Context) -> Figure | None:
    """Where each millisecond of a traced request went: per hop over time (means, stacked) and per hop p50 / p90 / p99."""
    from ..analysis.decomposition import PARTS, per_second, traced_hops

    d = traced_hops(ctx.data)
    if d.empty:
        return None
    split = bool(d.attrs.get("split", True))
    parts = [h for h in PARTS if split or h != "frontend_backend"]
    height = 6.4
    fig, (ax_t, ax_h) = plt.subplots(2, 1, figsize=(WIDTH, height), gridspec_kw={"height_ratios": [1.1, 1.0]})
    _margins(fig, height, left_in=2.6, right_in=2.6)
    fig.subplots_adjust(hspace=0.55)
    ps = per_second(d)
    x = _sec(ctx, ps["t"])
    ax_t.stackplot(x, *[ps[h].clip(lower=0) for h in parts], colors=[HOP_COLOURS[h] for h in parts], labels=[HOP_LABELS[h] for h in parts], alpha=0.8, step="mid")
    ax_t.plot(x, ps["latency_ms"], color="black", lw=1.0, ls="--", label="client latency (mean)")
    ax_t.set_ylabel("ms (mean per second)")
    ax_t.set_ylim(bottom=0)
    ax_t.set_title(f"{len(d)} traced requests, the hops of each adding up to its client latency", fontsize=9, loc="left")
    _legend(ax_t)
    _decorate(ax_t, ctx)
    ax_t.set_xlabel("seconds since load start")

    rows = [*parts, "lb_added", "latency_ms"]
    names = [HOP_LABELS.get(h, h) for h in parts] + ["load balancer added (no queue)", "client latency"]
    y = np.arange(len(rows))[::-1]
    lo = 0.02  # ms: the left edge of the log axis; smaller values (HAProxy's whole-ms Tw and Tc are often 0) sit on it
    for yi, h in zip(y, rows, strict=True):
        p50, p90, p99 = np.percentile(d[h].astype(float).to_numpy(), [50, 90, 99])
        at = lambda v: max(float(v), lo)  # noqa: E731
        colour = HOP_COLOURS.get(h, "#444444")
        ax_h.barh(yi, at(p50), color=colour, alpha=0.8, height=0.6, label="p50" if h == rows[0] else None)
        ax_h.plot([at(p50), at(p99)], [yi, yi], color=colour, lw=1.2)
        ax_h.plot(at(p90), yi, marker="|", ms=12, color="black", label="p90" if h == rows[0] else None)
        ax_h.plot(at(p99), yi, marker="x", ms=6, color="black", label="p99" if h == rows[0] else None)
        ax_h.text(at(p99) * 1.15, yi, f"{p50:.3g} / {p90:.3g} / {p99:.3g} ms", va="center", fontsize=7)
    ax_h.set_yticks(y, names, fontsize=8)
    ax_h.set_xscale("log")
    ax_h.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax_h.set_xlabel(f"ms per request (log; below {lo:g} ms drawn at {lo:g}): bar p50, | p90, x p99")
    ax_h.set_xlim(left=lo, right=float(d["latency_ms"].quantile(0.99)) * 8)
    _legend(ax_h)
    return fig


#: Plots drawn only when the run has what they show (faults, traced requests); absent otherwise.
OPTIONAL_PLOTS = frozenset({"failover", "failover_distribution", "decomposition"})


@dataclass
class Plot:
    """One plot of the report: file stem, title, what it shows, and its PNG (None: no data)."""

    name: str
    title: str
    caption: str
    png: bytes | None


PLOTS: list[tuple[str, str, Callable[[Context], Figure | None]]] = [
    ("requests", "Requests, errors and latency", plot_requests),
    ("latency_distribution", "Latency distribution", plot_latency_distribution),
    ("decomposition", "Where the latency went (traced requests)", plot_decomposition),
    ("cpu_cores", "CPU per core", plot_cpu_heatmap),
    ("cpu_containers", "CPU per process", plot_cpu_totals),
    ("ports", "Ephemeral ports", plot_ports),
    ("connections", "Connections", plot_connections),
    ("traffic", "Traffic", plot_traffic),
    ("failover", "Failover timeline", plot_failover),
    ("failover_distribution", "Failover distribution", plot_failover_distribution),
]


def render_plots(ctx: Context, out_dir: Path | None = None, names: Collection[str] | None = None) -> list[Plot]:
    """Draw every plot (only those in ``names`` if given); with ``out_dir``, also write ``<name>.png`` there (stale PNGs of empty plots are removed)."""
    import io

    plots = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name, title, fn in PLOTS:
        if names is not None and name not in names:
            continue
        fig = fn(ctx)
        png = None
        if fig is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
            plt.close(fig)
            png = buf.getvalue()
        if out_dir is not None:
            path = out_dir / f"{name}.png"
            if png is not None:
                path.write_bytes(png)
            elif path.exists():
                path.unlink()
        plots.append(Plot(name, title, (fn.__doc__ or "").strip().splitlines()[0], png))
    return plots
