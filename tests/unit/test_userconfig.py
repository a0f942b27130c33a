"""A user's own HAProxy configuration (lb.haproxy): lines, sections, templates, files, paths, what lbbench needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import Problems, UserError
from bench.spec import load_scenario, load_topology, scenario_topology
from bench.topology import userconfig
from bench.topology.plan import make_plan
from bench.topology.render import render_compose, render_configs

SUBNETS = ("198.18.10.0/24", "198.18.11.0/24")


def render(topology: str = "split", variant: str | None = None, sets: list[str] | None = None) -> dict[str, str]:
    topo, _ = load_topology(topology, variant, sets)
    return render_configs(make_plan(topo, "lbbench-test", *SUBNETS))


def problems_of(sets: list[str], topology: str = "split") -> list[str]:
    with pytest.raises(Problems) as info:
        render(topology, sets=sets)
    return [p for p, _ in info.value.problems]


def section_text(text: str, key: str) -> str:
    found, why = userconfig.find_section(userconfig.sections(text), key)
    assert found is not None, why
    return "\n".join(text.splitlines()[found.start : found.end])


def test_lines_land_in_their_sections_of_each_role() -> None:
    files = render(
        sets=[
            'lb.haproxy.all.lines.global=["tune.bufsize 32768"]',
            'lb.haproxy.frontend.lines.clients=["http-response set-header X-Edge %[env(HOSTNAME)]"]',
            "lb.haproxy.backend.lines.servers=http-request set-header X-Pool main",
        ]
    )
    fe, be = files["lb-a/frontend.cfg"], files["lb-b/backend2.cfg"]
    assert "tune.bufsize 32768" in section_text(fe, "global") and "tune.bufsize 32768" in section_text(be, "global")
    assert "http-response set-header X-Edge %[env(HOSTNAME)]" in section_text(fe, "clients")
    assert "X-Edge" not in be
    assert "    http-request set-header X-Pool main" in section_text(be, "servers")
    assert "X-Pool" not in fe
    # the user's lines are marked with the field they came from, and come after the template's own lines
    clients = section_text(fe, "clients").splitlines()
    assert clients.index("    # lb.haproxy.frontend.lines.clients (user)") > clients.index("    default_backend backend_processes")


def test_lines_given_as_one_block_and_sections_appended() -> None:
    topo, _ = load_topology("split", "monolith")
    topo = topo.model_copy(
        update={
            "lb": topo.lb.model_copy(
                update={
                    "haproxy": type(topo.lb.haproxy).model_validate(
                        {
                            "monolith": {
                                "lines": {"clients": "acl api path_beg /api\nuse_backend api if api\n"},
                                "sections": "backend api\n    server api1 198.18.11.21:8080\n",
                            }
                        }
                    )
                }
            )
        }
    )
    text = render_configs(make_plan(topo, "p", *SUBNETS))["lb-a/haproxy.cfg"]
    assert section_text(text, "clients").count("\n    ") >= 4
    assert "    use_backend api if api" in section_text(text, "clients")
    assert section_text(text, "backend api").endswith("    server api1 198.18.11.21:8080")
    assert "# lb.haproxy.monolith.sections (user)" in text


def test_section_keys_can_be_qualified_and_say_what_exists() -> None:
    text = "global\n    a\nfrontend x\n    b\nbackend x\n    c\n"
    assert userconfig.find_section(userconfig.sections(text), "backend x")[0].start == 4
    none, why = userconfig.find_section(userconfig.sections(text), "x")
    assert none is None and "2 sections match 'x'" in why and "KIND NAME" in why
    out, problems = userconfig.add_lines(text, [("o", "backend x", ["d"])])
    assert problems == [] and out.endswith("    c\n    # o.backend x (user)\n    d\n")


def test_every_problem_of_the_users_config_at_once_with_did_you_mean() -> None:
    found = problems_of(
        [
            'lb.haproxy.frontend.lines.client=["http-response set-header X-A 1"]',
            'lb.haproxy.backend.lines.sever=["http-request set-header X-B 1"]',
            'lb.haproxy.all.lines.global=["lua-load /etc/lbbench-files/missing.lua"]',
        ]
    )
    assert any("frontend config (lb-a-frontend): lb.haproxy.frontend.lines.client: no section 'client'; did you mean 'clients'?" in p for p in found)
    # one problem for both backend processes (and none repeated for lb-b)
    assert any(p.startswith("backend config (lb-a-backend1, lb-a-backend2): lb.haproxy.backend.lines.sever") and "'servers'" in p for p in found)
    assert sum("missing.lua" in p for p in found) == 2  # frontend and backend configs
    assert not any("lb-b" in p for p in found)


def test_user_template_is_used_verbatim_and_checked_for_what_lbbench_needs(tmp_path: Path) -> None:
    verbatim = (
        "global\n    stats socket {{ stats_socket }} mode 600 level admin\n\n"
        "defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 1s\n\n"
        "frontend clients\n    bind {{ vip }}:{{ https_port }} ssl crt {{ tls_crt }}\n    default_backend be\n\n"
        "frontend monitor\n    bind 127.0.0.1:{{ monitor_port }}\n    monitor-uri {{ monitor_uri }}\n\n"
        "backend be\n{% for h in backend_hops %}    server {{ h.name }} {{ h.addr }}:{{ h.port }} send-proxy-v2\n{% endfor %}"
    )
    (tmp_path / "fe.cfg.j2").write_text(verbatim)
    files = render(sets=[f"lb.haproxy.frontend.template={tmp_path / 'fe.cfg.j2'}"])
    fe = files["lb-a/frontend.cfg"]
    assert fe.startswith("global\n    stats socket /run/lbbench/lb-a-frontend.sock mode 600 level admin\n\ndefaults\n")
    assert "bind 198.18.10.100:443 ssl crt /etc/lbbench-tls/server.pem" in fe
    assert fe.count("send-proxy-v2") == 8 and "server be2-4 127.0.0.4:8002 send-proxy-v2" in fe
    assert "Rendered by lbbench" in files["lb-a/backend1.cfg"]  # the other roles keep the shipped templates
    # a template without the stats socket, the VIP listener and the monitor: each named, with its fix
    (tmp_path / "bare.cfg.j2").write_text("global\n    maxconn 10\n\nfrontend f\n    bind :8443\n")
    found = problems_of([f"lb.haproxy.frontend.template={tmp_path / 'bare.cfg.j2'}"])
    assert any("no `stats socket /run/lbbench/lb-a-frontend.sock`" in p for p in found)
    assert any("no TLS listener on the VIP (198.18.10.100:443 ssl)" in p for p in found)
    assert any("no `monitor-uri /lbbench-health` on 127.0.0.1:8404" in p and "keepalived" in p for p in found)
    # without keepalived's tracking the monitor is not needed
    found = problems_of([f"lb.haproxy.frontend.template={tmp_path / 'bare.cfg.j2'}", "keepalived.track_frontend=false"])
    assert not any("monitor-uri" in p for p in found) and len(found) == 2


def test_user_template_errors_name_file_line_and_variable(tmp_path: Path) -> None:
    (tmp_path / "a.cfg.j2").write_text("global\n    maxconn {{ no_such_variable }}\n")
    (tmp_path / "b.cfg.j2").write_text("global\n{% for x in %}\n")
    found = problems_of([f"lb.haproxy.frontend.template={tmp_path / 'a.cfg.j2'}", f"lb.haproxy.backend.template={tmp_path / 'b.cfg.j2'}"])
    assert any("'no_such_variable' is undefined" in p for p in found)
    assert any("b.cfg.j2 line 2" in p for p in found)


def test_user_template_may_include_shipped_partials(tmp_path: Path) -> None:
    (tmp_path / "be.cfg.j2").write_text(
        '{% include "_global.cfg.j2" %}\nfrontend in\n{% for b in backend_binds %}    bind {{ b }} accept-proxy\n{% endfor %}'
        '    default_backend servers\n\n{% include "_servers.cfg.j2" %}'
    )
    be = render(sets=[f"lb.haproxy.backend.template={tmp_path / 'be.cfg.j2'}"])["lb-a/backend2.cfg"]
    assert "bind 127.0.0.3:8002 accept-proxy" in be and "server srv3 198.18.11.23:8080 maxconn 100" in be


def test_paths_resolve_relative_to_the_file_naming_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lb").mkdir()
    (tmp_path / "lb" / "routes.map").write_text("/api api\n")
    (tmp_path / "scen").mkdir()
    (tmp_path / "scen" / "errors").mkdir()
    (tmp_path / "lb" / "topo.yaml").write_text(
        "name: mine\nlb:\n  haproxy:\n    files: [routes.map]\n"
        "variants:\n  tmpl:\n    overrides: {lb: {haproxy: {frontend: {template: fe.cfg.j2}}}}\n"
    )
    (tmp_path / "scen" / "s.yaml").write_text(
        f"name: s\ntopology: {tmp_path / 'lb' / 'topo.yaml'}\n"
        "overrides: {lb: {haproxy: {files: [../lb/routes.map, errors]}}}\n"
        "variants:\n  own:\n    overrides: {lb: {haproxy: {monolith: {template: own.cfg.j2}}}}\n"
    )
    topo, _ = load_topology(str(tmp_path / "lb" / "topo.yaml"), "tmpl")
    assert topo.lb.haproxy.files == [str(tmp_path / "lb" / "routes.map")]
    assert topo.lb.haproxy.frontend.template == str(tmp_path / "lb" / "fe.cfg.j2")
    scenario, _ = load_scenario(str(tmp_path / "scen" / "s.yaml"))
    monkeypatch.chdir(tmp_path)
    topo, _ = scenario_topology(scenario, "own", ["lb.haproxy.backend.template=here.j2"])
    assert topo.lb.haproxy.files == [str(tmp_path / "lb" / "routes.map"), str(tmp_path / "scen" / "errors")]
    assert topo.lb.haproxy.monolith.template == str(tmp_path / "scen" / "own.cfg.j2")
    assert topo.lb.haproxy.backend.template == str(tmp_path / "here.j2")
    assert userconfig.missing_files(topo.lb.haproxy) == [
        (f"lb.haproxy.backend.template: {tmp_path / 'here.j2'}: no such file", "check the path (relative paths are relative to the file naming them)"),
        (f"lb.haproxy.monolith.template: {tmp_path / 'scen' / 'own.cfg.j2'}: no such file", "check the path (relative paths are relative to the file naming them)"),
    ]


def test_files_are_copied_and_mounted_only_into_lb_haproxy(tmp_path: Path) -> None:
    (tmp_path / "paths.map").write_text("/a b\n")
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "503.http").write_text("HTTP/1.1 503\r\n\r\n")
    topo, _ = load_topology("split", None, [f"lb.haproxy.files=[{tmp_path / 'paths.map'}, {tmp_path / 'pages'}, {tmp_path / 'nope'}]"])
    dest = tmp_path / "out"
    problems = userconfig.copy_user_files(topo.lb.haproxy.files, dest)
    assert (dest / "paths.map").read_text() == "/a b\n" and (dest / "pages" / "503.http").exists()
    assert len(problems) == 1 and "nope: no such file or folder" in problems[0][0]
    compose = render_compose(make_plan(topo, "p", *SUBNETS), "img", Path("/s/configs"), Path("/s/tls"), Path("/s/run"))
    mounted = sorted(name for name, svc in compose["services"].items() if "/s/configs/files:/etc/lbbench-files:ro" in svc.get("volumes", []))
    assert mounted == ["lb-a-backend1", "lb-a-backend2", "lb-a-frontend", "lb-b-backend1", "lb-b-backend2", "lb-b-frontend"]


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (["lb.haproxy.all.template=x.j2"], "all.template: a template replaces one role's file"),
        (["lb.haproxy.files=[a/x.map, b/x.map]"], "two files named 'x.map'"),
        (['lb.haproxy.frontend.lines.clients=[1, {a: b}]'], "expected config lines as text"),
        (["lb.haproxy.frontend.linez.clients=x"], "lb.haproxy.frontend.linez: unknown field"),
    ],
)
def test_bad_user_config_fields(sets: list[str], expect: str) -> None:
    with pytest.raises(UserError, match=expect.replace("(", r"\(").replace(".", r"\.")):
        load_topology("split", None, sets)


def test_a_users_haproxy_image_runs_only_the_lb_processes() -> None:
    topo, _ = load_topology("split", None, ["lb.haproxy.image=haproxy:3.0"])
    plan = make_plan(topo, "p", *SUBNETS)
    services = render_compose(plan, "lbbench/node:x", Path("/c"), Path("/t"), Path("/r"), haproxy_image="haproxy:3.0")["services"]
    on_user = sorted(name for name, svc in services.items() if svc["image"] == "haproxy:3.0")
    assert on_user == ["lb-a-backend1", "lb-a-backend2", "lb-a-frontend", "lb-b-backend1", "lb-b-backend2", "lb-b-frontend"]
    fe = services["lb-a-frontend"]
    # its own entrypoint (upstream's adds -W) and user (upstream's is haproxy) replaced: foreground haproxy as root
    assert fe["entrypoint"] == ["haproxy"] and fe["command"] == ["-db", "-f", "/etc/lbbench/frontend.cfg"] and fe["user"] == "0:0"
    assert services["lb-a-keepalived"]["image"] == services["srv1"]["image"] == services["lb-a"]["image"] == "lbbench/node:x"
    assert "entrypoint" not in services["srv1"]
