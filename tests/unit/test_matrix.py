"""Matrix arguments and files: names, inline variants, clear errors before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UserError
from bench.matrix import parse_matrix, run_command, run_matrix
from bench.spec import load_scenario, scenario_topology


def test_names() -> None:
    assert parse_matrix("m1, m4") == (["m1", "m4"], {})
    with pytest.raises(UserError, match="named twice"):
        parse_matrix("m1,m1")
    with pytest.raises(UserError, match="no variant named"):
        parse_matrix(" , ")


def test_matrix_file(tmp_path: Path) -> None:
    path = tmp_path / "variants.yaml"
    path.write_text("variants:\n  two-threads:\n    description: nbthread 2\n    overrides: {lb: {frontend: {nbthread: 2}}}\n  one-server:\n    overrides: {servers: {count: 1}}\n")
    names, extra = parse_matrix(str(path))
    assert names == ["two-threads", "one-server"]
    assert extra["two-threads"].overrides == {"lb": {"frontend": {"nbthread": 2}}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants:\n  x:\n    overides: {}\n")
    with pytest.raises(UserError, match=r"variants.x: overides: unknown field"):
        parse_matrix(str(bad))
    (tmp_path / "empty.yaml").write_text("variants: {}\n")
    with pytest.raises(UserError, match="expected a 'variants' mapping"):
        parse_matrix(str(tmp_path / "empty.yaml"))


def test_unknown_or_invalid_variant_fails_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no variant named 'm9'"):
        run_matrix("port-exhaustion", "m1,m9", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants:\n  zero:\n    overrides: {lb: {local_addresses: 0}}\n")
    with pytest.raises(UserError, match=r"lb.local_addresses: Input should be greater than or equal to 1"):
        run_matrix("port-exhaustion", str(bad), out=tmp_path / "y")
    assert not (tmp_path / "y").exists()
    with pytest.raises(UserError, match="--matrix and --variant both given"):
        run_command("smoke", matrix="base", variant="monolith")
    with pytest.raises(UserError, match="--repeat 0"):
        run_command("smoke", repeat=0)


def test_scenario_variants_and_overrides_compose() -> None:
    scenario, _ = load_scenario("port-exhaustion")
    m1, overrides = scenario_topology(scenario, "m1")
    assert m1.lb.local_addresses == 1
    assert m1.lb.sysctls.ip_local_port_range == "40000 40499"  # the scenario's own overrides stay
    assert overrides["servers"]["maxconn"] == 300
    # topology variants still work under a scenario, and --set wins last
    mono, _ = scenario_topology(scenario, "monolith", ["servers.maxconn=50"])
    assert mono.lb.layout == "monolith" and mono.servers.maxconn == 50


def test_fault_cycles_repeat_inside_one_run() -> None:
    scenario, _ = load_scenario("failover")
    repeated = scenario.with_repeats(3)
    assert [f.at for f in repeated.faults] == [10.0, 30.0, 50.0]
    assert repeated.duration == scenario.duration + 2 * scenario.repeat.every
    short = scenario.model_copy(update={"repeat": scenario.repeat.model_copy(update={"every": 5.0})})
    with pytest.raises(UserError, match="shorter than one fault cycle"):
        short.with_repeats(2)


def test_extends(tmp_path: Path) -> None:
    s, _ = load_scenario("failover-freeze")
    assert s.faults[0].kind == "freeze" and s.load.users == load_scenario("failover")[0].load.users
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\nname: loop\n")
    with pytest.raises(UserError, match="loops back"):
        load_scenario(str(loop))


def test_no_engine_or_a_refused_first_run_leaves_no_matrix_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import engine, run

    def no_engine() -> None:
        raise UserError("the Docker engine is not reachable", "start it")

    monkeypatch.setattr(engine, "client", no_engine)
    with pytest.raises(UserError, match="not reachable"):
        run_matrix("port-exhaustion", "m1", out=tmp_path / "a")
    assert not (tmp_path / "a").exists()

    monkeypatch.setattr(engine, "client", lambda: None)
    monkeypatch.setattr(engine, "compose_binary", lambda: "compose")

    def refused(*_a: object, **_k: object) -> Path:
        raise UserError("image lbbench/node cannot be built", "see bench images build")

    monkeypatch.setattr(run, "run_scenario", refused)
    with pytest.raises(UserError, match="cannot be built"):
        run_matrix("port-exhaustion", "m1", out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    keep = tmp_path / "c"
    keep.mkdir()  # the user's own (empty) folder stays
    with pytest.raises(UserError):
        run_matrix("port-exhaustion", "m1", out=keep)
    assert keep.is_dir() and not any(keep.iterdir())
