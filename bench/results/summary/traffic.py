"""``traffic``: Mbit/s on the LB nodes' client and server networks (bench/analysis/traffic.py)."""

from __future__ import annotations

from pydantic import Field

from .base import Figure, Section


class Mbps(Section):
    """Mean and peak second of the steady window, all nodes summed; ``in`` = received, ``out`` = sent."""

    in_: Figure = Field(alias="in")
    out: Figure
    in_max: Figure
    out_max: Figure


class Traffic(Section):
    client_mbps: Mbps | None
    server_mbps: Mbps | None
