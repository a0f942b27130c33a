"""run.json's ``config_diff``: what a variant changed in the rendered configs (empty when nothing changed)."""

from __future__ import annotations

from bench.spec import load_topology
from bench.topology.diff import config_diff

ARGS = ("lbbench-diff", "198.18.10.0/24", "198.18.11.0/24")


def test_the_same_topology_gives_no_diff_and_a_changed_one_its_lines() -> None:
    base, _ = load_topology("split", None, [])
    same, _ = load_topology("split", None, [])
    assert same == base and same is not base
    assert config_diff(base, same, *ARGS) == ""
    changed, _ = load_topology("split", None, ["lb.local_addresses=1"])
    diff = config_diff(base, changed, *ARGS)
    assert "-    server be1-2 127.0.0.2:8001" in diff, diff[:400]
    assert config_diff(changed, base, *ARGS) != diff  # direction kept
