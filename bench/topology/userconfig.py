"""A user's own HAProxy configuration in the lab (``lb.haproxy`` of a topology).

Three ways in, per role (``all``, ``frontend``, ``backend``, ``monolith``):

- ``lines``: config lines appended to named sections of the rendered file
  (``global``, ``defaults``, ``clients``, ``servers``, ...);
- ``sections``: whole sections appended to the file;
- ``template``: a Jinja template of the user's replacing the shipped one.

Plus ``files`` (maps, ACL lists, Lua, error pages) copied to
``/etc/lbbench-files/<name>`` in every LB HAProxy container.

:func:`check_needs` says what a rendered config lacks that lbbench relies on
(its stats socket, the VIP listener, the monitor URI keepalived tracks), so a
user's template that leaves them out fails before anything starts, naming the
line to add. Everything here is pure text work: no Docker.
"""

from __future__ import annotations

import difflib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..spec import USER_FILES_MOUNT, HAProxy, HAProxyRole

#: Keywords that open a section of an HAProxy config (HAProxy 2.6 - 3.x).
SECTION_KEYWORDS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "cache",
        "program",
        "http-errors",
        "ring",
        "mailers",
        "fcgi-app",
        "log-forward",
        "crt-store",
        "traces",
        "acme",
    }
)
#: Sections whose name is optional (``global`` never has one).
_UNNAMED = frozenset({"global", "defaults"})


@dataclass(frozen=True)
class Section:
    """One section of a config text: its keyword, name, and lines ``[start, end)`` (the header is ``start``)."""

    kind: str
    name: str
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}".strip()


def sections(text: str) -> list[Section]:
    """The sections of an HAProxy config, in order."""
    lines = text.splitlines()
    heads: list[tuple[int, str, str]] = []
    for i, line in enumerate(lines):
        words = line.split("#", 1)[0].split()
        if words and words[0] in SECTION_KEYWORDS:
            name = words[1] if len(words) > 1 and words[0] != "global" else ""
            heads.append((i, words[0], name))
    out = []
    for j, (i, kind, name) in enumerate(heads):
        end = heads[j + 1][0] if j + 1 < len(heads) else len(lines)
        out.append(Section(kind, name, i, end))
    return out


def find_section(found: list[Section], key: str) -> tuple[Section | None, str | None]:
    """The section ``key`` names (``global``, ``defaults``, ``NAME`` or ``KIND NAME``), or why none fits."""
    words = key.split()
    if len(words) == 2:
        matches = [s for s in found if (s.kind, s.name) == (words[0], words[1])]
    elif key in _UNNAMED:
        matches = [s for s in found if s.kind == key]
    else:
        matches = [s for s in found if s.name == key]
    if len(matches) == 1:
        return matches[0], None
    if len(matches) > 1:
        return None, f"{len(matches)} sections match {key!r} ({', '.join(s.label for s in matches)}); name one as 'KIND NAME'"
    known = [s.name or s.kind for s in found]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return None, f"no section {key!r}{hint} (it has: {', '.join(s.label for s in found) or 'none'})"


def _insert_at(lines: list[str], section: Section) -> int:
    """After the section's last line that is neither blank nor a comment (comments before the next header belong to it)."""
    at = section.start + 1
    for i in range(section.start, section.end):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            at = i + 1
    return at


def add_lines(text: str, additions: list[tuple[str, str, list[str]]]) -> tuple[str, list[str]]:
    """``text`` with each ``(origin, section key, lines)`` appended to its section; returns the text and the problems.

    ``origin`` names the field the lines come from (``lb.haproxy.frontend.lines``);
    it is written as a comment above them, so the rendered config shows what the
    user added.
    """
    problems: list[str] = []
    lines = text.splitlines()
    for origin, key, extra in additions:
        if not extra:
            continue
        section, why = find_section(sections("\n".join(lines)), key)
        if section is None:
            problems.append(f"{origin}.{key}: {why}")
            continue
        at = _insert_at(lines, section)
        lines[at:at] = [f"    # {origin}.{key} (user)", *(f"    {line}" for line in extra)]
    return "\n".join(lines) + ("\n" if text.endswith("\n") or not text else ""), problems


def append_sections(text: str, blocks: list[tuple[str, str]]) -> str:
    """``text`` with each ``(origin, sections text)`` appended, under a comment naming its origin."""
    for origin, block in blocks:
        if block.strip():
            text = text.rstrip("\n") + f"\n\n# {origin} (user)\n" + block.strip("\n") + "\n"
    return text


def role_additions(cfg: HAProxy, kind: str) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, str]]]:
    """The ``lines`` and ``sections`` that apply to a process of ``kind``, with the field each comes from."""
    lines: list[tuple[str, str, list[str]]] = []
    blocks: list[tuple[str, str]] = []
    for role_name, role in (("all", cfg.all), (kind, getattr(cfg, kind))):
        assert isinstance(role, HAProxyRole)
        origin = f"lb.haproxy.{role_name}"
        lines += [(f"{origin}.lines", key, extra) for key, extra in role.lines.items()]
        blocks.append((f"{origin}.sections", role.sections))
    return lines, blocks


# --------------------------------------------------------------------------- what lbbench needs


