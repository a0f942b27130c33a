"""`bench run`: bring up a lab, drive load, collect, tear down, analyse.

The run directory is created only after every input has been validated, so a
bad scenario, topology or flag leaves nothing behind. Once load has started,
SIGINT/SIGTERM stop the load, tear the lab down and keep everything gathered so
far (``run.json`` says ``"status": "interrupted"``). A run that fails before
load starts removes its half-made run directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, engine, images, paths
from .collect.integrity import LabWatch, headline
from .errors import RunInterrupted, UserError
from .faults import FaultInjector, FaultSchedule
from .images import HAProxyBuild
from .inputs import check_output_dir
from .live.view import LiveView
from .load.runner import WORKERS_START_TIMEOUT, LocustProcess, WarmLocust, describe_load, open_start_gate, start_gate, start_locust, start_warm, wait_at_gate
from .load.workers import WorkerSet, start_load
from .preflight import Checked, preflight
from .proc import sigterm_as_interrupt
from .results.document import write_document
from .results.events import EventLog
from .results.layout import RunDir
from .results.run import RunDoc
from .spec import Variant
from .topology.diff import config_diff
from .topology.lab import Lab

if TYPE_CHECKING:
    from .collect.collectors import Collectors

#: Extra seconds Locust gets beyond the run time to stop users and write its files.
LOCUST_EXIT_GRACE = 20.0
#: Start Locust (one process or --processes N; not a --workers master) while the lab comes up, gated, and
#: the warm Locust's imports as `bench run`'s first step (LBBENCH_PRESTART_LOAD=0: both after the lab, as before).
PRESTART_LOAD = os.environ.get("LBBENCH_PRESTART_LOAD", "1") != "0"
#: The warm Locust (bench/load/warm.py): Locust's imports beside the checks and the lab's start, the run's
#: Locust handed over later (LBBENCH_WARM_LOCUST=0: a fresh Locust process, as before it).
WARM_LOCUST = PRESTART_LOAD and os.environ.get("LBBENCH_WARM_LOCUST", "1") != "0"
#: How often the run loop checks for a fault that is due.
FAULT_POLL_S = 0.05


class SignalGuard:
    """Turn SIGINT/SIGTERM into :class:`RunInterrupted` in the main thread.

    Inside ``shielded()`` (teardown), signals are remembered instead of raised, so
    cleanup always finishes.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._shield = 0
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        first = self.received is None
        self.received = signum
        if self._shield == 0 and first:
            raise RunInterrupted(signum)

    def __enter__(self) -> SignalGuard:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1


class Teardown:
    """Save the containers' logs and tear the lab down in a thread of its own, while the run is analysed.

    The logs are saved at once; ``compose down`` (the engine's CPU) waits for
    :meth:`go`, called once the summary is on screen, so the two do not share the
    cores. ``join()`` says go too and waits (always, before `bench run` returns or
    raises: nothing is left running); a failure is one line naming `bench down`.
    """

    def __init__(self, lab: Lab, worker_set: WorkerSet | None, rd: RunDir):
        self.lab = lab
        self.error: BaseException | None = None
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(worker_set, rd), name="lbbench-teardown")
        self._thread.start()

    def go(self) -> None:
        """Let the teardown proper (``compose down``) begin."""
        self._go.set()

    def _run(self, worker_set: WorkerSet | None, rd: RunDir) -> None:
        try:
            try:
                if worker_set is not None:  # after the collectors' last sample of their CPU
                    worker_set.save_logs(rd.locust)
                    worker_set.remove()
                if self.lab.started:
                    self.lab.save_logs(rd.logs)
            finally:
                self._go.wait()
                self.lab.down()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.error = exc

    def join(self, raise_error: bool = True) -> None:
        self._go.set()
        self._thread.join()
        if self.error is not None and raise_error:
            raise UserError(
                f"tearing down {self.lab.project} failed: {type(self.error).__name__}: {self.error}",
                f"`bench down {self.lab.project}` removes what is left",
            ) from self.error


#: The live view, the collectors, the analysis and the report (numpy, pyarrow, pandas, matplotlib: 1.5-2 s
#: of CPU) are imported in the background while the checks run and the lab starts, so neither the start
#: nor the end waits for them; the live view first (it is attached beside `compose up`, see attach_live).
_ANALYSIS_MODULES = ("bench.live.state", "bench.collect.collectors", "bench.report", "bench.analysis.summary")
#: Seconds the load's start waits, at most, for those imports to finish: they must not share the cores
#: with the load (on a busy 2-core machine they can outlast the lab's start).
IMPORT_WAIT_S = 60.0


