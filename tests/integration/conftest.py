"""Integration fixtures: a real Docker engine and the lab image, or a clear skip reason.

Integration tests fail (not skip) when the engine is missing and LBBENCH_REQUIRE_DOCKER=1,
which `make test` sets, so CI cannot pass without having run them.
"""

from __future__ import annotations

import os

import pytest

from bench.errors import UserError


@pytest.fixture(scope="session")
def node_image() -> str:
    from bench import engine, images

    try:
        engine.client()
    except UserError as exc:
        if os.environ.get("LBBENCH_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker engine required: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    return images.ensure_images("node").node_tag


def project_leftovers(project: str) -> tuple[list[str], list[str]]:
    """Containers and networks still carrying ``project``'s run label."""
    from bench import engine

    label = f"org.lbbench.run={project}"
    client = engine.client()
    containers = [c.name for c in client.containers.list(all=True, filters={"label": label})]
    networks = [n.name for n in client.networks.list(filters={"label": label})]
    return containers, networks
