"""The lifecycle of one lab: allocate subnets, render, validate, start, wait, stop.

:class:`Lab` is a context manager. ``__enter__`` brings the lab up and, if
anything fails on the way, tears down what it started before re-raising;
``__exit__`` always tears down. Every container and network carries the labels
``org.lbbench.project=lbbench`` and ``org.lbbench.run=<project>``, so
:func:`down_all` can reap leftovers of any lab, even of a killed ``bench``.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import random
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from .. import engine, paths
from ..collect import netns
from ..collect.cpu import remove_loadgen_cgroups
from ..collect.nsnetlink import AddressWatch
from ..collect.statsock import stats_command
from ..errors import Problems, UserError, engine_error
from ..inputs import PROJECT_RE
from ..results.document import read_document, write_document
from ..results.lab import LabState
from ..results.layout import LabDir
from ..spec import USER_FILES_MOUNT, Topology
from ..tls import OwnCertificate, TLSFiles, check_own_certificate, make_tls
from . import configcheck, owner, render, userconfig
from .plan import Plan, make_plan

#: Lab subnets come from the benchmarking range (RFC 2544), never from private or public space.
LAB_RANGE = ipaddress.ip_network("198.18.0.0/16")
READY_TIMEOUT = 60.0
#: Seconds between checks while waiting for containers and stats sockets (the VIP is waited for by event).
READY_POLL_S = 0.05
#: Seconds between container listings (status, pids) while waiting.
CONTAINERS_EVERY_S = 0.5
SUBNET_ATTEMPTS = 4


def new_project_name() -> str:
    """A short, unique compose project name."""
    return f"lbbench-{uuid.uuid4().hex[:8]}"


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for net in engine.client().networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = cfg.get("Subnet")
            if subnet and ":" not in subnet:
                used.append(ipaddress.ip_network(subnet, strict=False))
    routes = subprocess.run(["ip", "-4", "-o", "route", "show"], capture_output=True, check=False, text=True).stdout
    for line in routes.splitlines():
        dest = line.split()[0]
        if dest != "default" and "/" in dest:
            used.append(ipaddress.ip_network(dest, strict=False))
    return used


def free_subnet_pairs() -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Free (client, server) /24 pairs: the halves of each /23 in 198.18.0.0/16 that nothing overlaps."""
    used = _used_networks()
    pairs = []
    for block in LAB_RANGE.subnets(new_prefix=23):
        if not any(block.overlaps(u) for u in used):
            client, server = block.subnets(new_prefix=24)
            pairs.append((client, server))
    return pairs


def allocate_subnets() -> tuple[str, str]:
    """Two free /24 subnets (client, server) inside 198.18.0.0/16."""
    pairs = free_subnet_pairs()
    if not pairs:
        raise UserError(
            "no free /23 left in 198.18.0.0/16 for a lab",
            "remove leftover labs with `bench down --all` or unused Docker networks",
        )
    # A random free pair, so labs started at the same moment rarely race for one.
    client, server = random.choice(pairs)
    return str(client), str(server)


@dataclass
class LabFiles:
    """Host folders of a running lab (under the private state folder)."""

    root: Path
    configs: Path  # rendered configs + compose.yaml (no private keys)
    tls: Path  # CA + server cert + private key
    run: Path  # stats sockets

    @classmethod
    def for_project(cls, project: str) -> LabFiles:
        d = LabDir(paths.STATE / project)
        return cls(d.root, d.configs, d.tls, d.sockets)


