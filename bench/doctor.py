"""`bench doctor`: can this machine run a lab, and how big?

Each check gives one line: ``ok``, ``warn`` (a run works but something limits
it) or ``FAIL`` (a run cannot start), with the fix. A FAIL makes the exit
status non-zero.
"""

from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from . import engine, images
from .errors import UserError


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # ok | warn | FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix and self.level != "ok" else ""
        return f"{self.level:<4} {self.name}: {self.detail}{fix}"


def _engine() -> tuple[Check, bool]:
    try:
        c = engine.client()
        v = c.version()
        info = c.info()
    except UserError as exc:
        return Check("engine", "FAIL", exc.problem, exc.fix or ""), False
    detail = (
        f"Docker {v.get('Version')} (API {v.get('ApiVersion')}), storage {info.get('Driver')}, "
        f"cgroup v{info.get('CgroupVersion', '1')}"
    )
    return Check("engine", "ok", detail), True


def _compose() -> Check:
    try:
        cmd = engine.compose_binary()
        return Check("compose", "ok", f"{engine.compose_version()} ({' '.join(cmd)})")
    except UserError as exc:
        return Check("compose", "FAIL", exc.problem, exc.fix or "")


def _images() -> list[Check]:
    out = []
    for flavour in ("node",):
        ref = images.image_ref(flavour)
        if images._exists(ref.node_tag):
            out.append(Check(f"image {flavour}", "ok", ref.node_tag))
        elif images._exists(ref.base_tag):
            out.append(Check(f"image {flavour}", "warn", f"{ref.node_tag} not built yet (base present; builds in seconds on first run)", "bench images build"))
        else:
            can = (shutil.which("mmdebstrap") or shutil.which("debootstrap")) and os.geteuid() == 0
            level = "warn" if can else "FAIL"
            fix = "bench images build (about a minute, offline)" if can else "run `make setup` as root (installs mmdebstrap, builds the images)"
            out.append(Check(f"image {flavour}", level, f"{ref.node_tag} missing", fix))
    return out


def _cores() -> Check:
    n = os.cpu_count() or 1
    if n < 2:
        return Check("cores", "warn", f"{n} core: load generator and lab share one core; figures will be the client's", "use a machine with 2+ cores")
    return Check("cores", "ok", f"{n} cores (load generators and the lab share them; see the report's bottleneck line)")


