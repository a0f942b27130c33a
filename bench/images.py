"""Build the lab images offline, cached by content hash.

No registry is needed: the base image is a ``--variant=minbase`` tree of a
Debian release (with HAProxy and keepalived included) made by ``mmdebstrap``
(apt inside: packages fetched in parallel, a tarball written directly; about
3x faster than debootstrap) or, where only it is installed, ``debootstrap``,
and imported with ``docker import``. Users with registry access may pass ``--base debian:bookworm-slim``
instead; the Dockerfile then installs the packages with apt.

Tags carry a hash of everything that goes into the image, so a second build
with nothing changed builds nothing::

    lbbench/base:bookworm-<hash>     minbase tree + BASE_PACKAGES
    lbbench/node:bookworm-<hash>     base + topology/images/node/*

``LBBENCH_IMAGE_REPO`` (default ``lbbench``) moves both to another repository,
e.g. to time a cold build without touching the images others use.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from . import engine, paths
from .errors import UserError

BASE_PACKAGES = ("haproxy", "keepalived", "iproute2", "procps", "socat", "ca-certificates")
IMAGE_REPO = os.environ.get("LBBENCH_IMAGE_REPO") or "lbbench"
BASE_REPO = f"{IMAGE_REPO}/base"
NODE_REPO = f"{IMAGE_REPO}/node"
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


_MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"
#: Room the base tree needs while it is made (~300 MB with the downloaded packages), with a margin.
_SCRATCH_MIN = 1 << 30


def _scratch_dir() -> str | None:
    """A tmpfs for the tree while it is made (dpkg's many small writes and fsyncs cost nothing there), if it has room."""
    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free >= _SCRATCH_MIN else None
    except OSError:
        return None


def _build_base(ref: ImageRef, log: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise UserError(f"base image {ref.base_tag} is missing and building it needs root", "run `make setup` as root")
    tool = "mmdebstrap" if shutil.which("mmdebstrap") else "debootstrap" if shutil.which("debootstrap") else None
    if tool is None:
        raise UserError("neither mmdebstrap nor debootstrap is installed", "apt-get install -y mmdebstrap (`make setup` does)")
    log(f"building base image {ref.base_tag} with {tool} ({ref.release}, {'about 20 s' if tool == 'mmdebstrap' else 'about a minute'})")
    packages = f"--include={','.join(BASE_PACKAGES)}"
    with tempfile.TemporaryDirectory(prefix="lbbench-rootfs-", dir="/var/tmp") as tmp:
        tar = Path(tmp) / "root.tar"
        if tool == "mmdebstrap":
            # The tree is made in TMPDIR and written as a tarball; apt's lists and caches are left out
            # (mmdebstrap's default clean-up). Services do not start inside (it installs policy-rc.d).
            # The merged-usr hook makes /bin, /lib ... links as debootstrap does (usr-is-merged); without it
            # mmdebstrap installs usrmerge, which pulls in perl. Either way the lab's packages are the same.
            scratch = _scratch_dir()
            env = {**os.environ, "TMPDIR": scratch} if scratch else None
            hooks = [f"--hook-dir={_MERGED_USR_HOOKS}"] if Path(_MERGED_USR_HOOKS).is_dir() else []
            cmd = ["mmdebstrap", "--quiet", "--variant=minbase", *hooks, packages, ref.release, str(tar), MIRROR]
            engine.run_checked(cmd, f"mmdebstrap {ref.release}", timeout=1200, env=env)
        else:
            root = Path(tmp) / "root"
            engine.run_checked(["debootstrap", "--variant=minbase", packages, ref.release, str(root), MIRROR], f"debootstrap {ref.release}", timeout=1200)
            # apt caches are dead weight in the image.
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(root / junk, ignore_errors=True)
                (root / junk).mkdir(parents=True, exist_ok=True)
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
    image_id = str(engine.client().images.get(image).id)

    def ask() -> str:  # a container: cached, so a run's start does not wait for the engine twice
        raw = engine.run_once(image_id, ["sh", "-c", "haproxy -v | head -1; keepalived -v 2>&1 | head -1"], network_mode="none", labels={LABEL: "lbbench"})
        return raw.decode(errors="replace")

    lines = _cached_by_id("versions", image_id, ask).strip().splitlines()
    return {
        "haproxy": lines[0] if lines else "unknown",
        "keepalived": lines[1] if len(lines) > 1 else "unknown",
    }


# --------------------------------------------------------------------------- a user's HAProxy build


@dataclass(frozen=True)
class HAProxyBuild:
    """The HAProxy build an image carries, from its ``haproxy -vv``."""

    image: str  # as the topology names it, e.g. haproxy:3.0 or lbbench/node:bookworm-...
    image_id: str  # sha256:..., what actually ran
    version: str  # e.g. 3.0.5-1 (the word after "HAProxy version")
    version_line: str  # the first line of `haproxy -vv`
    target: str | None  # TARGET of the build options, e.g. linux-glibc
    options: str | None  # OPTIONS of the build options (USE_OPENSSL=1 USE_LUA=1 ...)
    features: tuple[str, ...]  # the "Feature list" words, +/- prefixed
    openssl: str | None  # "Built with OpenSSL version : ..." (or another TLS library)
    lua: str | None  # "Built with Lua version : ..."; None = no Lua
    vv: str  # the whole output, for run.json

    @property
    def has_ssl(self) -> bool:
        return self.openssl is not None or "+OPENSSL" in self.features

    @property
    def has_lua(self) -> bool:
        return self.lua is not None or "+LUA" in self.features

    def as_dict(self) -> dict[str, object]:
        """run.json's ``haproxy_build``."""
        return {
            "image": self.image,
            "image_id": self.image_id,
            "version": self.version,
            "version_line": self.version_line,
            "target": self.target,
            "options": self.options,
            "features": list(self.features),
            "tls_library": self.openssl,
            "lua": self.lua,
            "vv": self.vv,
        }


def parse_vv(image: str, image_id: str, text: str) -> HAProxyBuild:
    """A :class:`HAProxyBuild` from ``haproxy -vv`` output (2.6 to 3.x)."""
    lines = [line.rstrip() for line in text.splitlines()]
    first = next((line for line in lines if line.startswith(("HAProxy version", "HA-Proxy version"))), "")
    if not first:
        raise UserError(f"image {image}: `haproxy -vv` did not print a version: {' | '.join(lines[:3]) or '(nothing)'}", "use an image whose haproxy is HAProxy 2.6 or later")
    words = first.split()
    version = words[2] if len(words) > 2 else "unknown"

    def field(name: str) -> str | None:
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == name:
                return value.strip()
        return None

    def built_with(prefix: str) -> str | None:
        for line in lines:
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip() if ":" in line else line
        return None

    features: tuple[str, ...] = ()
    for i, line in enumerate(lines):
        if line.startswith("Feature list"):
            text_after = line.split(":", 1)[1] if ":" in line else ""
            # the list may wrap onto indented lines
            for more in lines[i + 1 :]:
                if more.startswith(" ") and not more.strip().endswith(":") and "=" not in more:
                    text_after += " " + more
                else:
                    break
            features = tuple(w for w in text_after.split() if w[:1] in "+-")
    tls = built_with("Built with OpenSSL version") or built_with("Built with wolfSSL") or built_with("Built with AWS-LC")
    return HAProxyBuild(
        image=image,
        image_id=image_id,
        version=version,
        version_line=first,
        target=field("TARGET"),
        options=field("OPTIONS"),
        features=features,
        openssl=tls,
        lua=built_with("Built with Lua version"),
        vv=text,
    )


def ensure_haproxy_image(image: str, log: Callable[[str], None] = print) -> str:
    """Make sure ``image`` is on this engine (pulling it if the engine can); returns its id."""
    client = engine.client()
    try:
        return str(client.images.get(image).id)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise UserError(f"lb.haproxy.image {image!r}: {exc.explanation}", "give an image reference such as haproxy:3.0") from None
    log(f"pulling {image} (lb.haproxy.image)")
    try:
        return str(client.images.pull(image).id)
    except docker.errors.APIError as exc:
        reason = " ".join(str(exc.explanation or exc).split())[:200]
        raise UserError(
            f"lb.haproxy.image {image!r}: not on this engine and it cannot be pulled ({reason})",
            f"build or tag it locally (`docker build -t {image} .`, `docker tag ID {image}`), or check the name",
        ) from None


def _haproxy_vv(image: str, image_id: str) -> str:
    """``haproxy -vv`` of an image, cached on disk by image id."""
    return _cached_by_id("haproxy-vv", image_id, lambda: _run_haproxy_vv(image, image_id))


def _cached_by_id(kind: str, image_id: str, make: Callable[[], str]) -> str:
    """What ``make`` says about image ``image_id``, cached on disk (an id names its content, so it never goes stale)."""
    cache = paths.STATE / kind / f"{image_id.replace(':', '-')}.txt"
    try:
        return cache.read_text()
    except OSError:
        pass
    text = make()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, cache)
    except OSError:
        pass  # a cache that cannot be written only costs the next run a container
    return text


def _run_haproxy_vv(image: str, image_id: str) -> str:
    try:
        raw = engine.run_once(image_id, ["-vv"], entrypoint=["haproxy"], user="0:0", network_mode="none", stderr=True, labels={LABEL: "lbbench"})
    except docker.errors.ContainerError as exc:
        out = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or exc)
        raise UserError(f"image {image}: `haproxy -vv` failed: {' '.join(out.split())[:200]}", "use an image with a working haproxy binary") from None
    except docker.errors.APIError as exc:
        reason = " ".join(str(exc.explanation or exc).split())
        if "executable file not found" in reason or "no such file" in reason.lower():
            raise UserError(
                f"image {image} has no haproxy on its PATH",
                "use an image with HAProxy installed (e.g. haproxy:3.0, or FROM your base + your build) and haproxy on PATH",
            ) from None
        raise UserError(f"image {image}: cannot run haproxy -vv ({reason[:200]})", "check the image") from None
    return raw.decode(errors="replace")


