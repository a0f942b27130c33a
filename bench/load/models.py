"""The load models on the lean engine, under Locust: rate users, held connections, the controller's hooks.

- ``keep-alive``: :class:`~bench.load.lean.LeanHttpsUser` (N users, each one
  connection, ``requests_per_connection``, ``think_time``); stages change the
  user count (:mod:`bench.load.control`).
- ``open``, ``connection-rate``, ``handshake-rate``: :class:`LeanRateUser`. The
  users are only the pool of connections; what is sent when comes from the
  process's :class:`~bench.load.pacing.Dispatcher`. A *slot* is one request on
  the user's keep-alive connection (open) or one new connection carrying
  ``requests_per_connection`` requests (connection-rate, handshake-rate; TLS
  sessions resumed or not per ``resumption``).
- ``held``: a :class:`~bench.load.held.HeldPool` per process, next to any model.

Every process listens for the controller's messages (:func:`on_init` registers
them, the locustfile calls it); the controller itself starts on the master (or
the only process) at ``test_start``.

The first request of a slot is recorded with its intended send time
(:meth:`RequestCapture.record_intended`), so the run's ``requests`` table has
the coordinated-omission corrected latency next to the plain one.
"""

from __future__ import annotations

import os
import time
from typing import Any

from locust import User, constant, task
from locust.user.users import LOCUST_STATE_STOPPING

from ..spec import Load
from . import control
from .fit import FD_RESERVE
from .held import HeldPool, share
from .lean import _PROC, BURST_SECONDS
from .leanclient import LeanClient, LeanSettings
from .pacing import Dispatcher, PacingStats, PacingWriter, SlotRecorder, SlotRunner
from .stages import flow_shares
from .users import check_lab_host, settings

_time = time.time


class _RateProcess:
    """Per-process state of the models: the load spec, dispatcher, pacing writer, held pool."""

    def __init__(self) -> None:
        self.pid = -1
        self.load: Load | None = None
        self.stats: PacingStats | None = None
        self.dispatcher: Dispatcher | None = None
        self.writer: PacingWriter | None = None
        self.held: HeldPool | None = None
        self.flow_settings: dict[str, LeanSettings] = {}
        self.slot_requests = 1
        self.controller: control.Controller | None = None
        self.environment: Any = None
        self._reporter: Any = None
        self._stopped = False
        self._acked = False

    def ensure(self, environment: Any) -> None:
        """Set this process up once (first user or first message, whichever comes first)."""
        if self.pid == os.getpid():
            return
        s = settings()
        self.environment = environment
        self.load = Load.model_validate(s["load"])
        load = self.load
        hosts = s.get("hosts") or {}
        # a worker on another machine learns the host only with its first spawn message: take it from the settings
        host = environment.host or hosts.get(load.scheme) or next(iter(hosts.values()), "")
        _PROC.setup_env(environment, host)
        self.pid = os.getpid()
        for flow in ("https", "http"):
            url = hosts.get(flow) or (host if host.startswith(flow + "://") else None)
            if url:
                check_lab_host(url)
                name = s.get("name") or "GET /"
                # two flows of one model (TLS and plain connections) are told apart by name
                flow_s = {**s, "name": f"{name} ({flow})" if len(flow_shares(load)) > 1 else name}
                self.flow_settings[flow] = LeanSettings.from_settings(url, flow_s)
        self.slot_requests = load.requests_per_connection if load.model in ("connection-rate", "handshake-rate") else 1
        self.stats = PacingStats(report=load.find_max is not None)
        self.dispatcher = Dispatcher(self.stats, max_lag=load.max_lag)
        if load.is_rate:
            self.dispatcher.start()
            run_dir = s.get("run_dir")
            if run_dir:
                from pathlib import Path

                self.writer = PacingWriter(Path(run_dir), self.stats)
                self.writer.start()
        if load.find_max is not None:
            import gevent

            self._reporter = gevent.spawn(self._report_loop)
        events = environment.events
        events.test_stopping.add_listener(lambda **_kw: self.stop())
        events.test_stop.add_listener(lambda **_kw: self.stop())
        events.quitting.add_listener(lambda **_kw: self.stop(final=True))

    def stop(self, final: bool = False) -> None:
        """Stop pacing and holding; flush the samples (idempotent; ``final`` flushes what the last slots counted)."""
        if self.pid != os.getpid():
            return
        if self._stopped:
            if final and self.writer is not None:
                self.writer.flush()
            return
        self._stopped = True
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self._reporter is not None:
            self._reporter.kill(block=False)
            self._reporter = None
        if self.held is not None:
            self.held.stop()
        if self.writer is not None:
            self.writer.stop()

    def _report_loop(self) -> None:
        import gevent

        runner = self.environment.runner
        while True:
            gevent.sleep(control.REPORT_INTERVAL)
            assert self.stats is not None
            data = self.stats.take_report()
            data["cpu_s"] = time.process_time()
            data["t"] = _time()
            runner.send_message(control.MSG_REPORT, data)

    # ------------------------------------------------------------------ messages

    def on_setup(self, environment: Any = None, msg: Any = None, **_kw: Any) -> None:
        data = (msg.data if msg is not None else None) or {}
        held = data.get("held")
        if not held or self.held is not None:
            return  # nothing to hold: leave a keep-alive run (FastHttpUser too) as it is
        env = environment or self.environment
        self.ensure(env)
        runner = env.runner
        workers = int(data.get("workers") or 1)
        index = max(int(getattr(runner, "worker_index", 0) or 0), 0)
        total, tls_total = int(held["connections"]), int(held["tls"])
        tls = share(tls_total, index, workers)
        plain = share(total - tls_total, workers - 1 - index, workers)  # the remainders land on other processes
        mine = tls + plain
        limit = _fd_limit()
        if mine + FD_RESERVE > limit:
            # the run checks this before it starts (bench/load/fit.py); say it clearly if it slips through
            raise RuntimeError(f"held connections: {mine} in one process exceed its file-descriptor limit {limit}")
        self.held = self._make_pool(workers)
        self.held.start(mine, tls)

    def on_schedule(self, environment: Any = None, msg: Any = None, **_kw: Any) -> None:
        self.ensure(environment or self.environment)
        assert self.dispatcher is not None
        flows, from_t = control.parse_schedule((msg.data if msg is not None else None) or {})
        for flow, segments in flows.items():
            self.dispatcher.set_schedule(flow, segments, from_t)
        if not self._acked:  # the controller counts the processes that have their schedule
            self._acked = True
            (environment or self.environment).runner.send_message(control.MSG_ACK, {})

    def _make_pool(self, workers: int) -> HeldPool:
        s = settings()
        load = self.load
        assert load is not None and load.held is not None
        held = load.held
        interval = float(s.get("held_interval") or held.interval or 5.0)
        base = s.get("name") or "GET /"
        if base.startswith("POST "):  # held connections only ever GET
            base = "GET " + base[len("POST ") :]
        path = held.path or load.path
        clients_settings = {}
        for flow in ("https", "http"):
            fs = self.flow_settings.get(flow)
            if fs is None:
                continue
            clients_settings[flow] = LeanSettings.from_settings(
                f"{fs.scheme}://{fs.host}" + (f":{fs.port}" if fs.port not in (80, 443) else ""),
                {**s, "path": path, "name": f"held {base} ({flow})", "requests_per_connection": 0, "resumption": held.resumption, "request_body": 0},
            )
        timeout = min(float(s.get("timeout", 5.0)), float(s.get("connect_timeout", 5.0)))

        def make_client(tls: bool) -> LeanClient:
            flow = "https" if tls else "http"
            cs = clients_settings.get(flow)
            if cs is None:
                raise RuntimeError(f"held connections over {flow}: no {flow} address for this run")
            return LeanClient(cs, _PROC.ctx if tls else None, _PROC.batch.lists(cs.name), _PROC.capture)

        run_dir = s.get("run_dir")
        from pathlib import Path

        return HeldPool(
            make_client,
            interval=interval,
            rate=held.rate / max(workers, 1),
            run_dir=Path(run_dir) if run_dir else None,
            resumption=held.resumption,
            on_client=lambda c: _PROC.watchdog.add(c, timeout),
            off_client=_PROC.watchdog.discard,
        )


