"""Load-generator workers in containers (``bench run --workers N``): Locust's distributed mode on the lab's client network.

``bench`` runs Locust's *master* on the host (it runs the load model's
controller and merges the statistics); N worker containers of the ``loadgen``
image join the lab's client network, each with an address of its own
(``.51``, ``.52`` ...: its own ephemeral ports towards the VIP) and its own
file-descriptor limit, run ``locust --worker`` (with ``--processes K`` inside
when ``load.processes`` is more than 1) and connect to the master on the
network's gateway, which is the host.

Everything a worker writes lands in the run directory: it is bind-mounted at
the same path, so the settings (``LBBENCH_LOAD``) are the same for the master
and the workers, and the samples of every process (requests, pacing, held) are
simply more streams. lbbench's code is bind-mounted read-only at
``/opt/lbbench``. Their CPU is sampled from their cgroups like every lab
container (role ``loadgen``), their logs are saved as ``locust/<worker>.log``,
and they carry the lab's run label, so tearing the lab down removes them.

The image (``lbbench/loadgen:<release>-<hash>``) is built offline on the node
image's debootstrap base: Debian's python3 plus a wheelhouse that
:func:`wheelhouse` downloads on the host with ``pip download`` (PyPI is the only
index needed; no container registry).

Workers on other hosts: see README ("Load generator on several machines").
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .. import engine, images, paths
from ..errors import UserError
from ..images import _digest

LOADGEN_REPO = "lbbench/loadgen"
#: What the locustfile needs in a worker (their dependencies come along).
WORKER_PACKAGES = ("locust", "gevent", "numpy", "pandas", "pyarrow", "pydantic", "PyYAML")
#: Inside a worker container.
CODE_MOUNT = "/opt/lbbench"


def requirements() -> str:
    """The worker's requirements, pinned to what this lbbench runs with."""
    return "".join(f"{name}=={version(name)}\n" for name in WORKER_PACKAGES)


def wheelhouse(reqs: str, log: Callable[[str], None] = print) -> Path:
    """Wheels for ``reqs`` (and their dependencies) on the host, downloaded once (``pip download``)."""
    folder = paths.STATE / "wheelhouse" / _digest(reqs.encode(), sys.version.encode())
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.txt").write_text(reqs)
    log(f"downloading the load-generator worker's wheels into {folder} (pip download, once)")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(folder), "-r", str(folder / "requirements.txt")],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise UserError(f"pip download of the worker's wheels failed: {tail}", "check that PyPI is reachable (or pre-fill the wheelhouse)")
    done.write_text("ok\n")
    return folder


def image_tag(base_tag: str, reqs: str) -> str:
    """The loadgen image's content-hash tag (base, Dockerfile, requirements)."""
    dockerfile = (paths.IMAGES / "loadgen" / "Dockerfile").read_bytes()
    release = base_tag.split(":")[-1].split("-")[0] if ":" in base_tag else "custom"
    return f"{LOADGEN_REPO}:{release}-{_digest(base_tag.encode(), dockerfile, reqs.encode())}"


def ensure_image(flavour: str = "node", log: Callable[[str], None] = print) -> str:
    """The loadgen image for ``flavour``'s base, built offline when missing; returns its tag."""
    ref = images.ensure_images(flavour, log=log)  # makes sure the base exists
    reqs = requirements()
    tag = image_tag(ref.base_tag, reqs)
    if images._exists(tag):
        return tag
    import docker.errors

    wheels = wheelhouse(reqs, log)
    log(f"building {tag}")
    with tempfile.TemporaryDirectory(prefix="lbbench-loadgen-", dir=str(paths.STATE)) as tmp:
        ctx = Path(tmp)
        shutil.copy(paths.IMAGES / "loadgen" / "Dockerfile", ctx / "Dockerfile")
        (ctx / "requirements.txt").write_text(reqs)
        shutil.copytree(wheels, ctx / "wheels", ignore=shutil.ignore_patterns(".complete", "requirements.txt"))
        try:
            engine.client().images.build(
                path=str(ctx),
                tag=tag,
                buildargs={"BASE": ref.base_tag},
                rm=True,
                forcerm=True,
                pull=False,
                labels={images.LABEL: "lbbench"},
            )
        except docker.errors.DockerException as exc:  # BuildError, APIError
            lines = [str(chunk.get("stream", chunk.get("error", ""))).strip() for chunk in getattr(exc, "build_log", []) or []]
            tail = " | ".join(line for line in lines if line)[-400:] or str(exc)
            raise UserError(f"building {tag} failed: {tail}", "see the build log above") from None
    return tag


