"""A config check that passed is remembered: the same files (apart from the lab's name and addresses) on the same images pass without a container.

Docker is not needed: the labs are rendered for real (configs, TLS, compose file), the
engine only answers which image id a tag names, and the check in the container is
replaced by one that records what it was asked and answers as told.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import engine, paths
from bench.spec import load_topology
from bench.topology import configcheck
from bench.topology.lab import Lab

SUBNETS = [("198.18.10.0/24", "198.18.11.0/24"), ("198.18.20.0/24", "198.18.21.0/24")]


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A private state folder, an engine that knows image ids, and a recording config check."""
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    ids = {"lbbench/node:test": "sha256:aa", "haproxy:other": "sha256:bb"}
    client = SimpleNamespace(images=SimpleNamespace(get=lambda tag: SimpleNamespace(id=ids[tag])))
    monkeypatch.setattr(engine, "client", lambda: client)
    state: dict[str, object] = {"checked": [], "answer": []}

    def node_check(image: str, configs: list[str], volumes: dict, labels: dict) -> list[str]:
        state["checked"].append((image, tuple(configs)))  # type: ignore[union-attr]
        return list(state["answer"])  # type: ignore[call-overload]

    monkeypatch.setattr(configcheck, "node_check", node_check)
    state["ids"] = ids
    return state


def lab(subnets: tuple[str, str], sets: list[str] | None = None, image: str = "lbbench/node:test") -> Lab:
    topo, _ = load_topology("split", None, sets or [])
    out = Lab(topo, image, log=lambda _m: None)
    out.prepare(subnets)
    return out


def test_a_passed_check_is_not_run_again_for_the_same_configs_on_other_addresses(machine: dict) -> None:
    first = lab(SUBNETS[0])
    assert first.check_configs() == [] and not first.check_remembered
    assert len(machine["checked"]) == 1 and len(machine["checked"][0][1]) == len(first.config_files())
    # another lab: another name, other subnets, a new CA; the same topology on the same image
    second = lab(SUBNETS[1])
    assert second.project != first.project and second.plan.vip != first.plan.vip
    assert second.check_configs() == [] and second.check_remembered
    assert len(machine["checked"]) == 1, "the remembered verdict stands for the check"


@pytest.mark.parametrize(
    "change",
    [
        ["lb.haproxy.frontend.lines.clients=[http-request deny if FALSE]"],  # a line in one config
        ["tls.key_type=rsa-2048"],  # the certificate HAProxy loads
    ],
)
def test_any_other_config_is_checked(machine: dict, change: list[str]) -> None:
    assert lab(SUBNETS[0]).check_configs() == []
    changed = lab(SUBNETS[0], change)
    assert changed.check_configs() == [] and not changed.check_remembered
    assert len(machine["checked"]) == 2


def test_another_image_with_the_same_tag_is_checked(machine: dict) -> None:
    assert lab(SUBNETS[0]).check_configs() == []
    machine["ids"]["lbbench/node:test"] = "sha256:cc"  # rebuilt: the tag names another image now
    again = lab(SUBNETS[0])
    assert again.check_configs() == [] and not again.check_remembered
    assert len(machine["checked"]) == 2


def test_a_refused_config_is_never_remembered(machine: dict) -> None:
    machine["answer"] = ["lb-a/frontend.cfg: unknown keyword 'frobnicate'"]
    for _ in range(2):
        problems = lab(SUBNETS[0]).check_configs()
        assert problems and "rendered config rejected: lb-a/frontend.cfg" in problems[0][0]
    assert len(machine["checked"]) == 2, "each refusal comes from the check itself"
    machine["answer"] = []
    assert lab(SUBNETS[0]).check_configs() == []
    assert len(machine["checked"]) == 3


def test_the_key_keeps_what_is_not_the_labs_name_or_addresses() -> None:
    def key(text: str, project: str = "lbbench-1", subnets: tuple[str, ...] = ("198.18.10.0/24",), ids: tuple[str, ...] = ("sha256:aa",)) -> str:
        return configcheck.verdict_key(ids, {"a.cfg": text}, project, subnets)

    base = key("# lbbench-1\nbind 198.18.10.100:443\nserver s 10.0.0.1:80\n")
    assert key("# lbbench-2\nbind 198.18.20.100:443\nserver s 10.0.0.1:80\n", "lbbench-2", ("198.18.20.0/24",)) == base
    # an address at the end of a sentence (keepalived.conf's comment) is one too
    assert key("holding 198.18.10.11.\n") == key("holding 198.18.20.11.\n", "lbbench-2", ("198.18.20.0/24",))
    assert key("# lbbench-1\nbind 198.18.10.101:443\nserver s 10.0.0.1:80\n") != base  # another host in the subnet
    assert key("# lbbench-1\nbind 198.18.10.100:443\nserver s 10.0.0.2:80\n") != base  # an address outside it
    assert key("# lbbench-1\nbind 198.18.10.100:443\nserver s 10.0.0.1:80\n", ids=("sha256:bb",)) != base
    assert configcheck.verdict_key(["sha256:aa"], {"a.cfg": "x"}, "p", [], [b"ecdsa"]) != configcheck.verdict_key(["sha256:aa"], {"a.cfg": "x"}, "p", [], [b"rsa"])


def test_only_the_most_recently_used_passes_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    monkeypatch.setattr(configcheck, "VERDICTS_KEPT", 3)
    folder = tmp_path / "state" / configcheck.VERDICTS_DIR
    keys = [f"{i:064x}" for i in range(5)]
    for t, key in enumerate(keys[:3]):
        configcheck.remember_pass(key)
        os.utime(folder / key, (1000 + t, 1000 + t))
    assert configcheck.passed_before(keys[0]), "a hit renews the oldest pass"
    configcheck.remember_pass(keys[3])
    configcheck.remember_pass(keys[4])
    assert sorted(p.name for p in folder.iterdir()) == sorted([keys[0], keys[3], keys[4]])
    assert not configcheck.passed_before(keys[1]) and not configcheck.passed_before(keys[2])
    assert not folder.joinpath(keys[1]).exists(), "asking does not bring a forgotten pass back"
