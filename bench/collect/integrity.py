"""Lab integrity: notice when the lab stopped being the lab the run measures.

A run's figures describe one lab: its containers running, its engine up, the VIP
where keepalived put it, every sampler reading its source. :class:`LabWatch`
watches all of that during ``bench run`` and writes one ``integrity`` event into
``events.jsonl`` for each thing that changed without a planned fault::

    {"t": 1795697645.2, "kind": "integrity", "name": "container-exited",
     "subject": "srv1", "message": "srv1 exited (code 137) at +14.2 s, not a planned fault", ...}

What is watched, and where it comes from:

- containers that exit, die of OOM, are paused, unpaused, restarted or removed:
  the Docker engine's event stream, filtered on the lab's label
  (``container-exited``, ``container-oom``, ``container-paused``, ...);
  containers that change in the same second are one event;
- the engine itself going away: the stream breaks and the engine does not
  answer a ping (``engine-lost``; every container goes with it);
- the VIP changing holder (or having none, or two): the collectors' per-second
  VRRP sample (``vip-moved``);
- samplers that lose their source: the collectors report the failures of each
  tick (``collector-lost``, one event however many sources failed).

Faults injected on purpose do not count: an observation is planned when
``events.jsonl`` holds a fault of that service (the whole node's services for
node-wide faults) from its injection until :data:`SETTLE_S` seconds (plus three
VRRP adverts) after its recovery, or until the end when it is never recovered.
A VIP move is planned only inside the window of a fault that moves the VIP.
The injector writes a fault's event once the injection is done, so every
observation waits :data:`JUDGE_AFTER_S` seconds (or the end of the watch) before
it is judged; ``bench fault`` typed by hand during a run is covered the same way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results.events import read_events

#: Docker container actions that mean the lab changed: problem name and words.
ACTIONS = {
    "die": ("container-exited", "exited"),
    "oom": ("container-oom", "ran out of memory (OOM)"),
    "pause": ("container-paused", "paused"),
    "unpause": ("container-unpaused", "unpaused"),
    "restart": ("container-restarted", "restarted"),
    "start": ("container-started", "started again"),
    "destroy": ("container-removed", "removed"),
}
#: Seconds an observation waits for the fault that may explain it to be written.
JUDGE_AFTER_S = 12.0
#: Seconds after a fault's recovery during which its after-effects are still planned (a recovered node
#: starts its containers, keepalived waits up to 5 s for its frontend, then takes the VIP back).
SETTLE_S = 10.0
#: Seconds before a fault's recorded time an effect may already be seen.
EARLY_S = 1.0
#: Container events of one action closer than this are one problem.
GROUP_S = 1.0
#: Faults whose consequences include the VIP moving (bench/faults.py VIP_MOVING).
VIP_FAULTS = frozenset({"crash", "freeze", "link-down", "keepalived-stop", "haproxy-kill"})
#: Seconds between attempts to reach an engine that went away, and between judgements.
POLL_S = 1.0
RUN_LABEL = "org.lbbench.run"


@dataclass
class Window:
    """A planned fault on some services: from ``start`` until ``end`` (None: never recovered)."""

    services: frozenset[str]
    start: float
    end: float | None
    kind: str

    @property
    def moves_vip(self) -> bool:
        return self.kind in VIP_FAULTS

    def covers(self, service: str | None, t: float, settle: float = SETTLE_S) -> bool:
        """Whether an effect on ``service`` (None: on no service in particular) at ``t`` is explained."""
        if service is not None and service not in self.services:
            return False
        return self.start - EARLY_S <= t and (self.end is None or t <= self.end + settle)


@dataclass
class Problem:
    """One way the lab changed under the run (an ``integrity`` event)."""

    t: float
    name: str
    subject: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        return {"t": self.t, "kind": "integrity", "name": self.name, "subject": self.subject, "message": self.message, **self.detail}


@dataclass
class _Seen:
    """Something observed, waiting to be judged."""

    t: float
    what: str  # a Docker action, "vip" or "sources"
    service: str | None
    detail: dict[str, Any]


def fault_windows(events: Iterable[dict[str, Any]], node_services: dict[str, list[str]] | None = None) -> list[Window]:
    """Planned windows from the ``fault`` and ``recovery`` events of ``events.jsonl``.

    A fault opens a window on its services (and on every service of its node when
    the whole node is hit) at its ``t``; the recovery with the same ``id`` closes
    it at its ``done_at``. A recovery without its fault (a fault from before the
    run) is a window of its own.
    """
    node_services = node_services or {}
    opened: dict[Any, Window] = {}
    out: list[Window] = []
    for ev in sorted(events, key=lambda e: float(e.get("t") or 0.0)):
        kind = ev.get("kind")
        if kind not in ("fault", "recovery"):
            continue
        services = set(ev.get("services") or [])
        node = ev.get("node")
        name = str(ev.get("name"))
        if node and name in VIP_FAULTS:
            services.update(node_services.get(node, []))
        key = (ev.get("id"), name)
        if kind == "fault":
            w = Window(frozenset(services), float(ev["t"]), None, name)
            opened[key] = w
            out.append(w)
            continue
        done = float(ev.get("done_at") or ev["t"])
        fault = opened.pop(key) if key in opened else None
        if fault is None:
            out.append(Window(frozenset(services), float(ev["t"]), done, name))
        else:
            fault.end = done
    return out


class LabWatch:
    """Watch one running lab (see the module docstring).

    ``start()`` once the lab is up, :meth:`vip_sample` and :meth:`sources_lost`
    from the collectors, ``stop()`` after the last fault was recovered and before
    the lab is torn down. ``events`` is the run's :class:`bench.results.events.EventLog`;
    ``t0`` (the load's start, settable later) makes messages say ``+14.2 s``.
    ``client_factory`` returns a Docker SDK client.
    """

    def __init__(
        self,
        lab: Any,
        events: Any,
        log: Callable[[str], None] = print,
        client_factory: Callable[[], Any] | None = None,
        advert_int: float = 1.0,
        judge_after: float = JUDGE_AFTER_S,
    ):
        self.lab = lab
        self.events = events
        self.log = log
        self.t0: float | None = None
        self.problems: list[Problem] = []
        self.judge_after = judge_after
        self._client_factory = client_factory or _docker_client
        self._services = set(lab.plan.services)
        self._node_services = {n.name: list(n.services) for n in lab.plan.nodes}
        self._settle = SETTLE_S + 3.0 * advert_int
        self._lock = threading.Lock()
        self._seen: list[_Seen] = []
        self._stop = threading.Event()
        self._stream: Any = None
        self._threads: list[threading.Thread] = []
        self._holders: tuple[str, ...] | None = None
        self._engine_lost = False
        #: The engine went away at some point of the watch.
        self.engine_lost_seen = False
        self._started_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Check that every lab container runs now, then follow the engine's events and judge once a second."""
        self._started_at = time.time()
        try:
            self._check_states(self._client_factory(), self._started_at)
        except Exception as exc:  # noqa: BLE001 - no engine at all
            self._lost(self._started_at, exc)
        for target, name in ((self._follow, "lbbench-labwatch"), (self._judge_loop, "lbbench-labwatch-judge")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self) -> list[Problem]:
        """Stop watching and judge everything still waiting; returns every problem, in time order."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):  # closing a broken stream
                stream.close()
        for th in self._threads:
            th.join(timeout=10)
        self._judge(final=True)
        return sorted(self.problems, key=lambda p: p.t)

    # ------------------------------------------------------------------ observations

    def vip_sample(self, t: float, holders: Iterable[str]) -> None:
        """The collectors' VRRP sample: the nodes holding the VIP now."""
        now = tuple(sorted(holders))
        before, self._holders = self._holders, now
        if before is not None and before != now:
            self._observe(_Seen(t, "vip", None, {"from": list(before), "to": list(now)}))

    def sources_lost(self, t: float, sources: dict[str, str]) -> None:
        """The samplers that started failing in one collector tick: ``{sampler name: error}``."""
        for name, error in sources.items():
            self._observe(_Seen(t, "sources", _service_of(name, self._services), {"source": name, "error": error}))

    def _observe(self, seen: _Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    # ------------------------------------------------------------------ the engine

    def _follow(self) -> None:
        since = self._started_at
        while not self._stop.is_set():
            try:
                client = self._client_factory()
                if self._engine_lost:
                    client.ping()
                    self._engine_lost = False
                    self._say(f"the Docker engine answers again at {self._when(time.time())}")
                self._stream = client.events(since=int(since), decode=True, filters={"type": "container", "label": f"{RUN_LABEL}={self.lab.project}"})
                for ev in self._stream:
                    since = max(since, float(ev.get("time") or since))
                    self._on_event(ev)
                if not self._stop.is_set():
                    raise ConnectionError("the engine closed its event stream")
            except Exception as exc:  # noqa: BLE001 - the engine went away (or only the stream broke)
                if self._stop.is_set():
                    break
                if not self._engine_lost and not self._ping():
                    self._lost(time.time(), exc)
                self._stop.wait(POLL_S)
            finally:
                self._stream = None

    def _ping(self) -> bool:
        try:
            return bool(self._client_factory().ping())
        except Exception:  # noqa: BLE001
            return False

    def _lost(self, t: float, exc: BaseException) -> None:
        self._engine_lost = self.engine_lost_seen = True
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        self._report(Problem(t, "engine-lost", "docker", f"the Docker engine went away at {self._when(t)} ({reason}), and every lab container with it", {}))

    def _check_states(self, client: Any, t: float) -> None:
        found = {}
        # sparse: status and labels from the one list, no inspect per container (the go waits for this)
        for c in client.containers.list(all=True, sparse=True, filters={"label": f"{RUN_LABEL}={self.lab.project}"}):
            service = (c.attrs.get("Labels") or {}).get("com.docker.compose.service")
            if service in self._services:
                found[service] = c.status
        for service in sorted(self._services):
            status = found.get(service, "missing")
            if status != "running":
                self._observe(_Seen(t, "die" if status != "paused" else "pause", service, {"status": status}))

    def _on_event(self, ev: dict[str, Any]) -> None:
        action = str(ev.get("Action") or ev.get("status") or "").split(":")[0]
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        service = attrs.get("com.docker.compose.service")
        if action not in ACTIONS or service not in self._services:
            return  # load-generator workers and anything else of the run are not the lab
        nano = ev.get("timeNano")
        t = float(nano) / 1e9 if nano else float(ev.get("time") or time.time())
        if t < self._started_at:
            return  # the stream starts at a whole second: the lab's own start-up
        detail = {"exit_code": attrs["exitCode"]} if "exitCode" in attrs else {}
        self._observe(_Seen(t, action, service, detail))

    # ------------------------------------------------------------------ judging

    def _judge_loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self._judge()

    def _windows(self) -> list[Window]:
        path = getattr(self.events, "path", None)
        return fault_windows(read_events(Path(path)) if path else [], self._node_services)

    def _judge(self, final: bool = False) -> None:
        """Drop what a fault explains, report the rest once it is old enough (everything when ``final``)."""
        now = time.time()
        with self._lock:
            ripe = [s for s in self._seen if final or now >= s.t + self.judge_after]
            self._seen = [s for s in self._seen if s not in ripe]
        if not ripe:
            return
        windows = self._windows()

        def planned(s: _Seen) -> bool:
            if s.what == "vip":
                return any(w.moves_vip and w.covers(None, s.t, self._settle) for w in windows)
            if s.service is None:
                return False  # the host's counters, the writer: no fault touches them
            return any(w.covers(s.service, s.t, self._settle) for w in windows)

        unplanned = sorted((s for s in ripe if not planned(s)), key=lambda s: s.t)
        for group in _groups(unplanned):
            self._report(self._problem(group))

    def _problem(self, group: list[_Seen]) -> Problem:
        first = group[0]
        t = first.t
        if first.what == "vip":
            said = lambda h: ", ".join(h) if h else "no node"  # noqa: E731
            d = first.detail
            return Problem(t, "vip-moved", "vip", f"the VIP moved from {said(d['from'])} to {said(d['to'])} at {self._when(t)} without a fault", d)
        if first.what == "sources":
            names = sorted({s.detail["source"] for s in group})
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            return Problem(
                t, "collector-lost", names[0],
                f"the collectors lost {len(names)} source(s) at {self._when(t)}: {shown} ({first.detail['error']})",
                {"sources": names},
            )  # fmt: skip
        name, words = ACTIONS[first.what]
        services = sorted({s.service or "?" for s in group})
        who = services[0] if len(services) == 1 else f"{len(services)} containers ({', '.join(services)})"
        code = first.detail.get("exit_code")
        status = first.detail.get("status")
        how = f"{words} (code {code})" if code is not None else (f"{words} ({status})" if status else words)
        detail = {"services": services, **first.detail}
        return Problem(t, name, services[0], f"{who} {how} at {self._when(t)}, not a planned fault", detail)

    # ------------------------------------------------------------------ output

    def _when(self, t: float) -> str:
        if self.t0 is None:
            return time.strftime("%H:%M:%S", time.localtime(t))
        return f"{t - self.t0:+.1f} s"

    def _report(self, problem: Problem) -> None:
        with self._lock:
            self.problems.append(problem)
        try:
            self.events.write(problem.event())
        except OSError as exc:
            self._say(f"could not write the integrity event: {exc}")
        self._say(f"LAB CHANGED: {problem.message}")

    def _say(self, message: str) -> None:
        with contextlib.suppress(Exception):  # a broken log must not stop the watch
            self.log(message)


def _groups(seen: list[_Seen]) -> list[list[_Seen]]:
    """Observations of the same kind within :data:`GROUP_S` of the group's first one (input sorted by time)."""
    groups: list[list[_Seen]] = []
    for s in seen:
        for g in groups:
            if g[0].what == s.what and s.what != "vip" and s.t - g[0].t <= GROUP_S:
                g.append(s)
                break
        else:
            groups.append([s])
    return groups


def _service_of(sampler: str, services: set[str]) -> str | None:
    """The lab service a collector sampler reads (``haproxy lb-a-frontend`` -> ``lb-a-frontend``)."""
    for word in reversed(sampler.split()):
        if word in services:
            return word
    return None


def _docker_client() -> Any:
    import docker

    return docker.from_env(timeout=10)


def headline(problems: list[dict[str, Any]]) -> str | None:
    """The one line saying what happened to the lab (``integrity`` events or summary problems, with
    ``t``, ``name``, ``message``): the engine going away wins, else the first change."""
    if not problems:
        return None
    engine = [p for p in problems if p.get("name") == "engine-lost"]
    first = min(engine or problems, key=lambda p: float(p["t"]))
    more = len(problems) - 1
    return str(first["message"]) + (f" (and {more} more change(s); see events.jsonl)" if more > 0 else "")
