"""`bench doctor`'s socket-table check on synthetic /proc/sys/net/ipv4 files: one line per case, with the fix."""

from __future__ import annotations

from pathlib import Path

from bench import doctor


def proc(tmp: Path, ehash: str | None, child: str | None, sockstat: str = "TCP: inuse 12 orphan 0 tw 30 alloc 40 mem 2\n") -> tuple[Path, Path]:
    net = tmp / "ipv4"
    net.mkdir(parents=True)
    if ehash is not None:
        (net / "tcp_ehash_entries").write_text(ehash)
    if child is not None:
        (net / "tcp_child_ehash_entries").write_text(child)
    (tmp / "sockstat").write_text("sockets: used 80\n" + sockstat)
    return net, tmp / "sockstat"


def test_shared_table_warns_with_the_one_command(tmp_path: Path) -> None:
    check = doctor._socket_table(*proc(tmp_path, "262144\n", "0\n"))
    assert check.level == "warn"
    assert "share the host's TCP hash table (262,144 buckets; the host's namespace holds 42 TCP sockets now)" in check.detail
    assert check.fix.startswith("sysctl -w net.ipv4.tcp_child_ehash_entries=262144 before `bench run`")
    assert "2 MiB" in check.fix and "/etc/sysctl.d/" in check.fix
    assert "; fix: sysctl -w" in check.line()


def test_own_table_of_the_hosts_size_is_ok(tmp_path: Path) -> None:
    check = doctor._socket_table(*proc(tmp_path, "262144\n", "200000\n"))  # the kernel rounds it up to 262144
    assert check.level == "ok" and "own (262,144 buckets)" in check.detail and "fix" not in check.line()


def test_a_smaller_own_table_warns_about_time_wait(tmp_path: Path) -> None:
    check = doctor._socket_table(*proc(tmp_path, "262144\n", "4096\n"))
    assert check.level == "warn"
    assert "4,096 buckets" in check.detail and "TIME_WAIT sockets at 2,048 (tcp_max_tw_buckets) instead of 131,072" in check.detail
    assert check.fix == "sysctl -w net.ipv4.tcp_child_ehash_entries=262144"


def test_old_kernel_and_unreadable_sockstat(tmp_path: Path) -> None:
    assert doctor._socket_table(*proc(tmp_path / "a", None, None)).level == "ok"  # Linux < 6.1: nothing to set
    check = doctor._socket_table(*proc(tmp_path / "b", "-262144\n", "0\n", sockstat="garbage\n"))  # doctor inside a namespace
    assert check.level == "warn" and "(262,144 buckets)" in check.detail