def _import_analysis() -> None:
    for name in _ANALYSIS_MODULES:
        importlib.import_module(name)


def attach_live(live: LiveView | None, run_dir: Path, run: dict[str, Any]) -> Future[None] | None:
    """Attach ``live`` to the run (phase "lab up") in a thread of its own; the future says when it is done.

    The live view's state imports numpy and pyarrow: `bench run`'s background import
    (:data:`_ANALYSIS_MODULES`) is still at them when the checks end, and an attach in
    the main thread waited for them before `compose up` began. Beside `compose up`,
    which mostly waits for the engine, that wait is off the start's path; the run waits
    for the future before its next use of ``live``.
    """
    if live is None:
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lbbench-live-attach")
    attached = pool.submit(_attach_live, live, run_dir, run)
    pool.shutdown(wait=False)
    return attached


def _attach_live(live: LiveView, run_dir: Path, run: dict[str, Any]) -> None:
    live.attach(run_dir, run)
    live.set_phase("lab up")


def _build_report(run_dir: Path, **kwargs: Any) -> Path:
    from .report import build_report

    return build_report(run_dir, **kwargs)


def _headline(summary: dict[str, Any]) -> list[str]:
    from .analysis.summary import headline

    return headline(summary)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True, check=False, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def run_record(
    run_id: str,
    scenario: Any,
    scenario_path: Path,
    topology: Any,
    variant: str | None,
    overrides: dict[str, Any],
    ref: Any,
    load_fit: Any,
    client: Any,
    ask_now: bool = True,
    lab: Lab | None = None,
    build: HAProxyBuild | None = None,
) -> dict[str, Any]:
    """The first ``run.json`` of a run: what runs, on which versions and which machine (status ``starting``).

    ``ask_now=False`` leaves ``git_sha`` and ``compose`` null, for a caller that asks them in the
    background while its lab starts (`bench run`). ``build`` is the HAProxy build of the LB
    processes (``haproxy -vv`` of ``lab.haproxy_image``, see bench/preflight.py).
    """
    run = {
        "schema_version": RunDoc.SCHEMA_VERSION,
        "id": run_id,
        "status": "starting",
        "scenario": scenario.model_dump(mode="json"),
        "scenario_file": str(scenario_path),
        "topology": topology.model_dump(mode="json", exclude={"variants"}),
        "variant": variant,
        "overrides": overrides,
        "versions": {
            "lbbench": __version__,
            "git_sha": _git_sha() if ask_now else None,
            "python": platform.python_version(),
            "locust": _locust_version(),
            "docker_engine": client.version().get("Version"),
            "compose": engine.compose_version() if ask_now else None,
            "image": ref.node_tag,
            "base_image": ref.base_tag,
        },
        "machine": machine_info(),
        "scale": load_fit.scale,
        "load_fit": load_fit.as_dict(),
        "load_workers": None,
        "started_at": _now(),
    }
    if lab is not None:
        run["versions"]["haproxy_image"] = lab.haproxy_image
    if build is not None:
        run["versions"]["haproxy"] = build.version_line
        # the HAProxy build that runs the LB processes: `haproxy -vv` of its image, parsed
        run["haproxy_build"] = build.as_dict()
    return run


def machine_info() -> dict[str, Any]:
    """The machine a run ran on: host name, cores, kernel (`bench gate` flags runs from different machines)."""
    return {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release()}


def record_lab(run: dict[str, Any], lab: Lab, run_dir: Path, base_topology: Any, topology: Any) -> None:
    """After the lab is up: its configs into the run directory, its addresses and config diff into run.json."""
    assert lab.plan is not None
    rd = RunDir(run_dir)
    lab.copy_public_configs(rd.configs)
    run["lab"].update(
        vip=lab.plan.vip,
        client_subnet=lab.plan.client_subnet,
        server_subnet=lab.plan.server_subnet,
        services=list(lab.plan.services),
        # what each HAProxy process says it runs (`show info`): the build the run measured
        haproxy_running=lab.running_versions(),
    )
    # What this variant changed in the rendered configs, against the topology file as written.
    run["config_diff"] = config_diff(base_topology, topology, lab.project, lab.plan.client_subnet, lab.plan.server_subnet)
    write_document(RunDoc, run, rd.run_json)


def _record_lab_state(run: dict[str, Any], lab: Lab, run_dir: Path, events: Path, checked: Checked) -> None:
    """:func:`record_lab`, then lab.json with the run's events file (`bench fault` during the run writes there)."""
    record_lab(run, lab, run_dir, checked.base_topology, checked.topology)
    lab.write_state(events=str(events), run_dir=str(run_dir))