def fd_limits() -> tuple[int, int]:
    """This process's soft and hard file-descriptor limits."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _fds() -> Check:
    soft, hard = fd_limits()
    # A Locust process holds one fd per connection; HAProxy two per proxied connection.
    per_loadgen = max(hard - 200, 0)
    per_haproxy = max((hard - 200) // 2, 0)
    detail = (
        f"soft {soft}, hard {hard}: at most ~{per_loadgen} client connections per load-generator process, "
        f"~{per_haproxy} proxied connections per HAProxy process; spread over processes beyond that"
    )
    if hard < 4096:
        return Check("file descriptors", "warn", detail, "raise the hard limit (ulimit -Hn) if you can")
    return Check("file descriptors", "ok", detail)


def _scales() -> list[Check]:
    """What the scalable scenarios (seed-peak) fit on this machine (bench/load/fit.py)."""
    from .load.fit import DEFAULT_SHARE, Machine, floor_digits, held_interval_of, max_scale, nice_floor
    from .spec import list_scenarios, scenario_topology

    out = []
    try:
        scenarios = [s for s in list_scenarios() if s.scalable]
    except UserError as exc:
        return [Check("scenarios", "FAIL", exc.problem, exc.fix or "")]
    for sc in scenarios:
        topo, _ = scenario_topology(sc)
        try:
            best, binding = max_scale(sc, topo, Machine.here(), held_interval_of(sc.load, topo))
        except UserError as exc:
            out.append(Check(f"scale of {sc.name}", "FAIL", exc.problem, exc.fix or ""))
            continue
        default = nice_floor(best * DEFAULT_SHARE)
        level = "ok" if default > 0 else "FAIL"
        out.append(
            Check(
                f"scale of {sc.name}",
                level,
                f"fits up to --scale {floor_digits(best):g} (limited by {binding}); runs at {default:g} by default",
                "a machine with more cores or file descriptors",
            )
        )
    return out


def _socket_table(proc_net: Path = Path("/proc/sys/net/ipv4"), sockstat: Path = Path("/proc/net/sockstat")) -> Check:
    """Whether the lab's network namespaces get a TCP hash table of their own (Linux >= 6.1).

    Without one (``net.ipv4.tcp_child_ehash_entries`` 0, the default) every namespace shares the
    host's table, and the collectors' address-pair dump of an LB namespace (every 5 s) walks every
    TCP socket of the host: its cost grows with sockets that are not the lab's. lbbench never
    changes the host itself; this says which command would.
    """
    name = "socket table"
    try:
        host = abs(int((proc_net / "tcp_ehash_entries").read_text()))
        child = int((proc_net / "tcp_child_ehash_entries").read_text())
    except (OSError, ValueError):
        return Check(name, "ok", "no TCP hash table per namespace in this kernel (Linux < 6.1): the collectors' socket dumps walk the host's whole table")
    command = f"sysctl -w net.ipv4.tcp_child_ehash_entries={host}"
    if child == 0:
        try:
            fields = sockstat.read_text().split("TCP:", 1)[1].split()
            now = int(fields[fields.index("inuse") + 1]) + int(fields[fields.index("tw") + 1])
            sockets = f"; the host's namespace holds {now:,} TCP sockets now"
        except (OSError, IndexError, ValueError):
            sockets = ""
        return Check(
            name,
            "warn",
            f"lab namespaces share the host's TCP hash table ({host:,} buckets{sockets}): the collectors' address-pair dump "
            "walks every TCP socket of the host, so its cost grows with sockets that are not the lab's",
            f"{command} before `bench run` (as root; each network namespace made afterwards, other containers' too, gets a table "
            f"of its own, {host * 8 // 2**20 or 1} MiB; put it in /etc/sysctl.d/ to keep it; docs/performance.md, 'Collectors')",
        )
    size = 1 << max(child - 1, 0).bit_length()
    if size < host:
        return Check(
            name,
            "warn",
            f"lab namespaces get TCP hash tables of their own of {size:,} buckets, smaller than the host's {host:,}: the kernel then "
            f"caps their TIME_WAIT sockets at {size // 2:,} (tcp_max_tw_buckets) instead of {host // 2:,}, which changes port-exhaustion runs",
            command,
        )
    return Check(name, "ok", f"lab namespaces get a TCP hash table of their own ({size:,} buckets): the collectors' socket dumps walk only the lab's sockets")


def _subnets(engine_ok: bool) -> Check:
    if not engine_ok:
        return Check("lab subnets", "FAIL", "cannot check without an engine", "start the engine first")
    from .topology.lab import free_subnet_pairs

    pairs = len(free_subnet_pairs())
    if pairs == 0:
        return Check("lab subnets", "FAIL", "no free /23 left in 198.18.0.0/16", "bench down --all")
    return Check("lab subnets", "ok", f"room for {pairs} more labs in 198.18.0.0/16 (a lab takes a /23)")


def _cgroup() -> Check:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return Check("cgroups", "ok", "v2 (per-container CPU from cpu.stat)")
    if Path("/sys/fs/cgroup/cpuacct").exists():
        return Check("cgroups", "ok", "v1 (per-container per-core CPU from cpuacct.usage_percpu)")
    return Check("cgroups", "warn", "no cgroup CPU accounting found: per-container CPU will be missing", "mount cgroupfs")


def _leftovers(engine_ok: bool) -> list[Check]:
    """Labs on the engine, by owner: live runs are reported and left alone; leftovers get the exact command."""
    if not engine_ok:
        return [Check("leftover labs", "warn", "cannot check without an engine")]
    from .labctl import owner_state
    from .topology import owner
    from .topology.lab import LabFiles, list_labs

    by_state: dict[str, list[str]] = {"live-run": [], "by-hand": [], "leftover": [], "unknown": []}
    live_text = []
    for project in sorted(list_labs()):
        who = owner.read_owner(LabFiles.for_project(project).root)
        state = owner_state(who)
        by_state[state].append(project)
        if state == "live-run" and who:
            live_text.append(f"{project} ({owner.describe(who)})")
    checks = []
    if live_text:
        checks.append(Check("labs of live runs", "ok", f"{len(live_text)} in use, leave them: {'; '.join(live_text)}"))
    if by_state["by-hand"]:
        names = " ".join(by_state["by-hand"])
        checks.append(Check("labs up by hand", "warn", f"{len(by_state['by-hand'])} left running by `bench up`: {names}", f"bench down {names} (when you are done with them)"))
    if by_state["leftover"]:
        names = " ".join(by_state["leftover"])
        checks.append(Check("leftover labs", "warn", f"{len(by_state['leftover'])} lab(s) whose run is gone: {names}", f"bench down {names}"))
    if by_state["unknown"]:
        names = " ".join(by_state["unknown"])
        checks.append(
            Check(
                "labs without an owner",
                "warn",
                f"{len(by_state['unknown'])} lab(s) with no owner recorded (an older lbbench made them, or one is still starting): {names}",
                f"bench down {names} (when no run of yours uses them)",
            )
        )
    if not by_state["leftover"] and not by_state["unknown"]:
        checks.append(Check("leftover labs", "ok", "none"))
    try:
        swept = engine.sweep_probes()
    except (UserError, docker.errors.DockerException):
        swept = 0  # the engine check above says why
    if swept:
        checks.append(Check("leftover probe containers", "ok", f"removed {swept} short-lived check container(s) left by killed lbbench processes"))
    return checks


def run_checks() -> list[Check]:
    """All checks, in order."""
    eng, ok = _engine()
    checks = [eng, _compose()]
    if ok:
        checks += _images()
    checks += [_cores(), _fds(), *_scales(), _cgroup(), _socket_table(), _subnets(ok), *_leftovers(ok)]
    return checks
