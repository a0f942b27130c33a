"""CPU counters: /proc/stat, cgroup v1 cpuacct.usage_percpu, cgroup v2 cpu.stat, and finding a cgroup."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.collect import cpu

DATA = Path(__file__).parent / "data" / "collect"
CONTAINER = "4e203fbc269d89263d143bd7b08ba563ec6f053ef4352e37fccbeedbb10da628"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def test_proc_stat_busy_seconds_per_core() -> None:
    per_core = cpu.parse_proc_stat(recorded("proc_stat.txt"), clk_tck=100)
    assert sorted(per_core) == [0, 1]  # the aggregate "cpu " line is not a core
    # cpu0: user 32969 + nice 0 + system 10525 + irq 0 + softirq 2373 + steal 42 (idle, iowait excluded)
    assert per_core[0] == pytest.approx((32969 + 10525 + 2373 + 42) / 100)
    assert per_core[1] == pytest.approx((29281 + 10731 + 2475 + 38) / 100)


def test_proc_stat_tolerates_old_kernels_with_fewer_fields() -> None:
    assert cpu.parse_proc_stat("cpu0 10 0 10 500 0 0 0\n", clk_tck=100) == {0: 0.2}


def test_cpuacct_usage_percpu_is_nanoseconds_per_core() -> None:
    assert cpu.parse_usage_percpu(recorded("cpuacct_usage_percpu.txt")) == pytest.approx([0.056765386, 0.094994806])


def test_cgroup_v2_cpu_stat_usage() -> None:
    assert cpu.parse_cpu_stat(recorded("cpu_stat_v2.txt")) == pytest.approx(0.151760)
    with pytest.raises(ValueError, match="no usage_usec"):
        cpu.parse_cpu_stat("user_usec 1\n")


def test_proc_pid_cgroup() -> None:
    v1 = cpu.parse_proc_cgroup(recorded("proc_pid_cgroup_v1.txt"))
    assert v1["cpuacct"] == v1["cpu"] == v1[""] == f"/docker/{CONTAINER}"
    assert "name=systemd" in v1
    v2 = cpu.parse_proc_cgroup(recorded("proc_pid_cgroup_v2.txt"))
    assert list(v2) == [""] and v2[""].startswith("/system.slice/docker-")


def test_hybrid_host_reads_v1_cpuacct() -> None:
    cg = cpu.Cgroups(recorded("mountinfo_hybrid.txt"))
    assert cg.version == 1
    assert cg.v1 is not None and cg.v1.mountpoint == "/sys/fs/cgroup/cpuacct"
    assert cg.v2 is not None and cg.v2.mountpoint == "/sys/fs/cgroup/unified"
    assert cg.v1.path_of(f"/docker/{CONTAINER}") == Path(f"/sys/fs/cgroup/cpuacct/docker/{CONTAINER}")
    forced = cpu.Cgroups(recorded("mountinfo_hybrid.txt"), prefer="v2")
    assert forced.version == 2 and forced.v2 is not None
    assert forced.v2.path_of(f"/docker/{CONTAINER}") == Path(f"/sys/fs/cgroup/unified/docker/{CONTAINER}")


def test_pure_v2_host() -> None:
    cg = cpu.Cgroups(recorded("mountinfo_v2.txt"))
    assert cg.version == 2 and cg.v1 is None
    assert cg.v2 is not None
    assert cg.v2.path_of("/system.slice/docker-x.scope") == Path("/sys/fs/cgroup/system.slice/docker-x.scope")


def test_comounted_v1_with_a_non_root_mount() -> None:
    # Inside a container without a cgroup namespace: the hierarchy's /docker/4c1f0e3a is mounted.
    cg = cpu.Cgroups(recorded("mountinfo_v1_nested.txt"))
    assert cg.v1 is not None and cg.v1.controllers == frozenset({"cpu", "cpuacct"})
    assert cg.v1.path_of("/docker/4c1f0e3a/inner") == Path("/sys/fs/cgroup/cpu,cpuacct/inner")
    assert cg.v1.path_of("/elsewhere") == Path("/sys/fs/cgroup/cpu,cpuacct/elsewhere")


def test_no_cgroup_mount_at_all() -> None:
    cg = cpu.Cgroups("22 27 0:21 / /proc rw,relatime - proc proc rw\n")
    assert cg.version is None
    with pytest.raises(OSError, match="no cgroup hierarchy"):
        cpu.LoadgenCgroup(cg, "x-loadgen")


def test_cpu_account_reads_v1_per_core_and_v2_total(tmp_path: Path) -> None:
    (tmp_path / "cpuacct.usage_percpu").write_text("1000000000 2500000000 \n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cpu.CpuAccount(tmp_path, 1).read() == [(0, 1.0), (1, 2.5)]
    assert cpu.CpuAccount(tmp_path, 2).read() == [(-1, 1.5)]


def test_memory_account_reads_v1_and_v2(tmp_path: Path) -> None:
    (tmp_path / "memory.usage_in_bytes").write_text("12894208\n")
    (tmp_path / "memory.kmem.usage_in_bytes").write_text("921600\n")
    (tmp_path / "memory.stat").write_text("cache 20480\nrss 11694080\nrss_huge 0\n")
    assert cpu.MemoryAccount(tmp_path, 1).read() == (12894208.0, 11694080.0, 921600.0)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.current").write_text("5000\n")
    (v2 / "memory.stat").write_text("anon 3000\nfile 1000\nslab 400\nkernel_stack 100\nsock 50\n")
    assert cpu.MemoryAccount(v2, 2).read() == (5000.0, 3000.0, 550.0)  # no `kernel` line: slab + stacks + sockets
    (v2 / "memory.stat").write_text("anon 3000\nkernel 700\n")
    assert cpu.MemoryAccount(v2, 2).read() == (5000.0, 3000.0, 700.0)


def test_memory_account_is_found_in_the_memory_hierarchy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    monkeypatch.setattr(cpu, "PROC", proc)
    account = cpu.Cgroups(mountinfo).memory_of(42)
    assert account == cpu.MemoryAccount(Path("/sys/fs/cgroup/memory/docker/abc"), 1)


def test_group_pids_finds_every_process_of_a_group_and_no_other() -> None:
    """A shell in a session of its own with two children: all three, nothing else."""
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True)
    try:
        for _ in range(100):
            members = cpu.group_pids(leader.pid)
            if len(members) == 3:
                break
            time.sleep(0.05)
        assert leader.pid in members and len(members) == 3
        assert os.getpid() not in members
        assert cpu.group_pids(os.getpgid(0)) and not set(cpu.group_pids(os.getpgid(0))) & set(members)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_loadgen_cgroup_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a fake hierarchy: created under lbbench/, pids written to cgroup.procs, removed at the end."""
    root = tmp_path / "cpuacct"
    root.mkdir()
    (root / "cgroup.procs").write_text("")
    mountinfo = f"33 31 0:30 / {root} rw,relatime - cgroup cgroup rw,cpuacct\n"
    cg = cpu.Cgroups(mountinfo)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        (self / "cgroup.procs").write_text("")  # the kernel would create it

    real_rmdir = Path.rmdir

    def rmdir(self: Path) -> None:
        (self / "cgroup.procs").unlink(missing_ok=True)  # the kernel ignores its control files
        real_rmdir(self)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "rmdir", rmdir)
    lg = cpu.LoadgenCgroup(cg, "lbbench-1234-loadgen")
    assert lg.path == root / "lbbench" / "lbbench-1234-loadgen"
    assert lg.account == cpu.CpuAccount(lg.path, 1)
    lg.add(99)
    assert lg.members() == {99}
    lg.remove()
    assert (root / "cgroup.procs").read_text() == "99"  # a leftover goes back to the root first
    assert not lg.path.exists() and not (root / "lbbench").exists()


