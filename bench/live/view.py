"""The live view of a run in the terminal.

On a terminal (stderr is a TTY) a rich panel redrawn once a second; otherwise
(CI logs) one compact line every :data:`LINE_EVERY_S` seconds; ``--quiet``
shows nothing. It runs in a thread of the ``bench`` process and reads the run
directory (:class:`~bench.live.state.LiveState`): the load generator runs in
its own processes and never waits for it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # numpy, pyarrow and pandas: imported when a run is watched, not at `bench run`'s start
    from .state import LiveState, Snapshot

#: Seconds between redraws on a terminal.
REFRESH_S = 1.0
#: Seconds between compact lines when not on a terminal.
LINE_EVERY_S = 5.0
#: Fault and VIP events shown on the panel (the newest).
EVENTS_SHOWN = 5


def n(v: float | None, digits: int = 0) -> str:
    """A number with thousands separators (``-`` for none)."""
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def _unit(field: str | None) -> str:
    return {"requests_per_s": "req/s", "connections_per_s": "conn/s", "handshakes_per_s": "handshakes/s"}.get(field or "", "/s")


def _achieved(s: Snapshot) -> float | None:
    if s.target_field == "connections_per_s":
        return s.conn_new_per_s
    if s.target_field == "handshakes_per_s":
        return s.haproxy.get("SslRate") if s.haproxy else None
    return s.requests_per_s


def _event_text(s: Snapshot, ev: dict[str, Any]) -> str:
    at = f"{float(ev['t']) - (s.t - (s.elapsed_s or 0)):+.1f}s" if s.elapsed_s is not None else ""
    kind, name = ev.get("kind"), ev.get("name", "")
    if kind == "fault":
        return f"{at} fault {name} on {ev.get('node') or ev.get('target') or ''} (#{ev.get('id')})"
    if kind == "recovery":
        return f"{at} recovered {name} (#{ev.get('id')})"
    return f"{at} {name if kind == 'vip' else f'{kind}: {name}'} {ev.get('error', '')}".rstrip()


def _cpu_text(s: Snapshot) -> str:
    from .state import role_order

    parts = []
    for role in role_order(s.cpu_pct):
        if role in ("host", "node"):  # node: the namespace owner, a container that only sleeps
            continue
        parts.append(f"{role} {s.cpu_pct[role]:.0f}%")
    if "host" in s.cpu_pct:
        parts.append(f"host {s.cpu_pct['host']:.0f}% of {s.host_cores * 100}%")
    return " · ".join(parts) or "-"


def _errors_text(s: Snapshot) -> str:
    kinds = ", ".join(f"{k} {n(v)}" for k, v in sorted(s.errors_window.items(), key=lambda kv: -kv[1]))
    total = sum(s.totals["errors"].values())
    return f"{n(s.errors_per_s, 1)}/s" + (f" ({kinds})" if kinds else "") + f", {n(total)} in all"


def _phase(s: Snapshot) -> str:
    if s.phase != "load":
        return s.phase
    if s.left_s == 0:
        return "load: stopping"
    return "load" + (f": {s.load_phase}" if s.load_phase else "")


def render(s: Snapshot) -> Group:
    """The panel for a terminal."""
    head = Text()
    head.append("lbbench ", style="bold")
    head.append(f"{s.run_id or ''}  ")
    phase = _phase(s)
    head.append(phase, style="bold cyan")
    if s.elapsed_s is not None:
        head.append(f"  {_clock(s.elapsed_s)} of {_clock(s.duration_s)}, {_clock(s.left_s)} left")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rate = f"{n(s.requests_per_s)} req/s"
    achieved = _achieved(s)
    if s.target:
        pct = 100.0 * (achieved or 0.0) / s.target
        style = "green" if pct >= 95 else "yellow" if pct >= 80 else "red"
        rate += f"   target {n(s.target)} {_unit(s.target_field)}: [{style}]{pct:.0f}%[/{style}]"
    grid.add_row("requests", f"{rate}   (last {s.window_s} s; {n(s.totals['requests'])} so far)")
    grid.add_row("errors", ("[red]" if s.errors_per_s else "") + _errors_text(s) + ("[/red]" if s.errors_per_s else ""))
    grid.add_row("latency", f"p50 {ms(s.p50_ms)} ms   p99 {ms(s.p99_ms)} ms   (last {s.window_s} s, successful requests)")
    conn = f"new {n(s.conn_new_per_s)}/s (client)"
    if s.haproxy:
        conn += (
            f" · HAProxy {n(s.haproxy.get('ConnRate'))}/s, {n(s.haproxy.get('CurrConns'))} open"
            f" · TLS handshakes {n(s.haproxy.get('SslFrontendKeyRate'))}/s full, {n(s.haproxy.get('SslRate'))}/s in all"
        )
    grid.add_row("connections", conn)
    grid.add_row("CPU", _cpu_text(s))
    vip = ", ".join(s.vip_holders) or "-"
    grid.add_row("VIP", f"{s.vip or ''} on {vip}" + (f"   ({s.vip_changes} move(s))" if s.vip_changes else ""))
    if s.thresholds:
        marks = []
        for t in s.thresholds:
            style, mark = {"pass": ("green", "✓"), "fail": ("red", "✗")}.get(t["status"], ("dim", "…"))
            value = f" ({t['value']:,.4g})" if t["value"] is not None else " (at the end)"
            marks.append(f"[{style}]{mark} {t['threshold']}{value}[/{style}]")
        grid.add_row("thresholds", "\n".join(marks))
    if s.events:
        grid.add_row("events", "\n".join(_event_text(s, e) for e in s.events[-EVENTS_SHOWN:]))
    return Group(head, grid)


def line(s: Snapshot) -> str:
    """One compact line for logs."""
    parts = [f"[{_phase(s)}"]
    if s.elapsed_s is not None:
        parts[0] += f" {_clock(s.elapsed_s)}/{_clock(s.duration_s)}"
    parts[0] += "]"
    if s.elapsed_s is None:  # before the load: nothing to show yet
        return f"live {parts[0]}"
    rate = f"{n(s.requests_per_s)} req/s"
    if s.target:
        rate += f" ({100.0 * (_achieved(s) or 0.0) / s.target:.0f}% of {n(s.target)} {_unit(s.target_field)})"
    parts.append(rate)
    parts.append(f"err {_errors_text(s)}")
    parts.append(f"p50 {ms(s.p50_ms)} p99 {ms(s.p99_ms)} ms")
    parts.append(f"new conn {n(s.conn_new_per_s)}/s")
    if s.haproxy:
        parts.append(f"handshakes {n(s.haproxy.get('SslFrontendKeyRate'))}/s")
    parts.append(f"cpu {_cpu_text(s)}")
    parts.append(f"VIP {', '.join(s.vip_holders) or '-'}")
    failing = [t["threshold"] for t in s.thresholds if t["status"] == "fail"]
    if failing:
        parts.append("failing: " + "; ".join(failing))
    return "live " + " | ".join(parts)


class LiveView:
    """Watches a run while it lasts: ``attach`` when the run directory exists, ``close`` at the end.

    ``mode``: ``auto`` (panel on a terminal, lines otherwise), ``panel``,
    ``lines`` or ``quiet``. ``collector`` (the metrics endpoint's) gets every snapshot too.
    """

    def __init__(self, mode: str = "auto", stream: TextIO | None = None, collector: Any = None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "panel" if self.stream.isatty() else "lines"
        self.mode = mode
        self.collector = collector
        self.state: LiveState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._last_line = 0.0
        self.cpu_s = 0.0  # this thread's own CPU time (for the cost note)

    def attach(self, run_dir: Any, run: dict[str, Any]) -> None:
        """Start watching ``run_dir`` (run.json's content in ``run``)."""
        from .state import LiveState

        self.close()
        self.state = LiveState(run_dir, run)
        self._stop.clear()
        if self.collector is not None:
            self.collector.watch(self.state)
        if self.mode == "quiet" and self.collector is None:
            return
        if self.mode == "panel":
            console = Console(file=self.stream, force_terminal=True)
            self._live = Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=True)
            self._live.start()
        self._thread = threading.Thread(target=self._run, name="lbbench-live", daemon=True)
        self._thread.start()

    def set_phase(self, phase: str, t: float | None = None) -> None:
        if self.state is not None:
            self.state.set_phase(phase, t)

    def update_run(self, run: dict[str, Any]) -> None:
        """run.json changed (lab, VIP, load window)."""
        if self.state is not None:
            self.state.run = run

    def _run(self) -> None:
        # the lowest CPU priority for this thread alone: under contention the load generator wins
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        began = time.thread_time()
        while not self._stop.wait(REFRESH_S):
            self._tick()
            self.cpu_s = time.thread_time() - began

    def _tick(self, final: bool = False) -> None:
        assert self.state is not None
        try:
            self.state.poll()
            snap = self.state.snapshot()
        except Exception as exc:  # noqa: BLE001 - watching must never end a run
            if self._live is None:
                print(f"live view: {type(exc).__name__}: {exc}", file=self.stream, flush=True)
            return
        if self.collector is not None:
            self.collector.update(snap)
        if self._live is not None:
            self._live.update(render(snap), refresh=True)
        elif self.mode == "lines" and (final or snap.t - self._last_line >= LINE_EVERY_S):
            self._last_line = snap.t
            print(line(snap), file=self.stream, flush=True)

    def close(self) -> None:
        """Stop watching (the panel keeps its last frame on the screen)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
            if self.state is not None and self.mode != "quiet":
                self._tick(final=True)
        if self._live is not None:
            self._live.stop()
            self._live = None


#: run.json statuses after which a run directory no longer grows.
DONE = ("completed", "interrupted", "failed", "invalid")


def watch_run(run_dir: Any, mode: str = "auto", collector: Any = None, poll_s: float = REFRESH_S, stream: TextIO | None = None) -> str:
    """`bench watch DIR`: follow a run another `bench run` is writing until it ends; returns its final status.

    The same view as `bench run`'s, read from the same files; a finished run gets one final frame.
    """
    import json
    from pathlib import Path

    from ..errors import UserError
    from ..results.layout import RunDir

    path = RunDir(Path(run_dir)).run_json

    def read() -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{run_dir}: no run.json here", "pass a run directory (bench run prints it; reports/<scenario>-<variant>-<time>)") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read it ({exc})", "pass a run directory") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a run.json", "pass a run directory")
        return data

    run = read()
    view = LiveView(mode, stream=stream, collector=collector)
    view.attach(Path(run_dir), run)
    try:
        while True:
            status = run.get("status")
            start = (run.get("load_window") or {}).get("start")
            if status in DONE:
                end = (run.get("load_window") or {}).get("end")
                view.set_phase("load", start)
                view.set_phase("done", end)
                return str(status)
            view.set_phase("load" if status == "running" and start else "lab up", start)
            time.sleep(poll_s)
            try:
                run = read()  # a write in progress (os.replace) is atomic, but be patient with a vanished file
            except UserError:
                time.sleep(poll_s)
                run = read()
            view.update_run(run)
    finally:
        view.close()
