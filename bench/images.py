"""Build the lab images offline, cached by content hash.

No registry is needed: the base image is a ``debootstrap --variant=minbase``
tree of a Debian release (with HAProxy and keepalived included) imported with
``docker import``. Users with registry access may pass ``--base debian:bookworm-slim``
instead; the Dockerfile then installs the packages with apt.

Tags carry a hash of everything that goes into the image, so a second build
with nothing changed builds nothing::

    lbbench/base:bookworm-<hash>     debootstrap tree
    lbbench/node:bookworm-<hash>     base + topology/images/node/*
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from . import engine, paths
from .errors import UserError

BASE_PACKAGES = ("haproxy", "keepalived", "iproute2", "procps", "socat", "ca-certificates")
BASE_REPO = "lbbench/base"
NODE_REPO = "lbbench/node"
LABEL = "org.lbbench.project"

#: Image flavours a topology's ``image:`` field may name -> Debian release.
FLAVOURS = {
    "node": "bookworm",  # Debian 12: HAProxy 2.6, keepalived 2.2.7
    "node-trixie": "trixie",  # Debian 13: HAProxy 3.0, keepalived 2.3
}
MIRROR = os.environ.get("LBBENCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@dataclass(frozen=True)
class ImageRef:
    flavour: str
    release: str
    base_tag: str
    node_tag: str


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:12]


def _context_digest(folder: Path) -> bytes:
    parts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts.append(str(path.relative_to(folder)).encode())
        parts.append(path.read_bytes())
    return _digest(*parts).encode()


def image_ref(flavour: str = "node", base: str | None = None) -> ImageRef:
    """The content-hash tags for ``flavour`` (optionally on an official ``base`` image)."""
    if flavour not in FLAVOURS:
        raise UserError(f"unknown image flavour {flavour!r}", f"use one of: {', '.join(FLAVOURS)}")
    release = FLAVOURS[flavour]
    base_tag = base or f"{BASE_REPO}:{release}-{_digest(release.encode(), ' '.join(BASE_PACKAGES).encode())}"
    node_hash = _digest(base_tag.encode(), _context_digest(paths.IMAGES / "node"))
    return ImageRef(flavour, release, base_tag, f"{NODE_REPO}:{release}-{node_hash}")


def _exists(tag: str) -> bool:
    try:
        engine.client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build_base(ref: ImageRef, log: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise UserError(f"base image {ref.base_tag} is missing and building it needs root", "run `make setup` as root")
    if not shutil.which("debootstrap"):
        raise UserError("debootstrap is not installed", "apt-get install -y debootstrap (`make setup` does)")
    log(f"building base image {ref.base_tag} with debootstrap ({ref.release}, about a minute)")
    with tempfile.TemporaryDirectory(prefix="lbbench-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        engine.run_checked(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                ref.release,
                str(root),
                MIRROR,
            ],
            f"debootstrap {ref.release}",
            timeout=1200,
        )
        # Services must not start inside a chroot/container build; apt caches are dead weight.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        tar = Path(tmp) / "root.tar"
        engine.run_checked(["tar", "-C", str(root), "-cf", str(tar), "."], "packing the base tree")
        repo, tag = ref.base_tag.split(":")
        engine.client().api.import_image_from_file(str(tar), repository=repo, tag=tag, changes=[f"LABEL {LABEL}=lbbench"])
    if not _exists(ref.base_tag):
        raise UserError(f"docker import did not produce {ref.base_tag}", "see dockerd's log")


def ensure_images(flavour: str = "node", base: str | None = None, log: Callable[[str], None] = print) -> ImageRef:
    """Make sure the node image for ``flavour`` exists, building only what is missing."""
    ref = image_ref(flavour, base)
    if _exists(ref.node_tag):
        return ref
    if not _exists(ref.base_tag):
        if base:
            log(f"pulling {base}")
            try:
                engine.client().images.pull(base)
            except docker.errors.APIError as exc:
                raise UserError(f"cannot pull {base}: {exc.explanation}", "drop --base to build the base offline") from None
        else:
            _build_base(ref, log)
    log(f"building {ref.node_tag}")
    try:
        engine.client().images.build(
            path=str(paths.IMAGES / "node"),
            tag=ref.node_tag,
            buildargs={"BASE": ref.base_tag},
            rm=True,
            forcerm=True,
            pull=False,
            labels={LABEL: "lbbench"},
        )
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream", chunk.get("error", ""))).strip() for chunk in exc.build_log]
        tail = " | ".join(line for line in lines if line)[-400:]
        raise UserError(f"building {ref.node_tag} failed: {tail}", "see the build log above") from None
    return ref


def versions(image: str) -> dict[str, str]:
    """HAProxy and keepalived versions inside ``image`` (for run.json); asked once per image and process."""
    return dict(_versions(image))


@functools.lru_cache(maxsize=8)
def _versions(image: str) -> dict[str, str]:
    raw = engine.client().containers.run(
        image,
        ["sh", "-c", "haproxy -v | head -1; keepalived -v 2>&1 | head -1"],
        network_mode="none",
        remove=True,
        labels={LABEL: "lbbench"},
    )
    lines = raw.decode(errors="replace").strip().splitlines()
    return {
        "haproxy": lines[0] if lines else "unknown",
        "keepalived": lines[1] if len(lines) > 1 else "unknown",
    }
