"""The lab for real: containers, VRRP, TLS through the VIP, the client's real address, clean teardown."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.spec import load_topology
from bench.topology.lab import Lab, probe

from .conftest import project_leftovers

pytestmark = pytest.mark.integration


def _check_lab(lab: Lab) -> None:
    assert lab.plan is not None and lab.tls is not None
    status, headers, body = probe(lab.plan.vip, lab.tls.ca_pem, "/?echo=1")
    assert status == 200
    echo = json.loads(body)
    # The dummy server saw the client's real address (the host's side of the client
    # network), carried over PROXY protocol v2 and X-Forwarded-For, not the LB's.
    assert echo["client"] == lab.plan.client_gateway
    assert echo["peer"] in {n.server_addr for n in lab.plan.nodes}
    assert headers["x-lbbench-client"] == lab.plan.client_gateway
    assert echo["server"] in {s.name for s in lab.plan.servers}
    # Per-request controls of the dummy servers pass through the LB.
    status, _, body = probe(lab.plan.vip, lab.tls.ca_pem, "/?size=5000&status=203")
    assert status == 203 and len(body) == 5000


@pytest.mark.parametrize("variant", [None, "monolith"])
def test_lab_serves_https_through_the_vip(node_image: str, variant: str | None) -> None:
    topo, _ = load_topology("split", variant)
    lab = Lab(topo, node_image, variant, log=lambda _m: None)
    with lab:
        _check_lab(lab)
        assert lab.vip_holders() == ["lb-a"]
        services = set(lab.containers())
        if variant is None:
            assert {"lb-a-frontend", "lb-a-backend1", "lb-a-backend2", "lb-b-frontend"} <= services
        else:
            assert {"lb-a-haproxy", "lb-b-haproxy"} <= services and "lb-a-frontend" not in services
        # CA verification is real: a client that trusts another CA is refused.
        other_ca = Path(__file__).parent / "data" / "foreign-ca.pem"
        with pytest.raises(ssl.SSLError):
            probe(lab.plan.vip, other_ca, "/")
    assert project_leftovers(lab.project) == ([], [])
    assert not lab.files.root.exists(), "private files (TLS key) must be removed at down"


def test_failed_start_leaves_nothing(node_image: str) -> None:
    # A cpuset this machine does not have: validation passes, the container cannot start.
    topo, _ = load_topology("split", None, ["lb.frontend.cpus=63"])
    lab = Lab(topo, node_image, log=lambda _m: None)
    with pytest.raises(UserError) as info, lab:
        pytest.fail("the lab must not come up")
    assert "\n" not in str(info.value)
    assert project_leftovers(lab.project) == ([], [])
    assert not lab.files.root.exists()


def test_invalid_rendered_config_is_caught_before_start(node_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.topology import render

    original = render.render_configs

    def broken(plan):
        files = original(plan)
        files["lb-a/frontend.cfg"] += "\n    frobnicate on\n"
        return files

    monkeypatch.setattr(render, "render_configs", broken)
    topo, _ = load_topology("split")
    lab = Lab(topo, node_image, log=lambda _m: None)
    with pytest.raises(UserError, match=r"rendered config rejected: lb-a/frontend.cfg"), lab:
        pass
    assert project_leftovers(lab.project) == ([], [])
