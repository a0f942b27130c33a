"""Rendered configs through the tools that will run them: ``haproxy -c`` and ``keepalived -t``, every failure at once.

The node image's ``lbbench-validate`` checks keepalived's, the dummy servers' and
(on the node image's build) the LB processes' configs in one container, in
parallel. A user's own HAProxy build (``lb.haproxy.image``) checks the LB configs
itself: one container running them all when the image has a shell, one per
config when it has only the binary. Messages keep HAProxy's reasons (its
``[ALERT]`` lines, not ``-q``: quiet mode hides them), cleaned to one line.

A check that passed is remembered (:func:`verdict_key`, :func:`passed_before`,
:func:`remember_pass`): the same files, apart from the lab's name and addresses,
checked by the same images, pass again without a container. A refused config is
never remembered: it is checked every time, and says why every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker.errors

from .. import engine, paths

#: Where the config check sees the rendered configs folder.
CHECK_MOUNT = "/lab"

# Not -q: quiet mode hides the [ALERT] lines that say why a config is refused.
_CHECK_SCRIPT = (
    'rc=0; for f in "$@"; do out=$(haproxy -c -f "$f" 2>&1) || '
    '{ echo "FAIL $f: $(echo "$out" | grep -E "^\\[(ALERT|WARNING)\\]" | tr "\\n" " ")" >&2; rc=1; }; done; exit $rc'
)
_NOISE = re.compile(r"\[(?:ALERT|WARNING|NOTICE)\]\s*(?:\(\d+\))?\s*:\s*(?:config\s*:\s*)?")
_TRAILERS = ("Fatal errors found in configuration.", "Error(s) found in configuration file")
#: A run of more than eight quoted words separated by commas (HAProxy lists every keyword it knows).
_LONG_LIST = re.compile(r"(?:'[^']*',\s*){8,}")


#: Where passed checks are remembered (one empty file per verdict key).
VERDICTS_DIR = "config-checks"
#: How many passes are remembered: past it, the least recently used are forgotten (a forgotten pass only costs a check).
VERDICTS_KEPT = 256
#: Part of every verdict key: a change to what is checked or how invalidates every remembered pass.
_VERDICT_FORMAT = "1"
#: An IPv4 address (a sentence's full stop may follow it).
_IPV4 = re.compile(r"(?<!\d)(?<!\d\.)(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")


def verdict_key(
    image_ids: Iterable[str],
    configs: dict[str, str],
    project: str,
    subnets: Iterable[str],
    extra: Iterable[bytes] = (),
) -> str:
    """What a check's pass depends on, as one hash: the images' ids, each checked file (name and text), and ``extra``.

    A file's text counts with the lab's own name (``project``) and the addresses in
    its ``subnets`` written as placeholders (a subnet and an offset in it), so the
    same topology checked on another lab's subnets has the same key. ``extra``:
    anything else the check reads (the user's files, the certificate's kind).
    """
    nets = [ipaddress.ip_network(s, strict=False) for s in subnets]

    def placeholder(match: re.Match[str]) -> str:
        try:
            addr = ipaddress.ip_address(match.group(0))
        except ValueError:
            return match.group(0)
        for i, net in enumerate(nets):
            if addr in net:
                return f"@net{i}+{int(addr) - int(net.network_address)}@"
        return match.group(0)

    h = hashlib.sha256(f"lbbench config check {_VERDICT_FORMAT}\0{_CHECK_SCRIPT}\0".encode())
    for image_id in image_ids:
        h.update(f"image {image_id}\0".encode())
    for name in sorted(configs):
        text = _IPV4.sub(placeholder, configs[name].replace(project, "@project@"))
        h.update(f"file {name}\0{len(text)}\0{text}\0".encode())
    for part in extra:
        h.update(b"extra %d\0" % len(part) + part + b"\0")
    return h.hexdigest()


def _verdict_file(key: str) -> Path:
    return paths.STATE / VERDICTS_DIR / key


def passed_before(key: str) -> bool:
    """Whether a check with this :func:`verdict_key` passed before on this machine (a hit counts as a use: see :func:`remember_pass`)."""
    try:
        os.utime(_verdict_file(key))
    except OSError:
        return False
    return True


def remember_pass(key: str) -> None:
    """Remember that the check of :func:`verdict_key` ``key`` passed (a cache that cannot be written only costs a container).

    At most :data:`VERDICTS_KEPT` passes are kept: the least recently used (by
    the file's time, which :func:`passed_before` renews on a hit) are forgotten.
    """
    target = _verdict_file(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{key}.{os.getpid()}.tmp")
        tmp.touch()
        os.replace(tmp, target)
    except OSError:
        return
    _forget_beyond(target.parent, VERDICTS_KEPT)


def _forget_beyond(folder: Path, kept: int) -> None:
    """Remove all but the ``kept`` most recently used passes in ``folder`` (files vanishing meanwhile are fine)."""
    used: list[tuple[float, str]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    used.append((entry.stat().st_mtime, entry.path))
                except OSError:
                    continue
    except OSError:
        return
    if len(used) <= kept:
        return
    used.sort()
    for _, path in used[: len(used) - kept]:
        with contextlib.suppress(OSError):
            os.unlink(path)


def node_check(image: str, configs: list[str], volumes: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """``lbbench-validate`` of the node image over ``configs`` (relative to the configs folder): every failure, one line each."""
    if not configs:
        return []
    try:
        engine.run_once(image, ["lbbench-validate", *(f"{CHECK_MOUNT}/{f}" for f in configs)], volumes=volumes, labels=labels)
    except docker.errors.ContainerError as exc:
        return _fail_lines(_stderr(exc)) or [str(exc).splitlines()[0]]
    return []


def check_haproxy_configs(image: str, configs: list[str], volumes: dict[str, dict[str, str]], labels: dict[str, str]) -> list[str]:
    """``haproxy -c`` of ``image``'s own build over ``configs`` (relative to the configs folder): every failure, one line each.

    One container runs them all when the image has a shell; one container per
    config otherwise (a distroless image has only the binary).
    """
    if not configs:
        return []
    inside = [f"{CHECK_MOUNT}/{f}" for f in configs]

    def run(command: list[str], entrypoint: list[str]) -> None:
        engine.run_once(image, command, entrypoint=entrypoint, volumes=volumes, labels=labels, user="0:0", network_mode="none", stderr=True)

    try:
        run(["sh", *inside], ["/bin/sh", "-c", _CHECK_SCRIPT])
        return []
    except docker.errors.ContainerError as exc:
        fails = _fail_lines(_stderr(exc))
        if fails:
            return fails
    except docker.errors.APIError:
        pass  # no /bin/sh in the image
    fails = []
    for name, path in zip(configs, inside, strict=True):
        try:
            run(["-c", "-f", path], ["haproxy"])
        except docker.errors.ContainerError as exc:
            out = _stderr(exc)
            alerts = [line for line in out.splitlines() if line.startswith(("[ALERT]", "[WARNING]"))]
            fails.append(f"{name}: {clean_check_message(' '.join(alerts) or out)}".replace(f"{CHECK_MOUNT}/", ""))
    return fails


def clean_check_message(text: str) -> str:
    """``haproxy -c``'s alerts as one readable line: the reasons, without prefixes, pids and the closing summary."""
    reasons = [_LONG_LIST.sub(_shorten, " ".join(p.split())) for p in _NOISE.split(text)]
    reasons = [r for r in reasons if r and not r.startswith(_TRAILERS)]
    return "; ".join(reasons) or " ".join(text.split())


def clean_fail_line(line: str) -> str:
    """``FILE: alerts`` -> ``FILE: reasons`` (see :func:`clean_check_message`)."""
    name, sep, rest = line.partition(": ")
    return f"{name}: {clean_check_message(rest)}" if sep else line


def same_on_every_node(problems: list[tuple[str, str]], nodes: list[str]) -> list[tuple[str, str]]:
    """One problem for a config rejected alike on every node (their configs differ only in names), saying so."""
    if len(nodes) < 2:
        return problems
    first, others = nodes[0], nodes[1:]
    out: list[tuple[str, str]] = []
    for problem, fix in problems:
        as_first = problem
        for other in others:
            as_first = as_first.replace(f"{other}/", f"{first}/").replace(f"{other}-", f"{first}-")
        if as_first != problem and (as_first, fix) in problems:
            continue  # the first node's twin stands for it
        twin = problem
        for other in others:
            twin = twin.replace(f"{first}/", f"{other}/").replace(f"{first}-", f"{other}-")
        same = f" (the same in {', '.join(others)})" if twin != problem and (twin, fix) in problems else ""
        out.append((problem + same, fix))
    return out


def _shorten(match: re.Match[str]) -> str:
    items = re.findall(r"'[^']*'", match.group(0))
    return f"{', '.join(items[:4])}, ... ({len(items) - 4} more), "


def _stderr(exc: docker.errors.ContainerError) -> str:
    err = exc.stderr
    return err.decode(errors="replace") if isinstance(err, bytes) else str(err or exc)


def _fail_lines(text: str) -> list[str]:
    """The ``FAIL <file>: <message>`` lines of a check, cleaned, without the prefix and the check's mount folder."""
    return [clean_fail_line(line[5:]).replace(f"{CHECK_MOUNT}/", "") for line in text.splitlines() if line.startswith("FAIL ")]
