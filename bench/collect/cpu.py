"""CPU seconds per core: per container (cgroups), for the host, and for the load generator.

Containers: the cgroup of a container's main process is read from
``/proc/<pid>/cgroup`` and located through ``/proc/self/mountinfo`` (no guessed
paths). With cgroup v1 the ``cpuacct`` hierarchy gives ``cpuacct.usage_percpu``
(nanoseconds per core); with cgroup v2 only a total is available
(``cpu.stat`` ``usage_usec``), recorded as core -1. Hybrid hosts (v1
controllers plus a unified mount) use v1, where Docker places containers.

Host: ``/proc/stat`` per core, busy time = user + nice + system + irq +
softirq + steal (guest time is already inside user).

Load generator: Locust runs on the host, not in a container, so lbbench gives
it a cgroup of its own (:class:`LoadgenCgroup`) and moves its process group
there; forks inherit it.

Memory of a container (:class:`MemoryAccount`): with cgroup v1 the ``memory``
hierarchy's ``memory.usage_in_bytes`` (user memory plus the kernel memory charged
to the cgroup: socket structures, slab), ``memory.stat`` ``rss`` (anonymous) and
``memory.kmem.usage_in_bytes``; with v2 ``memory.current`` and ``memory.stat``
``anon`` / ``kernel`` (or slab + kernel_stack + sock on kernels without ``kernel``).
Socket buffers of v1 are only in ``memory.kmem.tcp.*`` when a TCP limit is set:
idle connections hold none, so the connection counts of the capacity model miss
little.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

#: Ticks per second of the counters in /proc/stat.
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
#: Name of the folder lbbench creates under a cgroup hierarchy's root.
CGROUP_PARENT = "lbbench"


# ---------------------------------------------------------------- parsers


def parse_proc_stat(text: str, clk_tck: int = CLK_TCK) -> dict[int, float]:
    """Busy CPU seconds per core from ``/proc/stat`` (``{core: seconds}``)."""
    out: dict[int, float] = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        fields = line.split()
        core = fields[0][3:]
        if not core.isdigit():
            continue
        # user nice system idle iowait irq softirq steal guest guest_nice
        v = [int(x) for x in fields[1:9]] + [0] * max(0, 9 - len(fields))
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        out[int(core)] = busy / clk_tck
    return out


def parse_usage_percpu(text: str) -> list[float]:
    """cgroup v1 ``cpuacct.usage_percpu`` (nanoseconds per core) as seconds per core."""
    return [int(x) / 1e9 for x in text.split()]


def parse_cpu_stat(text: str) -> float:
    """cgroup v2 ``cpu.stat``: total ``usage_usec`` as seconds."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError("cpu.stat has no usage_usec")


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as ``{controller: path}``; the v2 entry is under ``""``.

    Named v1 hierarchies keep their ``name=`` prefix (``name=systemd``).
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


