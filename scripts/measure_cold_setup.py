#!/usr/bin/env python3
"""The parts of a cold set-up that a warm machine skips, each timed without touching what others use.

    /work/coord/labrun .venv/bin/python scripts/measure_cold_setup.py [--phases apt,images]

``apt``: in a throwaway container of a local Debian base image (``lbbench/base:<release>-*``,
a minbase: no python3, no wrk, no docker.io), the Debian packages set-up installs on a bare
machine, in set-up's order: ``apt-get update`` and python3-venv (before the venv can start;
python3 itself, which a fresh Debian has, is installed first and not counted), then the lab's
packages (docker.io, iproute2, mmdebstrap: beside the venv in set-up), then
``scripts/dev.sh wrk`` (set-up's own wrk step: it must find wrk missing and install it, then
``wrk --version`` must answer). Packages are downloaded from the mirror: nothing is cached.

``images``: ``bench images build``'s own code (bench.images.ensure_images) with the image
names moved to a repository of this script's own (``lbbench-coldsetup/base``,
``lbbench-coldsetup/node``): mmdebstrap (else debootstrap) of the base tree from the mirror, ``docker
import``, then the node image built on that new base (no layer of the shared images can be
reused: its parent is new). Both tags are removed at the end; the shared ``lbbench/*``
images are neither used nor touched.

The venv part is ``scripts/measure_setup.sh uv`` (a fresh clone with empty uv/pip caches).
What no script here measures: installing the Docker engine's own start (dockerd is shared and
never restarted), the OS's Python itself, and a cold page cache.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import engine, images  # noqa: E402

REPO = "lbbench-coldsetup"
#: The Debian packages scripts/dev.sh installs on a bare machine beside the venv (when missing), besides wrk.
LAB_PACKAGES = ("docker.io", "iproute2", "mmdebstrap")


#: The shared images' repository (before phase_images moves ``images.BASE_REPO`` to this script's own).
SHARED_BASE_REPO = images.BASE_REPO


def local_base(release: str = "bookworm") -> str:
    """The newest local shared ``lbbench/base:<release>-*`` image (read only: the container is thrown away)."""
    repo = SHARED_BASE_REPO
    tags = [t for img in engine.client().images.list(name=repo) for t in img.tags if t.startswith(f"{repo}:{release}-")]
    if not tags:
        raise SystemExit(f"no local {repo}:{release}-* image to start a throwaway container from (run `bench images build`)")
    return sorted(tags)[-1]


def phase_apt() -> list[tuple[str, float]]:
    base = local_base()
    install = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
    script = (
        "set -e; cd /src; "
        "! command -v wrk >/dev/null || { echo 'wrk already there: not a machine without wrk' >&2; exit 3; }; "
        "t0=$(date +%s.%N); apt-get update -qq; touch /var/lib/apt/lists/.lbbench-updated; t1=$(date +%s.%N); "
        f"{install} python3 >/dev/null; t2=$(date +%s.%N); {install} python3-venv >/dev/null; t3=$(date +%s.%N); "
        f"{install} {' '.join(LAB_PACKAGES)} >/dev/null; t4=$(date +%s.%N); "
        "scripts/dev.sh wrk; t5=$(date +%s.%N); wrk --version 2>&1 | head -1 || true; command -v wrk; "
        'echo "times $t0 $t1 $t2 $t3 $t4 $t5"'
    )
    print(f"== apt: throwaway container of {base}, {ROOT} mounted read-only", flush=True)
    started = time.monotonic()
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--label", f"{images.LABEL}=coldsetup", "-v", f"{ROOT}:/src:ro", base, "bash", "-c", script],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    wall = time.monotonic() - started
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"apt phase failed ({proc.returncode})")
    t0, t1, t2, t3, t4, t5 = (float(x) for x in proc.stdout.split("times ")[-1].split())
    return [
        ("apt-get update + python3-venv (before the venv starts)", (t1 - t0) + (t3 - t2)),
        ("(python3 itself, not counted: a fresh Debian has it)", t2 - t1),
        (f"apt-get install {' '.join(LAB_PACKAGES)} (beside the venv)", t4 - t3),
        ("dev.sh wrk (wrk; beside the venv)", t5 - t4),
        ("apt phase, container start to end", wall),
    ]


def phase_images() -> list[tuple[str, float]]:
    images.BASE_REPO, images.NODE_REPO = f"{REPO}/base", f"{REPO}/node"
    ref = images.image_ref("node")
    api = engine.client()
    for tag in (ref.node_tag, ref.base_tag):
        if images._exists(tag):  # a leftover of an interrupted measurement: ours, by its repository
            api.images.remove(tag, noprune=False)
    print(f"== images: {ref.base_tag} (mmdebstrap or debootstrap from {images.MIRROR}) and {ref.node_tag}", flush=True)
    marks: list[tuple[str, float]] = []
    started = time.monotonic()

    def log(line: str) -> None:
        marks.append((line, time.monotonic() - started))
        print(f"{time.monotonic() - started:7.1f}  {line}", flush=True)

    try:
        images.ensure_images("node", log=log)
        total = time.monotonic() - started
        compare_contents(ref.base_tag, ref.node_tag)
    finally:
        for tag in (ref.node_tag, ref.base_tag):
            if images._exists(tag):
                api.images.remove(tag, noprune=False)
    node_at = next((t for line, t in marks if ref.node_tag in line), total)
    return [("base image: mmdebstrap (or debootstrap) + docker import", node_at), ("node image on the new base", total - node_at), ("images, whole", total)]


def _in_image(image: str, command: str) -> list[str]:
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--label", f"{images.LABEL}=coldsetup", image, "sh", "-c", command],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.splitlines()


def compare_contents(new_base: str, new_node: str) -> None:
    """The new images against the shared ones: Debian packages (name version) and the HAProxy/keepalived versions."""
    old_base = local_base()
    packages = "dpkg-query -W -f '${Package} ${Version}\\n' | sort"
    old, new = set(_in_image(old_base, packages)), set(_in_image(new_base, packages))
    print(f"== contents: {new_base} against {old_base}: {len(new)} packages against {len(old)}; same name and version: {len(old & new)}")
    for line in sorted(old - new):
        print(f"   only in {old_base}: {line}")
    for line in sorted(new - old):
        print(f"   only in {new_base}: {line}")
    versions = "haproxy -v | head -1; keepalived -v 2>&1 | head -1"
    print(f"   {new_node}: {' | '.join(_in_image(new_node, versions))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="apt,images", help="comma-separated: apt, images")
    args = ap.parse_args()
    results: list[tuple[str, float]] = []
    for phase in args.phases.split(","):
        results += {"apt": phase_apt, "images": phase_images}[phase]()
    print()
    for what, seconds in results:
        print(f"{seconds:7.1f} s  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
