"""Config rendering against golden files (run with --update-golden to refresh after a deliberate change)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.spec import load_topology
from bench.topology.plan import make_plan
from bench.topology.render import dump_compose, render_compose, render_configs

from ..conftest import GOLDEN

SUBNETS = ("198.18.10.0/24", "198.18.11.0/24")


def rendered(variant: str | None) -> dict[str, str]:
    topo, _ = load_topology("split", variant)
    plan = make_plan(topo, "lbbench-golden", *SUBNETS, variant=variant)
    files = render_configs(plan)
    compose = render_compose(plan, "lbbench/node:golden", Path("/state/configs"), Path("/state/tls"), Path("/state/run"))
    files["compose.yaml"] = dump_compose(compose)
    return files


@pytest.mark.parametrize("variant", [None, "monolith", "no-resumption", "single-node"])
def test_render_matches_golden(variant: str | None, update_golden: bool) -> None:
    folder = GOLDEN / "render" / (variant or "split")
    files = rendered(variant)
    if update_golden:
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
    expected = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(expected)
    for rel, text in files.items():
        assert text == expected[rel], f"{rel} differs from golden {folder / rel}"


def test_split_shape() -> None:
    files = rendered(None)
    fe = files["lb-a/frontend.cfg"]
    # K=2 backend processes x M=4 localhost addresses, PROXY v2, keep-alive reuse
    assert fe.count("send-proxy-v2") == 8
    assert "bind 198.18.10.100:443 ssl crt" in fe and "bind 198.18.10.100:80" in fe
    be = files["lb-a/backend1.cfg"]
    assert be.count("accept-proxy") == 4
    assert "option http-server-close" in be and "maxconn 100" in be and "option forwardfor" in be
    ka_a, ka_b = files["lb-a/keepalived.conf"], files["lb-b/keepalived.conf"]
    assert "state MASTER" in ka_a and "priority 255" in ka_a
    assert "state BACKUP" in ka_b and "priority 100" in ka_b
    assert "198.18.10.100/24 dev @CLIENT_IFACE@" in ka_a


def test_only_keepalived_gets_capabilities_and_lab_subnets() -> None:
    compose = yaml.safe_load(rendered(None)["compose.yaml"])
    with_caps = sorted(name for name, svc in compose["services"].items() if "cap_add" in svc)
    assert with_caps == ["lb-a-keepalived", "lb-b-keepalived"]
    for net in compose["networks"].values():
        subnet = net["ipam"]["config"][0]["subnet"]
        assert subnet.startswith("198.18.")
    for name, svc in compose["services"].items():
        assert svc["labels"]["org.lbbench.run"] == "lbbench-golden", name
        assert not any(".pem" in v and "configs" in v for v in svc.get("volumes", [])), name
    # keepalived, frontend and backends share the node's network namespace, owned by a process that only sleeps
    for service in ("lb-a-keepalived", "lb-a-frontend", "lb-a-backend2"):
        assert compose["services"][service]["network_mode"] == "service:lb-a"
    assert compose["services"]["lb-a"]["command"] == ["sleep", "infinity"]
    assert "sysctls" in compose["services"]["lb-a"]


def test_monolith_has_one_haproxy_per_node() -> None:
    files = rendered("monolith")
    assert sorted(f for f in files if f.startswith("lb-a/")) == ["lb-a/haproxy.cfg", "lb-a/keepalived.conf"]
    assert "send-proxy-v2" not in files["lb-a/haproxy.cfg"]
    assert "option http-server-close" in files["lb-a/haproxy.cfg"]


def test_resumption_off_disables_cache_and_tickets() -> None:
    fe = rendered("no-resumption")["lb-a/frontend.cfg"]
    assert "tune.ssl.cachesize 0" in fe and "no-tls-tickets" in fe