@dataclass(frozen=True)
class CgroupMount:
    """One mounted cgroup hierarchy."""

    root: str  # the hierarchy's folder that is mounted (usually "/")
    mountpoint: str
    version: int  # 1 | 2
    controllers: frozenset[str]  # v1 only

    def path_of(self, cgroup_path: str) -> Path:
        """Host folder of a cgroup given as in /proc/<pid>/cgroup."""
        rel = cgroup_path
        if self.root != "/" and (rel == self.root or rel.startswith(self.root + "/")):
            rel = rel[len(self.root) :]
        return Path(self.mountpoint) / rel.lstrip("/")


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup (v1 and v2) mounts listed in ``/proc/self/mountinfo``."""
    mounts = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        fstype, _source, *rest = post.split()
        options = rest[0] if rest else ""
        if fstype == "cgroup2":
            mounts.append(CgroupMount(fields[3], _unescape(fields[4]), 2, frozenset()))
        elif fstype == "cgroup":
            opts = frozenset(o for o in options.split(",") if o not in ("rw", "ro"))
            mounts.append(CgroupMount(fields[3], _unescape(fields[4]), 1, opts))
    return mounts


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


# ---------------------------------------------------------------- counter files

#: errno of a read on a file whose cgroup or process is gone (kernfs says ENODEV, /proc ESRCH).
_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH)


class CounterFiles:
    """Kernel counter files kept open between samples, each read again from offset 0.

    A cgroup or /proc counter file is a seq_file: a read at offset 0 generates it anew,
    so one ``pread`` per sample gives the current values without an open and a close
    (1-10 us of CPU per file here instead of 20-30 us with ``Path.read_text``). A file whose
    cgroup was removed (container gone or restarted) answers ENODEV: that reads as
    FileNotFoundError, like a closed path would, and every file is opened again next time.
    """

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}

    def read(self, path: Path) -> str:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, 65536, 0)
            while len(data) % 65536 == 0 and data:  # a file longer than one read: read on to its end
                more = os.pread(fd, 65536, len(data))
                if not more:
                    break
                data += more
        except OSError as exc:
            self.close()
            if exc.errno in _GONE:
                raise FileNotFoundError(exc.errno, f"{path}: {os.strerror(exc.errno)}") from exc
            raise
        return data.decode()

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def stat_value(text: str, name: str) -> int | None:
    """The integer field ``name`` of a ``name value`` per line text (memory.stat), without parsing the rest.

    >>> stat_value("cache 20480\\nrss 11694080\\nrss_huge 0\\n", "rss")
    11694080
    """
    key = name + " "
    if text.startswith(key):
        at = len(key)
    else:
        at = text.find("\n" + key)
        if at < 0:
            return None
        at += len(key) + 1
    end = text.find("\n", at)
    value = text[at:] if end < 0 else text[at:end]
    return int(value) if value.strip().isdigit() else None


# ---------------------------------------------------------------- cgroup lookup


@dataclass(frozen=True)
class CpuAccount:
    """Where a cgroup's CPU counter lives and how to read it (its file kept open: :meth:`close` at the end)."""

    path: Path  # the cgroup folder
    version: int  # 1: cpuacct.usage_percpu per core; 2: cpu.stat total
    files: CounterFiles = field(default_factory=CounterFiles, compare=False, repr=False)

    def read(self) -> list[tuple[int, float]]:
        """``[(core, cumulative seconds)]``; core -1 is the total (cgroup v2)."""
        if self.version == 1:
            text = self.files.read(self.path / "cpuacct.usage_percpu")
            return list(enumerate(parse_usage_percpu(text)))
        return [(-1, parse_cpu_stat(self.files.read(self.path / "cpu.stat")))]

    def close(self) -> None:
        self.files.close()


@dataclass(frozen=True)
class MemoryAccount:
    """Where a cgroup's memory counters live and how to read them (files kept open: :meth:`close` at the end)."""

    path: Path  # the cgroup folder
    version: int  # 1 | 2
    files: CounterFiles = field(default_factory=CounterFiles, compare=False, repr=False)

    def read(self) -> tuple[float, float | None, float | None]:
        """``(usage, anonymous, kernel)`` bytes; the last two None when the cgroup does not say."""
        read = self.files.read
        if self.version == 1:
            usage = float(int(read(self.path / "memory.usage_in_bytes")))
            anon = stat_value(read(self.path / "memory.stat"), "rss")
            try:
                kernel: float | None = float(int(read(self.path / "memory.kmem.usage_in_bytes")))
            except (OSError, ValueError):  # no kernel-memory accounting in this kernel
                kernel = None
            return usage, None if anon is None else float(anon), kernel
        usage = float(int(read(self.path / "memory.current")))
        text = read(self.path / "memory.stat")
        anon, kernel_total, slab = stat_value(text, "anon"), stat_value(text, "kernel"), stat_value(text, "slab")
        if kernel_total is not None:
            kernel = float(kernel_total)
        elif slab is not None:
            kernel = float(slab + (stat_value(text, "kernel_stack") or 0) + (stat_value(text, "sock") or 0))
        else:
            kernel = None
        return usage, None if anon is None else float(anon), kernel

    def close(self) -> None:
        self.files.close()