class Lab:
    """A running lab. Use as ``with Lab(topology, image) as lab: ...``."""

    def __init__(
        self,
        topology: Topology,
        image: str,
        variant: str | None = None,
        project: str | None = None,
        log: Callable[[str], None] = print,
        ready_timeout: float = READY_TIMEOUT,
        owner_kind: str = "run",
    ):
        """``owner_kind``: ``run`` when this process tears the lab down itself, ``up`` for a lab left running by hand."""
        self.topology = topology
        self.owner_kind = owner_kind
        self.image = image
        #: The image whose haproxy runs the LB processes: the user's build (lb.haproxy.image) or the node image.
        self.haproxy_image = topology.lb.haproxy.image or image
        self.variant = variant
        self.project = project or new_project_name()
        self.log = log
        self.ready_timeout = ready_timeout
        self.files = LabFiles.for_project(self.project)
        self.plan: Plan | None = None
        self.tls: TLSFiles | None = None
        #: The name clients send (SNI) and check the certificate against: None = the VIP's address (the run's own CA).
        self.server_name: str | None = None
        self.started = False
        #: The last :meth:`check_configs` passed without a container: the same files passed the same images' check before.
        self.check_remembered = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    def prepare(self, subnets: tuple[str, str] | None = None) -> Plan:
        """Render configs, TLS material and compose.yaml into the state folder; start nothing.

        Raises :class:`~bench.errors.Problems` naming every problem of the user's
        configuration (files missing, sections unknown, what lbbench needs left out).
        """
        client_subnet, server_subnet = subnets or allocate_subnets()
        self.plan = make_plan(self.topology, self.project, client_subnet, server_subnet, self.variant)
        for folder in (self.files.configs, self.files.tls, self.files.run):
            folder.mkdir(parents=True, exist_ok=True)
        self.files.root.chmod(0o700)
        # before any container exists: `bench status/doctor/down` see whose lab this is (bench/topology/owner.py)
        owner.write_owner(self.files.root, self.owner_kind)
        problems: list[tuple[str, str]] = []
        own = own_certificate(self.topology)
        if own is not None:
            problems, self.server_name = check_own_certificate(own)
        # a certificate of the user's that does not check out: the run's own CA renders the rest, for its problems
        self.tls = make_tls(self.files.tls, self.plan.vip, self.topology.tls.key_type, None if problems else own)
        problems += userconfig.copy_user_files(self.topology.lb.haproxy.files, self.files.configs / render.USER_FILES_DIR)
        try:
            rendered = render.render_configs(self.plan)
        except Problems as exc:
            raise Problems(problems + exc.problems, exc.context) from None
        if problems:
            raise Problems(problems, "lb.haproxy.files")
        for rel, text in rendered.items():
            target = self.files.configs / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        public = self.files.configs / "tls"
        public.mkdir(exist_ok=True)
        shutil.copy(self.tls.ca_pem, public / "ca.pem")
        shutil.copy(self.tls.server_crt, public / "server.crt")
        compose = render.render_compose(
            self.plan, self.image, self.files.configs, self.files.tls, self.files.run, haproxy_image=self.haproxy_image
        )
        (self.files.configs / "compose.yaml").write_text(render.dump_compose(compose))
        return self.plan

    def config_files(self) -> list[str]:
        """Every rendered HAProxy and keepalived config, relative to the configs folder."""
        return sorted(
            str(p.relative_to(self.files.configs))
            for p in self.files.configs.rglob("*")
            if p.suffix in (".cfg", ".conf") and p.relative_to(self.files.configs).parts[0] != render.USER_FILES_DIR
        )

    def check_configs(self) -> list[tuple[str, str]]:
        """Check every rendered config (``haproxy -c`` / ``keepalived -t``); returns EVERY failure as (problem, fix).

        The LB processes' configs go through the HAProxy build that will run them
        (the user's ``lb.haproxy.image`` when set); keepalived's and the dummy
        servers' through the node image. Mounts are the ones the containers get,
        so paths in the configs (certificate, the user's files) resolve alike.
        """
        assert self.plan is not None
        volumes = {
            str(self.files.configs): {"bind": configcheck.CHECK_MOUNT, "mode": "ro"},
            str(self.files.tls): {"bind": render.TLS_MOUNT, "mode": "ro"},
        }
        if self.topology.lb.haproxy.files:
            volumes[str(self.files.configs / render.USER_FILES_DIR)] = {"bind": USER_FILES_MOUNT, "mode": "ro"}
        files = self.config_files()
        key = self._verdict_key(files)
        self.check_remembered = key is not None and configcheck.passed_before(key)
        if self.check_remembered:
            return []  # the same files passed the same images' check before (bench/topology/configcheck.py)
        lb_configs = [f for f in files if f.startswith("lb-") and f.endswith(".cfg")]
        on_node = [f for f in files if self.haproxy_image == self.image or f not in lb_configs]
        labels = {render.LABEL_PROJECT: render.PROJECT_VALUE, render.LABEL_RUN: self.project}
        fix = "fix the topology field (or your lb.haproxy lines / template) that produced it"
        problems = [(f"rendered config rejected: {line}", fix) for line in configcheck.node_check(self.image, on_node, volumes, labels)]
        if self.haproxy_image != self.image:
            for line in configcheck.check_haproxy_configs(self.haproxy_image, lb_configs, volumes, labels):
                problems.append((f"rendered config rejected by {self.haproxy_image}: {line}", fix))
        if not problems and key is not None:
            configcheck.remember_pass(key)
        return configcheck.same_on_every_node(problems, [n.name for n in self.plan.nodes])

    def _verdict_key(self, files: list[str]) -> str | None:
        """The :func:`~bench.topology.configcheck.verdict_key` of checking ``files``: None when an image cannot be asked for its id.

        Besides the files and both images: the user's files (the configs name them),
        and the server certificate's kind (the run's own CA, of its key type) or the
        user's own certificate, key and CA (their bytes).
        """
        assert self.plan is not None
        try:
            image_ids = [str(engine.client().images.get(image).id) for image in (self.image, self.haproxy_image)]
        except (UserError, docker.errors.DockerException):
            return None  # the check itself says what is wrong
        extra = [f"key type {self.topology.tls.key_type}".encode()]
        own = own_certificate(self.topology)
        try:
            if own is not None:
                extra += [Path(f).read_bytes() for f in (own.certificate, own.key, own.ca)]
            user_files = self.files.configs / render.USER_FILES_DIR
            for path in sorted(user_files.rglob("*")) if user_files.is_dir() else []:
                if path.is_file():
                    extra += [str(path.relative_to(user_files)).encode(), path.read_bytes()]
            texts = {f: (self.files.configs / f).read_text() for f in files}
        except OSError:
            return None
        subnets = (self.plan.client_subnet, self.plan.server_subnet)
        return configcheck.verdict_key(image_ids, texts, self.project, subnets, extra)

    def validate(self) -> None:
        """Check every rendered config; raise :class:`~bench.errors.Problems` listing every rejected one."""
        problems = self.check_configs()
        if problems:
            raise Problems(problems, "the rendered configs")
        remembered = " (passed before, unchanged)" if self.check_remembered else ""
        self.log(f"configs valid: {len(self.config_files())} files checked with haproxy -c / keepalived -t{remembered}")

    def running_versions(self) -> dict[str, str]:
        """``{service: version}`` of every HAProxy process, from its own `show info` (``"?"`` when it does not answer)."""
        assert self.plan is not None
        services = [p.service for _, p in self.plan.haproxy_processes] + [s.name for s in self.plan.servers]
        out = {}
        for service in services:
            try:
                info = stats_command(self.socket_path(service), "show info", timeout=1.0)
            except OSError:
                info = ""
            out[service] = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Version:")), "?")
        return out

    def copy_public_configs(self, dest: Path) -> None:
        """Copy the rendered configs and the user's files (never a private key) to ``dest`` (a run's ``configs/``)."""
        shutil.copytree(self.files.configs, dest, dirs_exist_ok=True)
        for leaked in dest.rglob("*.pem"):
            if leaked.name != "ca.pem":  # only the CA may be there; anything else could hold a key
                leaked.unlink()
        for path in dest.rglob("*"):
            if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
                path.unlink()

    def discard(self) -> None:
        """Remove the private files of a lab that was prepared but never started (``bench validate``)."""
        assert not self.started
        shutil.rmtree(self.files.root, ignore_errors=True)

    def up(self, validated: bool = False) -> None:
        """Prepare (if not yet), validate (unless ``validated``: the preflight did), start and wait until the VIP answers HTTPS.

        Another lab may take the same free subnets between our check and our
        start; then Docker refuses the network and we retry on other subnets.
        """
        if self.plan is None:
            self.prepare()
        if not validated:
            self.validate()
        self.started = True
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            assert self.plan is not None
            self.log(f"starting {self.project}: {len(self.plan.services)} containers, VIP {self.plan.vip}")
            try:
                self._compose(["up", "-d", "--no-build", "--pull", "never", "--quiet-pull"], "starting the lab", timeout=180)
                break
            except UserError as exc:
                if "overlap" not in str(exc).lower() or attempt == SUBNET_ATTEMPTS:
                    raise
                self.log(f"subnets {self.plan.client_subnet} taken meanwhile; retrying on others")
                self._compose(["down", "-v", "--remove-orphans", "-t", "1"], "removing the half-started lab")
                self.prepare()
        self.wait_ready()
        self.write_state()

    def down(self) -> list[str]:
        """Stop and remove everything of this lab (idempotent), and drop its private files.

        Runs on the way out of a failed start too, so it never raises for what the
        engine or a tool says: every step is tried, and what failed is logged and
        returned (``bench down PROJECT`` retries); the error that brought us here
        stays the one the user sees.
        """
        problems: list[str] = []
        compose_file = self.files.configs / "compose.yaml"
        if compose_file.exists():
            try:
                # Killed, not stopped: by now the load has stopped and the collectors and the logs have
                # what the run keeps, so a grace period (keepalived's and HAProxy's own shutdowns, 2 s
                # for the slowest) would only delay the end (`bench down` kills too).
                subprocess.run(
                    [*engine.compose_binary(), "-f", str(compose_file), "-p", self.project, "down", "-v", "--remove-orphans", "-t", "0"],
                    capture_output=True,
                    check=False,
                    text=True,
                    timeout=180,
                )
            except (OSError, subprocess.TimeoutExpired, UserError) as exc:
                problems.append(f"compose down: {exc}")
        try:
            remove_by_label(f"{render.LABEL_RUN}={self.project}")
        except (UserError, docker.errors.DockerException) as exc:
            problems.append(f"removing its containers and networks: {engine_error(exc) or exc}")
        try:
            remove_loadgen_cgroups(self.project)
        except OSError as exc:
            problems.append(f"removing its load-generator cgroup: {exc}")
        shutil.rmtree(self.files.root, ignore_errors=True)
        self.started = False
        for problem in problems:
            self.log(f"teardown of {self.project} incomplete: {problem}; `bench down {self.project}` retries")
        return problems

    # ------------------------------------------------------------------ helpers

    def _compose(self, args: list[str], what: str, timeout: float = 120) -> subprocess.CompletedProcess:
        compose_file = self.files.configs / "compose.yaml"
        return engine.run_checked(
            [*engine.compose_binary(), "-f", str(compose_file), "-p", self.project, *args], what, timeout=timeout
        )

    def containers(self) -> dict[str, Any]:
        """Compose service name -> docker SDK container, for this lab."""
        found = engine.client().containers.list(all=True, filters={"label": f"{render.LABEL_RUN}={self.project}"})
        out = {}
        for c in found:
            service = c.labels.get("com.docker.compose.service")
            if service:
                out[service] = c
        return out

    def _states(self) -> dict[str, tuple[str, str]]:
        """Compose service name -> (container id, state) for this lab: one list, no inspect per container."""
        found = engine.client().api.containers(all=True, filters={"label": f"{render.LABEL_RUN}={self.project}"})
        out = {}
        for c in found:
            service = (c.get("Labels") or {}).get("com.docker.compose.service")
            if service:
                out[service] = (c["Id"], c.get("State") or "")
        return out

    def socket_path(self, service: str) -> Path:
        """Host path of a HAProxy process's stats socket."""
        return self.files.run / f"{service}.sock"

    def wait_ready(self) -> None:
        """Wait until every container runs, every HAProxy answers its socket and the VIP serves HTTPS.

        The VIP is waited for by event: an rtnetlink subscription to each LB node's
        address changes wakes the wait the moment keepalived adds it (polling at
        READY_POLL_S where a namespace cannot be watched).
        """
        assert self.plan is not None and self.tls is not None
        deadline = time.monotonic() + self.ready_timeout
        pending = "containers running"
        last_error = ""
        sockets = [p.socket for _, p in self.plan.haproxy_processes] + [s.socket for s in self.plan.servers]
        answering: set[str] = set()
        watch = AddressWatch()
        states: dict[str, tuple[str, str]] = {}
        nodes: dict[str, Any] = {}  # LB node -> its container, inspected once it runs (its pid: namespace, VIP)
        listed_at = -1.0
        try:
            while time.monotonic() < deadline:
                if time.monotonic() - listed_at >= CONTAINERS_EVERY_S:
                    states = self._states()
                    listed_at = time.monotonic()
                dead = [name for name, (_, state) in states.items() if state in ("exited", "dead")]
                if dead:
                    container = engine.client().containers.get(states[dead[0]][0])
                    raise UserError(
                        f"container {dead[0]} exited while starting: {self._log_tail(container)}",
                        "see the container log above; `bench doctor` checks the machine",
                    )
                missing = set(self.plan.services) - set(states)
                if missing:
                    pending = f"containers {sorted(missing)} to be created"
                    listed_at = -1.0
                    time.sleep(READY_POLL_S)
                    continue
                for node in self.plan.nodes:
                    cid, state = states[node.name]
                    if state == "running" and (node.name not in nodes or nodes[node.name].id != cid):
                        nodes[node.name] = engine.client().containers.get(cid)
                    pid = _container_pid(nodes[node.name]) if node.name in nodes else 0
                    if pid:
                        watch.add(pid)
                answering.update(s for s in sockets if s not in answering and _stats_ok(self.files.run / s))
                silent = [s for s in sockets if s not in answering]
                if silent:
                    pending = f"stats sockets {silent}"
                    time.sleep(READY_POLL_S)
                    continue
                holders = self.vip_holders(nodes)
                expected = self.expected_vip_holder()
                if len(holders) != 1 or (expected and holders != [expected]):
                    pending = f"the VIP on {expected or 'one node'} (held by {holders or 'nobody'})"
                    # woken by keepalived adding (or moving) the VIP; the timeout re-checks the containers
                    watch.wait(min(CONTAINERS_EVERY_S, max(0.0, deadline - time.monotonic())))
                    continue
                try:
                    status, _, _ = probe(self.plan.vip, self.tls.ca_pem, "/?echo=1", timeout=1.0, server_name=self.server_name)
                    # Ready = a server answers through every hop. A 503 means a hop is still down: a
                    # frontend that checked its backend processes before they listened marks them
                    # DOWN at once and needs `rise` good checks (2 x 2 s) to take them back.
                    if status < 500:
                        return
                    pending = f"a server's answer through the VIP {self.plan.vip}"
                    last_error = f"(HTTP {status})"
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    pending = f"HTTPS on the VIP {self.plan.vip}"
                    last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(READY_POLL_S)
        finally:
            watch.close()
        containers = self.containers()
        logs = "; ".join(f"{n}: {self._log_tail(c, 2)}" for n, c in sorted(containers.items())[:3])
        raise UserError(
            f"lab not ready after {self.ready_timeout:g}s: waiting for {pending} {last_error}".strip() + f" [{logs}]",
            "see the container logs; `bench doctor` checks the machine",
        )

    def write_state(self, **extra: Any) -> dict[str, Any]:
        """Write ``lab.json`` in the state folder: what `bench status`, `bench fault` and `bench down` need."""
        assert self.plan is not None
        info = {
            "schema_version": LabState.SCHEMA_VERSION,
            "project": self.project,
            "topology": self.topology.name,
            "topology_spec": self.topology.model_dump(mode="json"),
            "variant": self.variant,
            "vip": self.plan.vip,
            "ca": str(self.files.configs / "tls" / "ca.pem"),
            "client_subnet": self.plan.client_subnet,
            "server_subnet": self.plan.server_subnet,
            "nodes": [n.name for n in self.plan.nodes],
            "image": self.image,
            "haproxy_image": self.haproxy_image,
            "server_name": self.server_name,
            "events": str(LabDir(self.files.root).events),
            **extra,
        }
        return write_document(LabState, info, LabDir(self.files.root).lab_json)

    @classmethod
    def attach(cls, project: str, log: Callable[[str], None] = print) -> tuple[Lab, dict[str, Any]]:
        """The running lab ``project`` (from its lab.json), to inject faults into or inspect; never started or stopped here."""
        info = read_state(project)
        topo = Topology.model_validate(info["topology_spec"])
        lab = cls(topo, info["image"], info.get("variant"), project=project, log=log)
        lab.plan = make_plan(topo, project, info["client_subnet"], info["server_subnet"], info.get("variant"))
        return lab, info

    def expected_vip_holder(self) -> str | None:
        """The node that should hold the VIP once the lab settles (None: either may)."""
        assert self.plan is not None
        if not self.topology.keepalived.preempt and len(self.plan.nodes) > 1:
            return None
        return max(self.plan.nodes, key=lambda n: n.priority).name

    def vip_holders(self, containers: dict[str, Any] | None = None) -> list[str]:
        """LB nodes whose namespace currently holds the VIP (normally exactly one); ``containers`` as from :meth:`containers`."""
        assert self.plan is not None
        holders = []
        containers = self.containers() if containers is None else containers
        for node in self.plan.nodes:
            c = containers.get(node.name)
            if c is not None and c.status == "running" and self._holds_vip(c):
                holders.append(node.name)
        return holders

    def _holds_vip(self, container: Any) -> bool:
        """The node's local addresses from ``/proc/<pid>/net/fib_trie`` (no exec); ``ip addr`` inside it where /proc is not ours."""
        assert self.plan is not None
        pid = _container_pid(container)
        if pid:
            try:
                return self.plan.vip in netns.parse_fib_trie_local(netns.read(Path(f"/proc/{pid}/net/fib_trie")))
            except OSError:
                pass  # an engine on another machine, or the process just went away
        try:
            code, out = container.exec_run(["ip", "-o", "-4", "addr", "show"])
        except docker.errors.APIError:
            return False
        return code == 0 and f" {self.plan.vip}/" in out.decode(errors="replace")

    @staticmethod
    def _log_tail(container: Any, lines: int = 3) -> str:
        try:
            text = container.logs(tail=lines).decode(errors="replace").strip()
        except docker.errors.APIError:
            return "(no log)"
        return " | ".join(text.splitlines()) or "(empty log)"

    def save_logs(self, dest: Path) -> None:
        """Write each container's log to ``dest/<service>.log``."""
        dest.mkdir(parents=True, exist_ok=True)
        for name, c in self.containers().items():
            with contextlib.suppress(docker.errors.APIError):
                (dest / f"{name}.log").write_bytes(c.logs(timestamps=True))