def _load_extra(checked: Checked) -> dict[str, Any]:
    """Settings for the load processes beyond the scenario's: the fit's, and the name a user's certificate carries."""
    extra = dict(checked.load_extra)
    if checked.lab.server_name:
        extra["server_name"] = checked.lab.server_name  # SNI + the name the clients check (bench/load/leanclient.py)
    return extra


def _workers_connected(locust: LocustProcess, gate: dict[str, Any], worker_set: WorkerSet | None, workers: int) -> None:
    """Wait until a --workers master waits at ``gate`` with every worker container connected (their start took
    5-25 s on the busy 2-core machine); one clear line when they do not come within WORKERS_START_TIMEOUT."""
    problem = wait_at_gate(locust, gate, WORKERS_START_TIMEOUT, check=worker_set.failed if worker_set is not None else None)
    if problem is not None:
        raise UserError(
            f"the load generator's master and its {workers} worker container(s) did not come up: {problem}",
            "a worker that failed is quoted; slow ones: free the machine or use fewer --workers",
        )


def load_deadline_s(duration: float, workers: int) -> float:
    """Seconds from the load's start until `bench run` stops a Locust that has not exited on its own.

    The run's time and Locust's exit, and with ``--workers`` the time the worker containers may take to
    connect before the master begins (:data:`bench.load.runner.WORKERS_START_TIMEOUT`, then it gives up
    and says so). `bench run` now gives the go only once every worker is connected (the master waits
    at its start gate), so this margin is for a worker lost between that and the go: a deadline
    without it stopped a master still waiting for its workers, and SIGTERM then kills it (its handler
    comes later) with an empty log and 0 users.
    """
    return duration + LOCUST_EXIT_GRACE + (WORKERS_START_TIMEOUT if workers else 0.0)


def run_scenario(
    name: str,
    duration: str | None = None,
    out: Path | None = None,
    variant: str | None = None,
    sets: list[str] | None = None,
    log: Callable[[str], None] = print,
    repeat: int = 1,
    extra_variants: dict[str, Variant] | None = None,
    scale: float | None = None,
    workers: int = 0,
    live: LiveView | None = None,
) -> Path:
    """Run a scenario end to end and return its run directory.

    ``repeat`` repeats a scenario's fault cycle inside the run (every
    ``repeat.every`` seconds); ``extra_variants`` are variants from a matrix file.
    ``scale`` multiplies a scalable scenario's load (default: what fits the
    machine, see bench/load/fit.py); ``workers`` runs the load generator as
    Locust's master here plus that many worker containers on the client network.
    ``live`` watches the run while it lasts (bench/live: terminal view, metrics endpoint).
    """
    # Locust's imports (seconds on a busy machine) go first, beside the checks and the lab's start;
    # the process runs Locust once the settings are known, or ends without load.
    warm = start_warm() if WARM_LOCUST else None
    try:
        return _run_scenario(name, duration, out, variant, sets, log, repeat, extra_variants, scale, workers, live, warm)
    finally:
        if warm is not None:
            warm.discard()  # unused, or the run's Locust (stopped by then, or interrupted while it was handed over)


