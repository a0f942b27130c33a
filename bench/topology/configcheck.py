"""Rendered configs through the tools that will run them: ``haproxy -c`` and ``keepalived -t``, every failure at once.

The node image's ``lbbench-validate`` checks keepalived's, the dummy servers' and
(on the node image's build) the LB processes' configs in one container, in
parallel. A user's own HAProxy build (``lb.haproxy.image``) checks the LB configs
itself: one container running them all when the image has a shell, one per
config when it has only the binary. Messages keep HAProxy's reasons (its
``[ALERT]`` lines, not ``-q``: quiet mode hides them), cleaned to one line.
"""

from __future__ import annotations

import re
from typing import Any

import docker.errors

from .. import engine

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