def own_certificate(topology: Topology) -> OwnCertificate | None:
    """The user's certificate of ``topology`` (``tls.certificate``, ``.key``, ``.ca``), or None for the run's own CA."""
    t = topology.tls
    if t.certificate is None or t.key is None or t.ca is None:
        return None
    return OwnCertificate(t.certificate, t.key, t.ca, t.server_name)


def _container_pid(container: Any) -> int:
    return int(((container.attrs or {}).get("State") or {}).get("Pid") or 0)


def _stats_ok(path: Path) -> bool:
    try:
        return "Name:" in stats_command(path, "show info", timeout=0.5)
    except OSError:
        return False


def probe(
    vip: str, ca_pem: Path, path: str = "/?echo=1", timeout: float = 2.0, server_name: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTPS GET to the VIP with CA verification; returns status, headers and body.

    ``server_name`` (a user's own certificate) is sent as SNI and the
    certificate checked against it; otherwise against the VIP's address. Only
    lab addresses are accepted: this refuses anything outside 198.18.0.0/15.
    """
    if ipaddress.ip_address(vip) not in ipaddress.ip_network("198.18.0.0/15"):
        raise ValueError(f"refusing to send traffic to {vip}: not a lab address")
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    conn = http.client.HTTPSConnection(vip, 443, timeout=timeout, context=ctx)
    if server_name:
        sock = socket.create_connection((vip, 443), timeout=timeout)
        conn.sock = ctx.wrap_socket(sock, server_hostname=server_name)
    try:
        conn.request("GET", path, headers={"Host": server_name} if server_name else {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def remove_by_label(label: str) -> tuple[int, int]:
    """Remove every container and network carrying ``label`` (``key=value``); returns counts."""
    client = engine.client()
    n_containers = 0
    for c in client.containers.list(all=True, filters={"label": label}):
        try:
            c.remove(force=True, v=True)
            n_containers += 1
        except docker.errors.NotFound:
            pass
    n_networks = 0
    for net in client.networks.list(filters={"label": label}):
        try:
            net.remove()
            n_networks += 1
        except docker.errors.NotFound:
            pass
    for vol in client.volumes.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            vol.remove(force=True)
    return n_containers, n_networks


def live_projects() -> dict[str, dict[str, Any]]:
    """Labs that belong to a live run: project -> owner record (see bench/topology/owner.py)."""
    out: dict[str, dict[str, Any]] = {}
    if paths.STATE.exists():
        for child in paths.STATE.iterdir():
            if child.is_dir() and child.name.startswith("lbbench-"):
                who = owner.live_run_owner(child)
                if who is not None:
                    out[child.name] = who
    return out


def down_all(force: bool = False) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """Remove every leftover of every lbbench lab (containers, networks, volumes, load-generator cgroups, private files).

    Labs of a live run are skipped unless ``force``; returns (containers, networks, skipped project -> owner).
    """
    skipped = {} if force else live_projects()
    n_containers = n_networks = 0
    label = f"{render.LABEL_PROJECT}={render.PROJECT_VALUE}"
    client = engine.client()
    projects = {c.labels.get(render.LABEL_RUN, "") for c in client.containers.list(all=True, filters={"label": label})}
    projects |= {n.attrs.get("Labels", {}).get(render.LABEL_RUN, "") for n in client.networks.list(filters={"label": label})}
    for project in sorted(projects - set(skipped) - {""}):
        c, n = remove_by_label(f"{render.LABEL_RUN}={project}")
        n_containers, n_networks = n_containers + c, n_networks + n
    for container in client.containers.list(all=True, filters={"label": label}):
        if not container.labels.get(render.LABEL_RUN):  # ours, but of no lab: nothing can own it
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
                n_containers += 1
    remove_loadgen_cgroups(None, keep=set(skipped))
    if paths.STATE.exists():
        for child in paths.STATE.iterdir():
            if not (child.is_dir() and child.name.startswith("lbbench-")) or child.name in skipped:
                continue
            if child.name.startswith("lbbench-loadgen-") and not force:
                continue  # a worker image build's temporary folder: its run removes it
            shutil.rmtree(child, ignore_errors=True)
    return n_containers, n_networks, skipped


#: The label Compose puts on every container it makes: the project (our lab's name).
COMPOSE_PROJECT = "com.docker.compose.project"


def labs_of(containers: list[Any]) -> set[str]:
    """The lbbench labs among ``containers``: compose projects whose containers carry our project label and name their lab.

    Only a container that Compose made for one of our labs proves a lab
    (``com.docker.compose.project`` equal to its ``org.lbbench.run``, a lab
    name). Our own containers of no lab (a config check, ``haproxy -vv`` of a
    user's build, calibrate) and strangers' containers never count as one.
    """
    labs = set()
    for c in containers:
        labels = c.labels or {}
        if labels.get(render.LABEL_PROJECT) != render.PROJECT_VALUE:
            continue
        project = labels.get(COMPOSE_PROJECT)
        if project and project == labels.get(render.LABEL_RUN) and PROJECT_RE.match(project):
            labs.add(project)
    return labs


def list_labs() -> dict[str, list[dict[str, str]]]:
    """Running labs: project -> [{service, status, role, node}] (every container of the lab: Compose's and its load workers)."""
    out: dict[str, list[dict[str, str]]] = {}
    label = f"{render.LABEL_PROJECT}={render.PROJECT_VALUE}"
    containers = engine.client().containers.list(all=True, filters={"label": label})
    labs = labs_of(containers)
    for c in containers:
        project = c.labels.get(render.LABEL_RUN, "")
        if project not in labs:
            continue
        out.setdefault(project, []).append(
            {
                "service": c.labels.get("com.docker.compose.service", c.name or ""),
                "status": c.status,
                "role": c.labels.get(render.LABEL_ROLE, ""),
                "node": c.labels.get(render.LABEL_NODE, ""),
            }
        )
    return out


def read_state(project: str) -> dict[str, Any]:
    """The lab.json a `bench up` wrote for ``project`` (VIP, CA path ...)."""
    path = LabDir(LabFiles.for_project(project).root).lab_json
    if not path.exists():
        raise UserError(f"no lab {project!r} is up", "`bench status` lists running labs")
    return read_document(LabState, path).model_dump(mode="json", exclude_unset=True)
