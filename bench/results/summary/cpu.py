"""``cpu`` and ``collectors``: CPU of the host, every container and the collectors (bench/analysis/cpu.py)."""

from __future__ import annotations

from .base import Figure, Section


class ContainerCpu(Section):
    """``cpu.by_container.<name>``."""

    role: str | None
    node: str | None
    mean_pct: list[Figure] | None
    """one per core; null when only a total is known (cgroup v2)"""
    max_pct: list[Figure] | None
    total_mean_pct: Figure
    total_max_pct: Figure


class Cpu(Section):
    host_per_core_pct: list[Figure] | None
    host_mean_pct: Figure
    by_container: dict[str, ContainerCpu] | None
class Collectors(Section):
    cpu_pct: Figure
    by_collector: dict[str, Figure] | None = None
    """per collector (haproxy, cpu, sockets, netdev, vrrp, write), % of one core; empty for runs before it was measured"""
    socket_table: str | None = None
    """``own`` (every LB namespace had a TCP hash table of its own: the socket dumps walked the lab's sockets only)
    or ``shared`` (with the host: they walked every TCP socket of the host); null when unknown"""
    socket_table_buckets: int | None = None
    """buckets of that table (the smallest over the LB namespaces)"""