def haproxy_build(image: str, log: Callable[[str], None] = print) -> HAProxyBuild:
    """The HAProxy build in ``image`` (pulled if missing and the engine can); fails clearly when it has none."""
    image_id = ensure_haproxy_image(image, log)
    return parse_vv(image, image_id, _haproxy_vv(image, image_id))


def build_problems(build: HAProxyBuild, configs: dict[str, str]) -> list[tuple[str, str]]:
    """What a build lacks for the rendered LB configs it is to run (TLS, Lua), as (problem, fix)."""
    problems = []
    if not build.has_ssl:
        problems.append(
            (
                f"the HAProxy build in {build.image} ({build.version}) has no TLS library (USE_OPENSSL); lbbench's load is HTTPS",
                "use a build with USE_OPENSSL=1 (every upstream haproxy image has it)",
            )
        )
    lua_users = sorted(name for name, text in configs.items() if _USES_LUA.search(text))
    if lua_users and not build.has_lua:
        problems.append(
            (
                f"the HAProxy build in {build.image} ({build.version}) has no Lua, and {', '.join(lua_users[:3])} use Lua",
                "use a build with USE_LUA=1, or leave the Lua lines out of this variant",
            )
        )
    return problems


#: A config line that needs Lua: lua-load, lua-load-per-thread, lua-prepend-path, or a lua.NAME action/service/fetch.
_USES_LUA = re.compile(r"^\s*lua-|\blua\.\w", re.MULTILINE)