RATE = _RateProcess()


def _fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class LeanRateUser(User):
    """One connection slot of a rate model's pool: runs the slots the process's dispatcher hands it (:class:`SlotRunner`)."""

    abstract = False
    wait_time = constant(0)

    def on_start(self) -> None:
        check_lab_host(self.host or "")
        _PROC.setup(self)
        RATE.ensure(self.environment)
        assert RATE.stats is not None and RATE.dispatcher is not None
        self._runner = SlotRunner(
            RATE.dispatcher,
            RATE.stats,
            SlotRecorder(_PROC.capture, RATE.stats),
            RATE.slot_requests,
            self._client,
            lambda: self._state == LOCUST_STATE_STOPPING,
        )

    def _client(self, flow: str) -> LeanClient:
        fs = RATE.flow_settings.get(flow)
        if fs is None:
            raise RuntimeError(f"flow {flow}: no address for it in this run")
        client = LeanClient(fs, _PROC.ctx if flow == "https" else None, _PROC.batch.lists(fs.name))
        _PROC.watchdog.add(client, min(fs.timeout, fs.connect_timeout))
        return client

    def on_stop(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.abort()
            for client in runner.clients.values():
                _PROC.watchdog.discard(client)
                client.close()
        _PROC.flush_stats()

    @task
    def run_slots(self) -> None:
        """Slots for at most BURST_SECONDS (so Locust can stop the user in time)."""
        dispatcher = RATE.dispatcher
        assert dispatcher is not None
        if dispatcher.closed:
            # the test is stopping
            import gevent

            gevent.sleep(0.1)
            return
        self._runner.serve(_time() + BURST_SECONDS)


def on_init(environment: Any) -> None:
    """Locust ``init``: listen for the controller's messages here; start the controller on the owning process."""
    s = settings()
    if not s.get("load"):
        return
    runner = environment.runner
    if runner is None:
        return
    from locust.runners import MasterRunner, WorkerRunner

    control.register(environment, RATE.on_setup, RATE.on_schedule)
    if isinstance(runner, WorkerRunner):
        return
    controller = control.Controller(environment, s)
    runner.register_message(control.MSG_REPORT, controller.on_report)
    runner.register_message(control.MSG_ACK, controller.on_ack)

    def start(**_kw: Any) -> None:
        if RATE.controller is None:
            RATE.controller = controller
            controller.start()

    def stop(**_kw: Any) -> None:
        controller.stop()

    environment.events.test_start.add_listener(start)
    environment.events.test_stopping.add_listener(stop)
    if isinstance(runner, MasterRunner):
        return


__all__ = ["LeanRateUser", "SlotRecorder", "SlotRunner", "on_init"]
