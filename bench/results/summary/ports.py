"""``ports``: ephemeral ports per (source, destination) pair (bench/analysis/ports.py)."""

from __future__ import annotations

from .base import Figure, Section


class SourcePorts(Section):
    """``ports.by_source.<node>.<source address>``."""

    max_in_use: int | None
    max_time_wait: int | None
    max_utilisation_pct: Figure
    destinations: dict[str, int] | None
    """"<address>:<port>" -> most ports held towards it"""


class Ports(Section):
    max_in_use: int | None
    range_size: int | None
    max_utilisation_pct: Figure
    exhausted: bool | None
    first_exhaustion_at: Figure
    first_exhaustion_after_s: Figure
    exhausted_pairs: list[str] | None
    by_source: dict[str, dict[str, SourcePorts]] | None
    pairs_every_s: Figure = None
    max_sockets: int | None = None
    max_sockets_pct: Figure = None