def _run_scenario(
    name: str,
    duration: str | None,
    out: Path | None,
    variant: str | None,
    sets: list[str] | None,
    log: Callable[[str], None],
    repeat: int,
    extra_variants: dict[str, Variant] | None,
    scale: float | None,
    workers: int,
    live: LiveView | None,
    warm: WarmLocust | None,
) -> Path:
    # First, beside the checks: the live view's state (numpy, pyarrow) is needed right after them, and the
    # load's start waits for all of them.
    importer = threading.Thread(target=_import_analysis, name="lbbench-import", daemon=True)
    importer.start()
    # Every input, the fit, the images and every rendered config, before anything starts (all problems at once).
    checked = preflight(
        name, duration, variant, sets, extra_variants, repeat=repeat, scale=scale, workers=workers, out=out, log=log
    )
    scenario, variant, topology, lab = checked.scenario, checked.variant, checked.topology, checked.lab
    ref, build, worker_image = checked.lab_check.node_image, checked.lab_check.build, checked.worker_image
    assert ref is not None and build is not None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{scenario.name}-{variant or 'base'}-{stamp}"
    run_dir = Path(out) if out else paths.REPORTS / run_id
    rd = RunDir(run_dir)
    try:  # the prepared lab holds private files (the TLS key) until it is started or discarded
        run_dir = check_output_dir(run_dir)
        # What run.json records about the versions takes a container and two subprocesses: asked
        # while the lab starts, written once it is up.
        background = ThreadPoolExecutor(max_workers=3, thread_name_prefix="lbbench-versions")
        later_versions = background.submit(images.versions, ref.node_tag)
        later_compose = background.submit(engine.compose_version)
        later_git = background.submit(_git_sha)
        background.shutdown(wait=False)
        run = run_record(
            run_id, scenario, checked.scenario_path, topology, variant, checked.overrides, ref, checked.load_fit,
            engine.client(), ask_now=False, lab=lab, build=build,
        )  # fmt: skip
        if workers:
            run["load_workers"] = {"count": workers, "processes": scenario.load.processes, "image": worker_image}
        run_dir.mkdir(parents=True, exist_ok=True)
        write_document(RunDoc, run, rd.run_json)
    except BaseException:
        lab.discard()
        raise
    load_extra = _load_extra(checked)
    attached = attach_live(live, run_dir, run)  # beside `compose up`: its state imports numpy and pyarrow

    locust: LocustProcess | None = None
    worker_set: WorkerSet | None = None
    collectors: Collectors | None = None
    watch: LabWatch | None = None
    schedule: FaultSchedule | None = None
    load_started = False
    gate: dict[str, Any] | None = None
    teardown: Teardown | None = None
    guard = SignalGuard()
    try:
        with guard:
            try:
                run["lab"] = {"project": lab.project}
                write_document(RunDoc, run, rd.run_json)
                if lab.plan is None:
                    lab.prepare()
                assert lab.plan is not None and lab.tls is not None
                host = f"{scenario.load.scheme}://{lab.plan.vip}"
                planned = lab.plan
                if PRESTART_LOAD and not workers:
                    # Locust's imports and its --processes forks (seconds on a busy machine) overlap the lab's
                    # start; no user starts before the gate opens (every process waits at it).
                    gate = start_gate(run_dir)
                    extra = {**load_extra, "start_gate": gate}
                    locust = start_locust(scenario, host, lab.tls.ca_pem, run_dir, scenario.duration, extra=extra, warm=warm)
                lab.up(validated=True)
                if attached is not None:
                    attached.result()  # the live view is attached (or why not is raised here)
                if locust is not None and lab.plan is not planned:
                    # its subnets were taken meanwhile and the lab came up on others (another VIP, another CA):
                    # the Locust started ahead targets the old ones and never passed its gate; start one afresh
                    locust.stop()
                    locust = gate = None
                    assert lab.plan is not None
                    host = f"{scenario.load.scheme}://{lab.plan.vip}"
                run["versions"].update(git_sha=later_git.result(), compose=later_compose.result(), **later_versions.result())
                run["versions"]["haproxy"] = build.version_line  # the LB's build, not the node image's
                events = EventLog(rd.events)
                # The lab's record (configs, `show info` of every HAProxy, run.json) and lab.json are written beside
                # the watch's and the collectors' start: those mostly wait for the engine's answers.
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lbbench-record") as side:
                    recorded = side.submit(_record_lab_state, run, lab, run_dir, rd.events, checked)
                    # Sampling starts before the load (idle baseline) and ends after it (final state).
                    # From here on, a container that dies or a VIP that moves without a fault is noticed.
                    watch = LabWatch(lab, events, log=log, advert_int=topology.keepalived.advert_int)
                    watch.start()
                    from .collect.collectors import Collectors

                    collectors = Collectors(run_dir, lab, log=log)
                    collectors.watch = watch
                    collectors.start()
                    recorded.result()
                # The imports never share the cores with the load: on a busy machine they can outlast the lab's start.
                importer.join(IMPORT_WAIT_S)
                log(f"driving load: {describe_load(scenario)}, {scenario.duration:g}s against {host}")
                if locust is not None and gate is not None:  # started ahead: open its gate
                    collectors.track_loadgen(locust.proc.pid)
                    open_start_gate(gate)
                    locust.started_at = time.time()
                else:
                    # --workers: the master binds on the lab's client network, so it starts now, behind a gate it
                    # reports at once every worker container is connected; the go (and the load window) comes then
                    gate = start_gate(run_dir) if workers else None
                    locust, worker_set = start_load(scenario, host, lab, run_dir, collectors, load_extra, workers, worker_image, log, warm=warm, gate=gate)
                    if gate is not None:
                        _workers_connected(locust, gate, worker_set, workers)
                        open_start_gate(gate)
                        locust.started_at = time.time()
                load_started = True
                watch.t0 = collectors.t0 = locust.started_at
                run["load_window"] = {"start": locust.started_at, "end": None}
                run["load_pid"] = locust.proc.pid  # its process group, should bench itself be killed
                run["status"] = "running"
                write_document(RunDoc, run, rd.run_json)
                if live is not None:
                    live.update_run(run)
                    live.set_phase("load", locust.started_at)
                events.phase("load", t=locust.started_at)
                events.phase("steady", t=locust.started_at + scenario.ramp_up)
                schedule = FaultSchedule(FaultInjector(lab, events, log=log), scenario.faults, locust.started_at)
                deadline = time.monotonic() + load_deadline_s(scenario.duration, workers)
                while locust.wait(FAULT_POLL_S if schedule.next_due() is not None else 0.5) is None:
                    schedule.poll()
                    if time.monotonic() > deadline:
                        log("locust did not stop on time; stopping it")
                        break
                code = locust.stop()
                run["load_window"]["end"] = time.time()
                events.phase("end", t=run["load_window"]["end"])
                if code != 0:
                    raise UserError(
                        f"locust exited with status {code}: {locust.log_tail()}",
                        f"see {rd.locust_log}" + (" and the workers' loadgen-worker*.log beside it" if workers else ""),
                    )
                run["status"] = "completed"
            except RunInterrupted as exc:
                run["status"] = "interrupted"
                log(f"interrupted (signal {exc.signum}): stopping load and tearing down; data so far is kept")
            finally:
                with guard.shielded():
                    if attached is not None:  # a start that failed or was interrupted: the live view is used below
                        wait_futures([attached])
                    if live is not None:
                        live.set_phase("tearing down")
                    try:
                        if schedule is not None:
                            schedule.finish()
                        if locust is not None:
                            locust.stop()
                            if run.get("load_window") and run["load_window"].get("end") is None:
                                run["load_window"]["end"] = time.time()
                        if collectors is not None:
                            collectors.stop()
                        if watch is not None:  # after the last recovery, before the teardown
                            problems = [p.event() for p in watch.stop()]
                            if problems:
                                run["integrity"] = {"problems": problems, "headline": headline(problems)}
                                if run["status"] == "completed":
                                    run["status"] = "invalid"
                    finally:
                        if live is not None:
                            live.close()  # after the collectors' last sample: the final frame shows it
                            run["live_view"] = {"mode": live.mode, "cpu_s": round(live.cpu_s, 3)}  # what watching cost
                        # logs and teardown go on while the run is analysed; joined before returning
                        teardown = Teardown(lab, worker_set, rd)
    except BaseException as exc:
        changed = (run.get("integrity") or {}).get("headline")
        with sigterm_as_interrupt():
            try:
                if not load_started:
                    # Nothing was measured: leave no half-written report behind (the logs go there too).
                    if teardown is not None:
                        teardown.join(raise_error=False)
                    shutil.rmtree(run_dir, ignore_errors=True)
                else:
                    if run["status"] != "interrupted":
                        # a load that failed because the lab changed under it: the change is the news
                        run["status"] = "invalid" if changed else "failed"
                    run["ended_at"] = _now()
                    write_document(RunDoc, run, rd.run_json)
                    try:  # keep what was measured readable; the original error is what matters
                        _build_report(run_dir)
                    except Exception as report_exc:  # noqa: BLE001
                        log(f"could not build the report of the failed run: {report_exc}")
            finally:
                if teardown is not None:
                    teardown.join(raise_error=False)
        if load_started and changed and isinstance(exc, UserError):
            raise UserError(f"the lab changed during the run: {changed}", f"the figures from then on are not the lab's; report in {run_dir}") from exc
        raise
    run["ended_at"] = _now()
    write_document(RunDoc, run, rd.run_json)
    assert teardown is not None
    done = teardown

    def on_summary(summary: dict[str, Any]) -> None:
        for line in _headline(summary):
            log(line)
        done.go()  # the summary is out: the lab goes while the plots are drawn

    # outside SignalGuard now: SIGTERM's default would end the process at once and leave the lab
    # (torn down by a thread meanwhile) running; as Ctrl-C it abandons the report and joins the teardown
    with sigterm_as_interrupt():
        try:
            _build_report(run_dir, on_summary=on_summary)
        except BaseException:
            teardown.join(raise_error=False)
            raise
        engine_lost = watch is not None and watch.engine_lost_seen
        teardown.join(raise_error=not engine_lost)
    if engine_lost and teardown.error is not None:
        log(f"could not tear {lab.project} down with the engine gone: once it is back, `bench down {lab.project}`")
    return run_dir


def _locust_version() -> str:
    from importlib.metadata import version

    return version("locust")
