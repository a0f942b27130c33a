"""A user's own HAProxy configuration, live in a real lab (lb.haproxy: lines, sections, files, templates)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
import trustme

from bench.spec import load_topology
from bench.topology.lab import Lab, probe

from .conftest import project_leftovers

pytestmark = pytest.mark.integration

#: The smallest lab that still has every role of the split layout: one node, one backend process, one server.
SMALL = ["lb.nodes=1", "lb.backend.processes=1", "lb.local_addresses=1", "servers.count=1"]


def test_users_lines_sections_and_files_are_live(node_image: str, tmp_path: Path) -> None:
    (tmp_path / "routes.map").write_text("/api/ api-pool\n/static/ static-pool\n")
    # the user's own certificate, issued through an intermediate CA
    root = trustme.CA()
    cert = root.create_child_ca().issue_cert("www.example.test")
    (tmp_path / "chain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    root.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    (tmp_path / "mine.yaml").write_text(
        r"""
name: mine
tls: {certificate: chain.pem, key: key.pem, ca: root.pem}
lb:
  haproxy:
    files: [routes.map]              # relative to this file
    all:
      lines:
        global: [tune.bufsize 32768]
    frontend:
      lines:
        # a map lookup per request, its result in a response header the client sees
        clients: |
          http-request set-var(txn.route) path,map_beg(/etc/lbbench-files/routes.map,default)
          http-response set-header X-Route %[var(txn.route)]
    backend:
      lines:
        # a regex rewrite the dummy server sees in the path it echoes
        from_frontend: ['http-request replace-path ^/old/(.*) /new/\1']
        servers: ['http-response set-header X-Ops-Users 1 if { http_auth(ops) } || TRUE']
      sections: |
        userlist ops
            user admin insecure-password x
"""
    )
    topo, _ = load_topology(str(tmp_path / "mine.yaml"), None, SMALL)
    with Lab(topo, node_image, log=lambda _m: None) as lab:
        assert lab.plan is not None and lab.tls is not None
        assert lab.server_name == "www.example.test"

        def get(path: str) -> tuple[int, dict[str, str], bytes]:
            assert lab.plan is not None and lab.tls is not None
            return probe(lab.plan.vip, lab.tls.ca_pem, path, server_name=lab.server_name)

        status, headers, _ = get("/api/v1?echo=1")
        assert status == 200 and headers["x-route"] == "api-pool"
        assert headers["x-ops-users"] == "1"
        _, headers, _ = get("/other")
        assert headers["x-route"] == "default"
        _, _, body = get("/old/page?echo=1")
        assert json.loads(body)["path"] == "/new/page"
        # the user's chain is what the VIP serves: a client asking for another name is refused
        with pytest.raises(ssl.SSLCertVerificationError):
            probe(lab.plan.vip, lab.tls.ca_pem, "/", server_name="other.example.test")
        lab.copy_public_configs(tmp_path / "report-configs")
        copied = [p for p in (tmp_path / "report-configs").rglob("*") if p.is_file()]
        assert (tmp_path / "report-configs" / "files" / "routes.map").read_text().startswith("/api/ api-pool")
        assert (tmp_path / "report-configs" / "tls" / "ca.pem").read_bytes() == (tmp_path / "root.pem").read_bytes()
        assert not any(b"PRIVATE KEY" in p.read_bytes() for p in copied), "the user's key must never reach a report"
    assert project_leftovers(lab.project) == ([], [])


def test_user_template_runs_verbatim(node_image: str, tmp_path: Path) -> None:
    # A monolith template with no Jinja in it but the addresses lbbench gives (VIP, socket, certificate).
    template = tmp_path / "mono.cfg.j2"
    template.write_text(
        "global\n    stats socket {{ stats_socket }} mode 600 level admin\n\n"
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\n"
        "frontend web\n    bind {{ vip }}:443 ssl crt {{ tls_crt }}\n    http-response set-header X-Template mine\n    default_backend app\n\n"
        "frontend health\n    bind 127.0.0.1:{{ monitor_port }}\n    monitor-uri {{ monitor_uri }}\n\n"
        "backend app\n    option forwardfor\n{% for s in servers %}    server {{ s.name }} {{ s.addr }}:{{ s.port }}\n{% endfor %}"
    )
    topo, _ = load_topology("split", "monolith", [*SMALL, f"lb.haproxy.monolith.template={template}"])
    with Lab(topo, node_image, log=lambda _m: None) as lab:
        assert lab.plan is not None and lab.tls is not None
        status, headers, body = probe(lab.plan.vip, lab.tls.ca_pem, "/?echo=1")
        assert status == 200 and headers["x-template"] == "mine"
        assert json.loads(body)["client"] == lab.plan.client_gateway
        rendered = (lab.files.configs / "lb-a" / "haproxy.cfg").read_text()
        assert rendered.startswith("global\n    stats socket /run/lbbench/lb-a-haproxy.sock mode 600 level admin\n\ndefaults\n")
        assert f"frontend web\n    bind {lab.plan.vip}:443 ssl crt /etc/lbbench-tls/server.pem\n" in rendered


@pytest.fixture(scope="module")
def haproxy_30_image(node_image: str) -> str:
    """An upstream-style HAProxy 3.0 image (USER haproxy, its own entrypoint), built offline by the example's script."""
    import subprocess

    from bench import images
    from bench.paths import ROOT

    images.ensure_images("node-trixie")  # its base carries Debian 13's HAProxy 3.0
    subprocess.run([str(ROOT / "examples" / "haproxy-upgrade" / "build-image.sh")], check=True, capture_output=True, timeout=600)
    return "lbbench-example/haproxy:3.0"


