"""Run Locust headless against a lab's VIP as a child process.

Locust runs in its own session, so a Ctrl-C in the terminal reaches ``bench``
first; ``bench`` then asks Locust to stop (SIGTERM: it writes its CSVs and our
capture flushes), waits briefly, and kills it if it hangs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import UserError
from ..spec import Scenario

DEFAULT_LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_GRACE = 10.0

USER_CLASSES = {"fasthttp": "KeepAliveUser", "lean": "LeanHttpsUser"}


@dataclass
class LocustProcess:
    """A running headless Locust."""

    proc: subprocess.Popen
    log_path: Path
    started_at: float

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """Stop gracefully (SIGTERM), then kill after a grace period; returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(STOP_GRACE) is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(text[-lines:])


def locustfile_for(scenario: Scenario) -> Path:
    """The locustfile a scenario uses."""
    if scenario.locustfile:
        path = paths.SCENARIOS / scenario.locustfile
        if not path.exists():
            raise UserError(f"scenario {scenario.name}: locustfile {path} not found", "fix `locustfile:` in the scenario")
        return path
    return DEFAULT_LOCUSTFILE


def start_locust(
    scenario: Scenario,
    host: str,
    ca_pem: Path,
    run_dir: Path,
    duration: float,
) -> LocustProcess:
    """Start headless Locust for ``scenario`` against ``host`` (the VIP URL); returns at once."""
    load = scenario.load
    out = run_dir / "locust"
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "ca": str(ca_pem),
        "path": load.path,
        "think_time": load.think_time,
        "run_dir": str(run_dir),
        "timeout": load.timeout,
        "name": f"GET {load.path.split('?')[0]}",
        # lean engine only (FastHttpUser ignores them)
        "connect_timeout": load.connect_timeout,
        "requests_per_connection": load.requests_per_connection,
        "resumption": load.resumption,
    }
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile_for(scenario)),
        "--headless",
        "--host",
        host,
        "--users",
        str(load.users),
        "--spawn-rate",
        f"{load.spawn_rate:g}",
        "--run-time",
        f"{max(1, round(duration))}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
        USER_CLASSES[load.engine],
    ]
    if load.processes > 1:
        cmd[5:5] = ["--processes", str(load.processes)]  # after "-f FILE"
    env = {**os.environ, "LBBENCH_LOAD": json.dumps(settings), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), env.get("PYTHONPATH", "")]))
    log_path = out / "locust.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it until it exits
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=run_dir)
    finally:
        log.close()
    return LocustProcess(proc, log_path, time.time())