@dataclass
class WorkerSet:
    """N worker containers of one run."""

    lab: Any
    image: str
    count: int
    processes: int
    run_dir: Path
    settings: dict[str, Any]
    user_class: str
    master_host: str
    #: a free port of this run's own (never Locust's default 5557, which concurrent runs would share)
    master_port: int
    log: Callable[[str], None] = print
    containers: list[Any] = field(default_factory=list)

    def name(self, i: int) -> str:
        return f"loadgen-worker{i + 1}"

    def address(self, i: int) -> str:
        from ..topology.plan import LOADGEN_HOST_BASE, _host

        return _host(self.lab.plan.client_subnet, LOADGEN_HOST_BASE + i)

    def command(self) -> list[str]:
        cmd = [
            "python",
            "-m",
            "locust",
            "-f",
            f"{CODE_MOUNT}/bench/load/locustfile.py",
            "--worker",
            "--master-host",
            self.master_host,
            "--master-port",
            str(self.master_port),
            "--loglevel",
            "WARNING",
        ]
        if self.processes > 1:
            cmd[5:5] = ["--processes", str(self.processes)]
        return [*cmd, self.user_class]

    def start(self) -> None:
        """Create and start every worker container (labelled with the lab's run label)."""
        import docker.types

        from ..topology import render

        client = engine.client()
        api = client.api
        network = f"{self.lab.project}-client"
        ca = str(self.settings.get("ca") or "")
        binds = {
            str(paths.ROOT): {"bind": CODE_MOUNT, "mode": "ro"},
            str(self.run_dir): {"bind": str(self.run_dir), "mode": "rw"},
        }
        if ca:
            binds[ca] = {"bind": ca, "mode": "ro"}
        for i in range(self.count):
            name = self.name(i)
            labels = {
                render.LABEL_PROJECT: render.PROJECT_VALUE,
                render.LABEL_RUN: self.lab.project,
                render.LABEL_ROLE: "loadgen",
                "org.lbbench.service": name,
            }
            host_config = api.create_host_config(
                binds=binds,  # type: ignore[arg-type]  # the stubs are narrower than docker-py
                ulimits=[docker.types.Ulimit(name="nofile", soft=_fd_hard(), hard=_fd_hard())],
                init=True,
            )
            networking = api.create_networking_config({network: api.create_endpoint_config(ipv4_address=self.address(i))})  # type: ignore[arg-type]  # docker-py takes {network: endpoint}
            created = api.create_container(
                self.image,
                command=self.command(),
                name=f"{self.lab.project}-{name}",
                hostname=name,
                labels=labels,
                environment={"LBBENCH_LOAD": json.dumps(self.settings), "PYTHONPATH": CODE_MOUNT, "PYTHONUNBUFFERED": "1"},
                host_config=host_config,
                networking_config=networking,
                working_dir=str(self.run_dir),
            )
            api.start(created["Id"])
            container = client.containers.get(created["Id"])
            self.containers.append(container)
        self.log(f"{self.count} load-generator worker container(s) on {network}: {', '.join(self.address(i) for i in range(self.count))}")

    def failed(self) -> str | None:
        """The log tail of a worker that exited with an error, if any."""
        for c in self.containers:
            c.reload()
            if c.status in ("exited", "dead") and int(c.attrs["State"].get("ExitCode") or 0) != 0:
                tail = c.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
                return f"{c.name}: {tail}"
        return None

    def save_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(self.containers):
            with contextlib.suppress(Exception):  # a missing log must not fail the run
                (dest / f"{self.name(i)}.log").write_bytes(c.logs(timestamps=True))

    def remove(self) -> None:
        for c in self.containers:
            with contextlib.suppress(Exception):  # the lab's teardown removes by label anyway
                c.remove(force=True)
        self.containers = []


def _fd_hard() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1_048_576


def start_load(
    scenario: Any,
    host: str,
    lab: Any,
    run_dir: Path,
    collectors: Any,
    extra: dict[str, Any],
    workers: int = 0,
    image: str | None = None,
    log: Callable[[str], None] = print,
    warm: Any = None,
    gate: dict[str, Any] | None = None,
) -> tuple[Any, WorkerSet | None]:
    """Start the run's Locust: one headless Locust here, or its master here plus ``workers`` containers.

    ``warm``: a Locust process that imported ahead (bench.load.runner.start_warm) becomes it.
    ``gate`` (bench.load.runner.start_gate): the master waits at it, and tells it is up once every
    worker container is connected (bench.load.runner.gate_waiting); the workers get the same
    settings without it (they start their users when the master says, and the gate's owner is a
    process of this machine they cannot see).

    The Locust processes on this machine are counted as the ``loadgen`` container
    (bench/collect/cpu.py), every worker container as ``loadgen-worker<i>``.
    """
    from .runner import free_port, processes_of, start_locust, user_class

    if not workers:
        locust = start_locust(scenario, host, lab.tls.ca_pem, run_dir, scenario.duration, extra=extra, warm=warm)
        collectors.track_loadgen(locust.proc.pid)
        return locust, None
    assert image is not None
    gateway = lab.plan.client_gateway
    port = free_port(gateway)
    gated = {**extra, "start_gate": gate} if gate is not None else extra
    locust = start_locust(scenario, host, lab.tls.ca_pem, run_dir, scenario.duration, extra=gated, master=(gateway, port, workers), warm=warm)
    collectors.track_loadgen(locust.proc.pid)
    ws = WorkerSet(
        lab=lab,
        image=image,
        count=workers,
        processes=processes_of(scenario),
        run_dir=Path(run_dir),
        settings={k: v for k, v in (locust.settings or {}).items() if k != "start_gate"},
        user_class=user_class(scenario),
        master_host=gateway,
        master_port=port,
        log=log,
    )
    try:
        ws.start()
    except BaseException:
        ws.remove()
        raise
    for i, container in enumerate(ws.containers):
        collectors.track_container(ws.name(i), "loadgen", container)
    return locust, ws
