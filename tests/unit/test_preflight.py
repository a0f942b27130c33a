"""The checks before a run (bench.preflight) and `bench validate`, without Docker (--offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import paths
from bench.cli import main
from bench.errors import Problems, UserError
from bench.preflight import preflight
from bench.spec import Topology, did_you_mean, load_topology


def problems(*args: str, **kwargs: object) -> list[str]:
    with pytest.raises(Problems) as info:
        preflight(*args, for_run=False, with_engine=False, log=lambda _m: None, **kwargs)  # type: ignore[arg-type]
    return [p for p, _ in info.value.problems]


def test_every_problem_at_once_across_scenario_topology_fit_and_users_config(tmp_path: Path) -> None:
    found = problems(
        "smoke",
        sets=["lb.backend.processess=4", "tls.key_typ=rsa", "lb.nodes=5"],
        scale=2.0,
    )
    assert any("lb.backend.processess: unknown field; did you mean 'processes'?" in p for p in found)
    assert any("tls.key_typ: unknown field; did you mean 'key_type'?" in p for p in found)
    assert any("lb.nodes: Input should be less than or equal to 2" in p for p in found)
    # the topology did not validate: the fit (and its --scale problem) and the config checks need one
    assert len(found) == 3

    found = problems("smoke", sets=["lb.haproxy.files=[nope.map]", 'lb.haproxy.frontend.lines.client=["x"]'], scale=2.0)
    assert any("--scale: scenario smoke is not scalable" in p for p in found)
    assert any("nope.map: no such file or folder" in p for p in found)
    assert any("lines.client: no section 'client'; did you mean 'clients'?" in p for p in found)


def test_a_broken_scenario_still_has_its_topology_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nduraton: 10s\nload: {users: 0}\noverrides: {lb: {nodez: 1}}\n")
    found = problems(str(path), variant="nope", sets=["servers.count=0"])
    assert any("duraton: unknown field; did you mean 'duration'?" in p for p in found)
    assert any("load.users: Input should be greater than or equal to 1" in p for p in found)
    assert any("no variant named 'nope'" in p for p in found)
    # without the unknown variant: the scenario's overrides and --set are still checked
    assert any("lb.nodez: unknown field; did you mean 'nodes'?" in p for p in found)
    assert any("servers.count" in p for p in found)


def test_out_that_exists_is_a_problem_and_nothing_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")  # labs of others come and go in the shared one
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    found = problems("smoke", out=occupied)
    assert found == [f"{occupied} already exists and is not empty"]
    too_long = tmp_path / ("x" * 300)  # the file system refuses the name: a problem, never an OSError
    assert problems("smoke", out=too_long) == [f"--out {too_long}: name too long"]
    left = list((tmp_path / "state").glob("lbbench-*"))
    assert left == [], "a refused preflight must not leave a lab's private files"


def test_validate_ok_and_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "smoke", "--offline", "--render", str(tmp_path / "r"), "--set", 'lb.haproxy.frontend.lines.clients=["http-response set-header X-A 1"]'])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.startswith("ok  scenario smoke (scenarios/smoke.yaml), variant base, topology split")
    assert "your configuration: 1 line(s)" in out
    assert "X-A 1" in (tmp_path / "r" / "lb-b" / "frontend.cfg").read_text()
    assert (tmp_path / "r" / "tls" / "ca.pem").exists()
    assert not list((tmp_path / "r").rglob("server.pem")) and not any(b"PRIVATE KEY" in p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file())


def test_validate_prints_every_problem_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "smoke", "--offline", "--set", "lb.backend.processess=4", "--set", "tls.key_typ=rsa"])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2
    assert lines[0] == "bench: error: 2 problems in scenario smoke:"
    assert all(line.startswith("  - ") and "; fix: " in line for line in lines[1:]) and len(lines) == 3


def test_did_you_mean_walks_nested_models() -> None:
    assert did_you_mean(Topology, ("lb", "haproxy", "frontend", "lnies")) == "; did you mean 'lines'?"
    assert did_you_mean(Topology, ("keepalived", "advert")) == "; did you mean 'advert_int'?"
    assert did_you_mean(Topology, ("zzz",)) == ""
    topo, _ = load_topology("split")
    assert topo.lb.haproxy.customised is False


VV_26 = Path(__file__).parent / "data" / "haproxy-vv-2.6.txt"  # `haproxy -vv` of the node image (Debian 12)


def test_haproxy_vv_is_parsed_into_the_build() -> None:
    from bench.images import parse_vv

    b = parse_vv("lbbench/node:x", "sha256:" + "ab" * 32, VV_26.read_text())
    assert b.version == "2.6.12-1+deb12u3" and b.version_line.startswith("HAProxy version 2.6.12-1+deb12u3 2025/10/03")
    assert b.target == "linux-glibc" and b.options is not None and "USE_OPENSSL=1 USE_LUA=1" in b.options
    assert "+LUA" in b.features and "-QUIC" in b.features and "+OPENSSL" in b.features
    assert b.openssl == "OpenSSL 3.0.17 1 Jul 2025" and b.lua == "Lua 5.3.6"
    assert b.has_ssl and b.has_lua and b.as_dict()["vv"] == VV_26.read_text()


def test_haproxy_30_vv_too() -> None:
    from bench.images import parse_vv

    b = parse_vv("lbbench-example/haproxy:3.0", "sha256:" + "ef" * 32, (Path(__file__).parent / "data" / "haproxy-vv-3.0.txt").read_text())
    assert b.version == "3.0.11-1+deb13u4" and b.target == "linux-glibc"
    assert b.lua == "Lua 5.4.7" and b.openssl == "OpenSSL 3.5.7 9 Jun 2026" and "+QUIC" in b.features


def test_haproxy_check_messages_keep_the_reasons_only() -> None:
    from bench.topology.configcheck import clean_check_message, clean_fail_line

    raw = (
        "[NOTICE]   (1) : haproxy version is 2.6.12 "
        "[ALERT]    (1) : config : parsing [/lab/lb-a/frontend.cfg:36] : unknown keyword 'frobnicate' "
        "[ALERT]    (1) : config : Fatal errors found in configuration."
    )
    assert clean_check_message(raw) == "haproxy version is 2.6.12; parsing [/lab/lb-a/frontend.cfg:36] : unknown keyword 'frobnicate'"
    assert clean_fail_line("/lab/x.cfg: [ALERT] (9) : config : bad thing") == "/lab/x.cfg: bad thing"
    listed = "[ALERT] (1) : config : 'http-request' expects " + ", ".join(f"'a{i}'" for i in range(60)) + ", but got 'frobnicate'."
    assert clean_check_message(listed) == "'http-request' expects 'a0', 'a1', 'a2', 'a3', ... (56 more), but got 'frobnicate'."


def test_a_build_without_lua_or_tls_is_refused_where_the_configs_need_them() -> None:
    from bench.images import build_problems, parse_vv

    text = VV_26.read_text().replace("+LUA", "-LUA").replace("+OPENSSL", "-OPENSSL")
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("Built with Lua", "Built with OpenSSL")))
    b = parse_vv("my/haproxy:nolua", "sha256:" + "cd" * 32, text)
    assert not b.has_lua and not b.has_ssl
    found = [p for p, _ in build_problems(b, {"lb-a/frontend.cfg": "global\n    lua-load /etc/lbbench-files/x.lua\n", "lb-a/backend1.cfg": "global\n"})]
    assert any("has no TLS library" in p for p in found)
    assert any("has no Lua, and lb-a/frontend.cfg use Lua" in p for p in found)
    assert build_problems(b, {"lb-a/backend1.cfg": "global\n    # no lua here, lua-free\n"}) == build_problems(b, {})
    with pytest.raises(UserError, match="did not print a version"):
        parse_vv("busybox", "sha256:00", "sh: haproxy: not found\n")


def test_a_config_rejected_alike_on_both_nodes_is_one_problem() -> None:
    from bench.topology.configcheck import same_on_every_node

    found = same_on_every_node(
        [
            ("lb-a/frontend.cfg: [ALERT] parsing [/lab/lb-a/frontend.cfg:36]: unknown keyword 'x' (lb-a-frontend)", "f"),
            ("lb-b/frontend.cfg: [ALERT] parsing [/lab/lb-b/frontend.cfg:36]: unknown keyword 'x' (lb-b-frontend)", "f"),
            ("lb-b/backend1.cfg: only here", "f"),
        ],
        ["lb-a", "lb-b"],
    )
    assert [p for p, _ in found] == [
        "lb-a/frontend.cfg: [ALERT] parsing [/lab/lb-a/frontend.cfg:36]: unknown keyword 'x' (lb-a-frontend) (the same in lb-b)",
        "lb-b/backend1.cfg: only here",
    ]