def test_leftover_loadgen_cgroups_are_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cpuacct"
    (root / "lbbench" / "lbbench-aaaa-loadgen").mkdir(parents=True)
    (root / "lbbench" / "lbbench-bbbb-loadgen").mkdir()
    (root / "cgroup.procs").write_text("")
    (root / "lbbench" / "lbbench-aaaa-loadgen" / "cgroup.procs").write_text("4242\n")
    (root / "lbbench" / "lbbench-bbbb-loadgen" / "cgroup.procs").write_text("")
    real_rmdir = Path.rmdir

    def rmdir(self: Path) -> None:
        (self / "cgroup.procs").unlink(missing_ok=True)  # the kernel ignores its control files
        real_rmdir(self)

    monkeypatch.setattr(Path, "rmdir", rmdir)
    cg = cpu.Cgroups(f"33 31 0:30 / {root} rw,relatime - cgroup cgroup rw,cpuacct\n")
    assert cpu.remove_loadgen_cgroups("lbbench-aaaa", cg) == 1
    assert (root / "cgroup.procs").read_text() == "4242"
    assert (root / "lbbench" / "lbbench-bbbb-loadgen").exists()
    assert cpu.remove_loadgen_cgroups(None, cg) == 1
    assert not (root / "lbbench").exists()