def test_another_haproxy_build_runs_a_split_run_with_the_users_certificate(haproxy_30_image: str, tmp_path: Path) -> None:
    from bench.run import run_scenario

    root = trustme.CA()
    cert = root.issue_cert("shop.example.test")
    (tmp_path / "chain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    root.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    overrides = {
        "lb": {"nodes": 1, "backend": {"processes": 1}, "local_addresses": 1, "haproxy": {"image": haproxy_30_image}},
        "servers": {"count": 1},
        "tls": {"certificate": "chain.pem", "key": "key.pem", "ca": "root.pem"},  # relative to the scenario file
    }
    (tmp_path / "s.yaml").write_text(
        json.dumps(
            {
                "name": "own-build",
                "duration": "3s",
                "ramp_up": "1s",
                "load": {"engine": "lean", "model": "open", "requests_per_s": 100, "users": 5},
                "overrides": overrides,
            }
        )
    )
    run_dir = run_scenario(str(tmp_path / "s.yaml"), out=tmp_path / "run", log=lambda _m: None)
    run = json.loads((run_dir / "run.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run["status"] == "completed"
    assert run["haproxy_build"]["version"].startswith("3.0") and run["haproxy_build"]["lua"]
    assert run["versions"]["haproxy"].startswith("HAProxy version 3.0") and run["versions"]["haproxy_image"] == haproxy_30_image
    # the LB processes ran the 3.0 build; the dummy servers (and keepalived) stayed on the node image's Debian 12 builds
    running = run["lab"]["haproxy_running"]
    assert running["lb-a-frontend"].startswith("3.0") and running["lb-a-backend1"].startswith("3.0")
    assert running["srv1"].startswith("2.6") and run["versions"]["keepalived"].startswith("Keepalived v2.2")
    # the lean clients verified the user's chain for its name (SNI) on every request
    assert summary["requests"]["ok"] > 100 and summary["errors"]["total"] == 0
    assert "HAProxy build" in (run_dir / "report.html").read_text()
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


def test_validate_reports_every_problem_at_once_and_starts_no_lab(
    node_image: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import engine, paths
    from bench.cli import main

    def lbbench_objects() -> tuple[set[str], set[str]]:
        client = engine.client()
        label = "org.lbbench.project=lbbench"
        return ({c.id for c in client.containers.list(all=True, filters={"label": label})}, {n.id for n in client.networks.list(filters={"label": label})})

    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    before = lbbench_objects()
    code = main(
        [
            "validate",
            "smoke",
            "--scale",
            "2",  # smoke is not scalable
            "--set",
            'lb.haproxy.frontend.lines.clients=["http-request frobnicate"]',  # haproxy -c refuses it
            "--set",
            'lb.haproxy.backend.lines.servers=["balance nonsense"]',  # and this, in both backend processes
            "--set",
            "lb.haproxy.all.lines.defaults=[option httplog]",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("bench: error: ") and "problems in scenario smoke" in lines[0]
    found = lines[1:]
    assert any("--scale: scenario smoke is not scalable" in p for p in found)
    assert any("lb-a/frontend.cfg" in p and "frobnicate" in p for p in found)
    assert any("lb-a/backend1.cfg" in p and "balance only supports" in p for p in found)
    assert any("lb-a/backend2.cfg" in p and "balance only supports" in p for p in found)
    # lb-b's configs are refused alike: said once, not twice
    assert not any("lb-b/" in p for p in found) and sum("(the same in lb-b)" in p for p in found) == 3
    assert lbbench_objects() == before, "validate must leave no container or network"
    assert list((tmp_path / "state").glob("lbbench-*")) == [], "no lab's private files may be left"


def test_an_image_without_haproxy_is_refused_before_anything_starts(node_image: str, tmp_path: Path) -> None:
    import io
    import tarfile

    from bench import engine
    from bench.preflight import check_lab

    # the smallest image there is: one empty file, no shell, no haproxy
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    client = engine.client()
    client.api.import_image_from_data(buf.getvalue(), repository="lbbench-test/no-haproxy", tag="1", changes=["LABEL org.lbbench.project=lbbench"])
    try:
        topo, _ = load_topology("split", None, [*SMALL, "lb.haproxy.image=lbbench-test/no-haproxy:1"])
        checked = check_lab(topo, log=lambda _m: None)
        assert [p for p, _ in checked.problems] == ["image lbbench-test/no-haproxy:1 has no haproxy on its PATH"]
        assert checked.lab is not None and checked.configs_checked == 0
        checked.lab.discard()
        # the refused start (no haproxy to exec) left no "Created" probe container behind
        mine = client.containers.list(all=True, filters={"label": f"{engine.PROBE_LABEL}={engine.probe_tag()}"})
        assert mine == [], [c.status for c in mine]
    finally:
        client.images.remove("lbbench-test/no-haproxy:1", force=True)
