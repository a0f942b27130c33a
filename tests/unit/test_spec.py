"""Spec validation: every mistake gives one clear line naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UserError
from bench.spec import deep_merge, load_scenario, load_topology, parse_duration, parse_set


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("name: x\nlb: {backend: {processes: 0}}\n", "lb.backend.processes: Input should be greater than or equal to 1 (got 0)"),
        ("name: x\nlb: {backendz: 1}\n", "lb.backendz: unknown field"),
        ("name: x\nlb: {timeouts: {connect: soon}}\n", "lb.timeouts.connect: not a duration: 'soon'"),
        ("name: x\ntls: {key_type: dsa}\n", "tls.key_type: Input should be 'ecdsa-p256' or 'rsa-2048'"),
        ("name: x\nlb: {sysctls: {ip_local_port_range: '5000 100'}}\n", "need 1024 <= low <= high <= 65535"),
        ("name: x\nkeepalived: {priority_backup: 200, priority_master: 150}\n", "priority_backup must be lower than priority_master"),
        ("name: x\nkeepalived: {preempt: false}\n", "priority_master 255 (the VIP's owner) always preempts"),
        ("name: x\nkeepalived: {priority_master: 256}\n", "keepalived.priority_master: Input should be less than or equal to 255"),
        ("lb: {}\n", "name: Field required"),
        ("name: x\nlb: [\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("schema_version: 99\nname: x\n", "schema_version 99 is newer"),
    ],
)
def test_topology_errors_are_one_line(tmp_path: Path, text: str, expect: str) -> None:
    path = write(tmp_path, "t.yaml", text)
    with pytest.raises(UserError) as info:
        load_topology(path)
    message = str(info.value)
    assert expect in message
    assert "\n" not in message
    assert "t.yaml" in message
    assert "fix:" in message


def test_shipped_topology_and_variants_validate() -> None:
    base, overrides = load_topology("split")
    assert base.lb.layout == "split" and overrides == {}
    for name in base.variants:
        _topo, overrides = load_topology("split", name)
        assert overrides == base.variants[name].overrides
    mono, _ = load_topology("split", "monolith")
    assert mono.lb.layout == "monolith"


def test_unknown_variant_and_topology() -> None:
    with pytest.raises(UserError, match=r"no variant named 'nope'.*use one of: .*monolith"):
        load_topology("split", "nope")
    with pytest.raises(UserError, match="no topology named 'nope'"):
        load_topology("nope")


def test_set_overrides_merge_and_validate() -> None:
    topo, overrides = load_topology("split", "monolith", ["lb.backend.processes=3", "tls.resumption=false"])
    assert topo.lb.layout == "monolith" and topo.lb.backend.processes == 3 and topo.tls.resumption is False
    assert overrides == {"lb": {"layout": "monolith", "backend": {"processes": 3}}, "tls": {"resumption": False}}
    with pytest.raises(UserError, match=r"\(--set\): lb.backend.processes: Input should be a valid integer"):
        load_topology("split", None, ["lb.backend.processes=many"])
    with pytest.raises(UserError, match=r"lb.nope: unknown field"):
        load_topology("split", None, ["lb.nope=1"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_set("lb.backend.processes")


def test_deep_merge_keeps_base_untouched() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    merged = deep_merge(base, {"a": {"b": 9}})
    assert merged == {"a": {"b": 9, "c": 2}, "d": 3}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


@pytest.mark.parametrize(("raw", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), (3, 3.0), ("1.5s", 1.5), ("1h", 3600.0)])
def test_parse_duration(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "ten", "-1s", "5 parsecs", True])
def test_parse_duration_rejects(raw: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(raw)


def test_scenario_duration_override_and_errors(tmp_path: Path) -> None:
    scenario, _ = load_scenario("smoke", "10s")
    assert scenario.duration == 10.0
    with pytest.raises(UserError, match="--duration: not a duration"):
        load_scenario("smoke", "ten")
    with pytest.raises(UserError, match=r"ramp_up .* must be shorter than duration"):
        load_scenario("smoke", "1s")
    bad = write(tmp_path, "s.yaml", "name: s\nload: {users: 0}\n")
    with pytest.raises(UserError, match=r"load.users: Input should be greater than or equal to 1"):
        load_scenario(bad)
    bad = write(tmp_path, "s2.yaml", "name: s\nload: {path: 'no-slash'}\n")
    with pytest.raises(UserError, match=r"load.path: must start with '/'"):
        load_scenario(bad)


def test_request_body_is_lean_only_and_bounded() -> None:
    from pydantic import ValidationError

    from bench.spec import Load

    assert Load(model="open", requests_per_s=10, request_body=65536).request_body == 65536
    with pytest.raises(ValidationError, match="request_body: only the lean engine supports this"):
        Load(engine="fasthttp", request_body=10)
    with pytest.raises(ValidationError, match="request_body"):
        Load(model="open", requests_per_s=10, request_body=-1)