@dataclass(frozen=True)
class Needs:
    """What lbbench relies on in one process's rendered config."""

    service: str  # e.g. lb-a-frontend
    kind: str  # frontend | backend | monolith
    socket: str  # the stats socket's path inside the container
    vip: str | None = None  # frontend/monolith: the VIP it must listen on (443, TLS)
    monitor: tuple[str, int, str] | None = None  # (address, port, uri) keepalived's track_script asks
    backend_binds: tuple[str, ...] = ()  # backend k: "127.0.0.m:port" the frontend sends to


def _bind_matches(words: list[str], addr: str, port: int) -> bool:
    """Whether a ``bind`` line's first argument covers ``addr:port`` (``:port``, ``*:port``, ``0.0.0.0:port`` included)."""
    if len(words) < 2:
        return False
    spec = words[1]
    host, _, ports = spec.rpartition(":")
    if not ports:
        return False
    wanted = {addr, "", "*", "0.0.0.0", "::", "[::]", "ipv4@" + addr, "ipv4@", "ipv4@*", "ipv4@0.0.0.0"}
    if host not in wanted:
        return False
    for part in ports.split(","):
        low, _, high = part.partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            return False
    return False


def check_needs(text: str, needs: Needs, track_frontend: bool) -> list[tuple[str, str]]:
    """Problems (and fixes) where ``text`` lacks what lbbench relies on; empty when it has everything."""
    found = sections(text)
    lines = text.splitlines()

    def section_lines(s: Section) -> list[list[str]]:
        return [ln.split("#", 1)[0].split() for ln in lines[s.start + 1 : s.end]]

    problems: list[tuple[str, str]] = []
    glob = [s for s in found if s.kind == "global"]
    has_socket = any(
        w[:3] == ["stats", "socket", needs.socket] for s in glob for w in section_lines(s)
    )
    if not has_socket:
        problems.append(
            (
                f"has no `stats socket {needs.socket}` in its global section (lbbench's collectors and start-up wait read it)",
                "add `stats socket {{ stats_socket }} mode 600 level admin` to the template's global section",
            )
        )
    proxies = [s for s in found if s.kind in ("frontend", "listen")]
    if needs.vip:
        tls_bind = any(
            w[:1] == ["bind"] and _bind_matches(w, needs.vip, 443) and "ssl" in w for s in proxies for w in section_lines(s)
        )
        if not tls_bind:
            problems.append(
                (
                    f"has no TLS listener on the VIP ({needs.vip}:443 ssl); the load goes there",
                    "add `bind {{ vip }}:{{ https_port }} ssl crt {{ tls_crt }}` to a frontend",
                )
            )
    if needs.monitor and track_frontend:
        addr, port, uri = needs.monitor
        ok = False
        for s in proxies:
            words = section_lines(s)
            if any(w[:2] == ["monitor-uri", uri] for w in words) and any(
                w[:1] == ["bind"] and _bind_matches(w, addr, port) for w in words
            ):
                ok = True
        if not ok:
            problems.append(
                (
                    f"has no `monitor-uri {uri}` on {addr}:{port}: keepalived tracks the frontend there and would demote this node",
                    f"add a frontend with `bind {addr}:{port}` and `monitor-uri {uri}` (see topology/templates/frontend.cfg.j2), or set keepalived.track_frontend: false",
                )
            )
    if needs.backend_binds:
        bound = [b for b in needs.backend_binds if any(
            w[:1] == ["bind"] and _bind_matches(w, *_split_addr(b)) for s in proxies for w in section_lines(s)
        )]
        if not bound:
            problems.append(
                (
                    f"listens on none of {', '.join(needs.backend_binds)}, where the frontend sends traffic (PROXY v2)",
                    "bind the addresses of `backend_binds` with accept-proxy (see topology/templates/backend.cfg.j2)",
                )
            )
    return problems


def _split_addr(addr_port: str) -> tuple[str, int]:
    addr, _, port = addr_port.rpartition(":")
    return addr, int(port)


# --------------------------------------------------------------------------- files


def copy_user_files(files: list[str], dest: Path) -> list[tuple[str, str]]:
    """Copy ``lb.haproxy.files`` into ``dest`` (``<name>`` each); returns the problems (missing files)."""
    problems: list[tuple[str, str]] = []
    for entry in files:
        src = Path(entry)
        target = dest / src.name
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, target, dirs_exist_ok=True)
        elif src.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        else:
            problems.append((f"lb.haproxy.files: {entry}: no such file or folder", "check the path (relative paths are relative to the file naming them)"))
    return problems


def missing_files(cfg: HAProxy) -> list[tuple[str, str]]:
    """``lb.haproxy`` files and templates that do not exist, as problems."""
    problems = []
    for role_name in ("frontend", "backend", "monolith"):
        template = getattr(cfg, role_name).template
        if template and not Path(template).is_file():
            problems.append(
                (
                    f"lb.haproxy.{role_name}.template: {template}: no such file",
                    "check the path (relative paths are relative to the file naming them)",
                )
            )
    for entry in cfg.files:
        if not Path(entry).exists():
            problems.append((f"lb.haproxy.files: {entry}: no such file or folder", "check the path (relative paths are relative to the file naming them)"))
    return problems


_REFERENCED = re.compile(re.escape(USER_FILES_MOUNT) + r"/([^\s,)\"']+)")


def unreferenced_mount_paths(text: str, cfg: HAProxy) -> list[str]:
    """Paths under the user-files folder that ``text`` uses but no ``lb.haproxy.files`` entry provides."""
    provided = {Path(f).name for f in cfg.files}
    return sorted({m.group(1) for m in _REFERENCED.finditer(text) if m.group(1).split("/", 1)[0] not in provided})