class Cgroups:
    """The host's cgroup mounts, and how to find a process's CPU account in them."""

    def __init__(self, mountinfo: str | None = None, prefer: str = "auto"):
        if mountinfo is None:
            mountinfo = (PROC / "self" / "mountinfo").read_text()
        self.mounts = parse_mountinfo(mountinfo)
        self.v1 = next((m for m in self.mounts if m.version == 1 and "cpuacct" in m.controllers), None)
        self.v2 = next((m for m in self.mounts if m.version == 2), None)
        self.v1_memory = next((m for m in self.mounts if m.version == 1 and "memory" in m.controllers), None)
        if prefer == "v1":
            self.v2 = None
        elif prefer == "v2":
            self.v1 = None
        elif prefer != "auto":
            raise ValueError(f"prefer must be auto, v1 or v2, not {prefer!r}")

    @property
    def version(self) -> int | None:
        """1 or 2: the hierarchy CPU is read from (None: no cgroup mount found)."""
        return 1 if self.v1 else 2 if self.v2 else None

    def account_of(self, pid: int) -> CpuAccount:
        """The CPU account of the cgroup ``pid`` is in."""
        groups = parse_proc_cgroup((PROC / str(pid) / "cgroup").read_text())
        if self.v1 is not None and "cpuacct" in groups:
            return CpuAccount(self.v1.path_of(groups["cpuacct"]), 1)
        if self.v2 is not None and "" in groups:
            return CpuAccount(self.v2.path_of(groups[""]), 2)
        raise OSError(f"no cpuacct (v1) or unified (v2) cgroup for pid {pid}")

    def memory_of(self, pid: int) -> MemoryAccount:
        """The memory account of the cgroup ``pid`` is in (the hierarchy CPU is read from decides v1 or v2)."""
        groups = parse_proc_cgroup((PROC / str(pid) / "cgroup").read_text())
        if self.v1 is not None and self.v1_memory is not None and "memory" in groups:
            return MemoryAccount(self.v1_memory.path_of(groups["memory"]), 1)
        if self.v2 is not None and "" in groups:
            return MemoryAccount(self.v2.path_of(groups[""]), 2)
        raise OSError(f"no memory (v1) or unified (v2) cgroup for pid {pid}")


class LoadgenCgroup:
    """A cgroup lbbench creates for the load generator, so its CPU is counted per core.

    v1: ``<cpuacct mount>/lbbench/<name>/``; v2: ``<cgroup2 mount>/lbbench/<name>/``.
    :meth:`add_group` moves every process of a process group in (forks
    inherit the cgroup); :meth:`remove` moves any leftover back to the root and
    deletes the folder.
    """

    def __init__(self, cgroups: Cgroups, name: str):
        mount = cgroups.v1 or cgroups.v2
        if mount is None:
            raise OSError("no cgroup hierarchy to count load-generator CPU in")
        self.version = 1 if cgroups.v1 else 2
        self.root = Path(mount.mountpoint)
        self.path = self.root / CGROUP_PARENT / name
        self.path.mkdir(parents=True, exist_ok=True)
        self.account = CpuAccount(self.path, self.version)

    def members(self) -> set[int]:
        return {int(x) for x in (self.path / "cgroup.procs").read_text().split()}

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def add_group(self, pgid: int) -> int:
        """Move every process of process group ``pgid`` in; returns how many were moved."""
        members = self.members()
        moved = 0
        for pid in group_pids(pgid):
            if pid in members:
                continue
            try:
                self.add(pid)
                moved += 1
            except (ProcessLookupError, FileNotFoundError):
                pass  # exited meanwhile
        return moved

    def remove(self) -> None:
        """Move leftovers to the hierarchy root and delete the cgroup (and the parent when empty)."""
        _remove_cgroup(self.root, self.path)


def _remove_cgroup(root: Path, path: Path) -> None:
    if not path.exists():
        return
    for pid in (path / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # exited meanwhile
            (root / "cgroup.procs").write_text(pid)
    path.rmdir()
    with contextlib.suppress(OSError):  # other labs still use it
        path.parent.rmdir()


def remove_loadgen_cgroups(project: str | None = None, cgroups: Cgroups | None = None, keep: set[str] | frozenset[str] = frozenset()) -> int:
    """Remove load-generator cgroups a killed ``bench`` left behind (one project's, or all but ``keep``'s); returns how many.

    For a reaper such as ``bench down``: processes still inside go back to the root first.
    """
    cgroups = cgroups or Cgroups()
    removed = 0
    for mount in (cgroups.v1, cgroups.v2):
        if mount is None:
            continue
        root = Path(mount.mountpoint)
        parent = root / CGROUP_PARENT
        if not parent.is_dir():
            continue
        for child in sorted(parent.iterdir()):
            name = child.name[: -len("-loadgen")]
            if child.is_dir() and child.name.endswith("-loadgen") and project in (None, name) and name not in keep:
                try:
                    _remove_cgroup(root, child)
                    removed += 1
                except OSError:
                    pass
    return removed


def group_pids(pgid: int) -> list[int]:
    """PIDs of every process in process group ``pgid``.

    One ``getpgid`` call per process of the host (not a read of each ``/proc/<pid>/stat``,
    which cost ~20 times the CPU: the scan runs every few seconds while a load goes).
    """
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.getpgid(pid) == pgid:
                out.append(pid)
        except OSError:  # exited meanwhile
            continue
    return out


def read_host(files: CounterFiles | None = None) -> dict[int, float]:
    """Busy CPU seconds per core of the host (``files``: keep /proc/stat open between reads)."""
    path = PROC / "stat"
    return parse_proc_stat(files.read(path) if files is not None else path.read_text())
