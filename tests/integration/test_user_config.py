"""A user's own HAProxy configuration, live in a real lab (lb.haproxy: lines, sections, files, templates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.spec import load_topology
from bench.topology.lab import Lab, probe

from .conftest import project_leftovers

pytestmark = pytest.mark.integration

#: The smallest lab that still has every role of the split layout: one node, one backend process, one server.
SMALL = ["lb.nodes=1", "lb.backend.processes=1", "lb.local_addresses=1", "servers.count=1"]


def test_users_lines_sections_and_files_are_live(node_image: str, tmp_path: Path) -> None:
    (tmp_path / "routes.map").write_text("/api/ api-pool\n/static/ static-pool\n")
    (tmp_path / "mine.yaml").write_text(
        r"""
name: mine
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
        status, headers, _ = probe(lab.plan.vip, lab.tls.ca_pem, "/api/v1?echo=1")
        assert status == 200 and headers["x-route"] == "api-pool"
        assert headers["x-ops-users"] == "1"
        _, headers, _ = probe(lab.plan.vip, lab.tls.ca_pem, "/other")
        assert headers["x-route"] == "default"
        _, _, body = probe(lab.plan.vip, lab.tls.ca_pem, "/old/page?echo=1")
        assert json.loads(body)["path"] == "/new/page"
        assert (lab.files.configs / "files" / "routes.map").read_text().startswith("/api/ api-pool")
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