def test_counter_files_are_read_again_from_the_start(tmp_path: Path) -> None:
    """Kept open between samples: each read gives the file's current content (a seq_file is made anew at offset 0)."""
    counter = tmp_path / "cpuacct.usage_percpu"
    counter.write_text("1000000000 2500000000 \n")
    files = cpu.CounterFiles()
    account = cpu.CpuAccount(tmp_path, 1, files)
    assert account.read() == [(0, 1.0), (1, 2.5)]
    counter.write_text("3000000000 4000000000 \n")  # same file, new values (and shorter than a whole read)
    assert account.read() == [(0, 3.0), (1, 4.0)]
    account.close()
    assert account.read() == [(0, 3.0), (1, 4.0)]  # opened again after a close
    account.close()


def test_counter_file_of_a_gone_process_reads_as_file_not_found() -> None:
    """A kept-open file whose owner went away (a removed cgroup says ENODEV, /proc ESRCH) raises FileNotFoundError, then reopens."""
    child = subprocess.Popen(["sleep", "30"])
    files = cpu.CounterFiles()
    try:
        assert files.read(Path(f"/proc/{child.pid}/stat")).startswith(f"{child.pid} (sleep)")
    finally:
        child.kill()
        child.wait()
    with pytest.raises(FileNotFoundError):
        files.read(Path(f"/proc/{child.pid}/stat"))
    assert files.read(Path("/proc/self/stat"))  # the failed file was dropped; others open afresh
    files.close()


def test_memory_stat_value_by_name() -> None:
    text = "cache 20480\nrss 11694080\nrss_huge 0\ntotal_rss 99\n"
    assert cpu.stat_value(text, "cache") == 20480  # the first line
    assert cpu.stat_value(text, "rss") == 11694080  # not rss_huge nor total_rss
    assert cpu.stat_value(text, "rss_huge") == 0
    assert cpu.stat_value(text, "mapped_file") is None
    assert cpu.stat_value("anon 3000", "anon") == 3000  # no newline at the end
    assert cpu.stat_value("anon x\n", "anon") is None


def test_v1_memory_without_kernel_memory_accounting(tmp_path: Path) -> None:
    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "memory.stat").write_text("rss 1024\n")
    assert cpu.MemoryAccount(tmp_path, 1).read() == (4096.0, 1024.0, None)


def test_counter_file_of_a_removed_cgroup_reads_as_file_not_found() -> None:
    """A container's cgroup removed while its counter file is kept open (the kernel says ENODEV): FileNotFoundError."""
    cgroups = cpu.Cgroups()
    mount = cgroups.v1 or cgroups.v2
    if mount is None:
        pytest.skip("no cgroup hierarchy here")
    path = Path(mount.mountpoint) / f"lbbench-unit-{os.getpid()}"
    try:
        path.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup here ({exc})")
    account = cpu.CpuAccount(path, cgroups.version or 1)
    try:
        assert account.read()
    finally:
        path.rmdir()
    with pytest.raises(FileNotFoundError):
        account.read()
