"""How the offline base image is made: which tool, with what arguments, and what it says when it cannot.

The commands themselves run for real in set-up and in ``scripts/measure_cold_setup.py`` (under the lab
lock); here they are recorded instead of run, so the choice between mmdebstrap and debootstrap, the
merged-usr hook, the scratch tmpfs and the error lines are checked in milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import images
from bench.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


class _Api:
    def __init__(self) -> None:
        self.imported: list[tuple[str, dict[str, Any]]] = []

    def import_image_from_file(self, path: str, **kwargs: Any) -> None:
        self.imported.append((path, kwargs))


class _Client:
    def __init__(self) -> None:
        self.api = _Api()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Commands recorded instead of run; the tools present are set per test with ``have``."""
    state: dict[str, Any] = {"commands": [], "envs": [], "have": set(), "client": _Client()}

    def run_checked(cmd: list[str], what: str, timeout: float = 300, **kwargs: Any) -> None:
        state["commands"].append(cmd)
        state["envs"].append(kwargs.get("env"))
        if cmd[0] == "debootstrap":
            Path(cmd[-2]).mkdir(parents=True)

    monkeypatch.setattr(images.engine, "run_checked", run_checked)
    monkeypatch.setattr(images.engine, "client", lambda: state["client"])
    monkeypatch.setattr(images.shutil, "which", lambda name: f"/usr/bin/{name}" if name in state["have"] else None)
    monkeypatch.setattr(images.os, "geteuid", lambda: 0)
    monkeypatch.setattr(images, "_exists", lambda tag: True)
    return state


def test_mmdebstrap_is_preferred_and_writes_the_tarball_docker_imports(recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    recorded["have"] = {"mmdebstrap", "debootstrap"}
    monkeypatch.setattr(images, "_scratch_dir", lambda: "/dev/shm")
    ref = images.image_ref("node")
    images._build_base(ref, lambda line: None)
    [cmd] = recorded["commands"]
    assert cmd[0] == "mmdebstrap"
    assert "--variant=minbase" in cmd
    assert f"--include={','.join(images.BASE_PACKAGES)}" in cmd
    assert cmd[-3:-1] == [ref.release, cmd[-2]] and cmd[-2].endswith("root.tar") and cmd[-1] == images.MIRROR
    hook = f"--hook-dir={images._MERGED_USR_HOOKS}"
    assert (hook in cmd) == Path(images._MERGED_USR_HOOKS).is_dir()
    assert recorded["envs"][0]["TMPDIR"] == "/dev/shm"
    [(path, kwargs)] = recorded["client"].api.imported
    assert path == cmd[-2]
    assert f"{kwargs['repository']}:{kwargs['tag']}" == ref.base_tag


def test_without_room_on_the_tmpfs_mmdebstrap_keeps_the_default_tmpdir(recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    recorded["have"] = {"mmdebstrap"}
    monkeypatch.setattr(images, "_scratch_dir", lambda: None)
    images._build_base(images.image_ref("node"), lambda line: None)
    assert recorded["envs"] == [None]


def test_debootstrap_is_the_fallback_and_its_tree_is_packed(recorded: dict[str, Any]) -> None:
    recorded["have"] = {"debootstrap"}
    logged: list[str] = []
    images._build_base(images.image_ref("node"), logged.append)
    first, pack = recorded["commands"]
    assert first[:2] == ["debootstrap", "--variant=minbase"]
    assert pack[:3] == ["tar", "-C", first[-2]]
    assert "with debootstrap" in logged[0]
    assert len(recorded["client"].api.imported) == 1


def test_no_tool_or_no_root_is_one_clear_line(recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="neither mmdebstrap nor debootstrap") as err:
        images._build_base(images.image_ref("node"), lambda line: None)
    assert "apt-get install -y mmdebstrap" in str(err.value.fix)
    recorded["have"] = {"mmdebstrap"}
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root"):
        images._build_base(images.image_ref("node"), lambda line: None)
    assert recorded["commands"] == []


def test_the_scratch_tmpfs_is_used_only_with_room(monkeypatch: pytest.MonkeyPatch) -> None:
    usage = type("Usage", (), {})
    for free, expected in ((images._SCRATCH_MIN, "/dev/shm"), (images._SCRATCH_MIN - 1, None)):
        u = usage()
        u.free = free  # type: ignore[attr-defined]
        monkeypatch.setattr(images.shutil, "disk_usage", lambda path, u=u: u)
        assert images._scratch_dir() == expected

    def missing(path: str) -> None:
        raise FileNotFoundError(path)

    monkeypatch.setattr(images.shutil, "disk_usage", missing)
    assert images._scratch_dir() is None


def test_image_repo_moves_both_images() -> None:
    env = {**os.environ, "LBBENCH_IMAGE_REPO": "lbbench-elsewhere"}
    code = "from bench import images; r = images.image_ref('node'); print(r.base_tag); print(r.node_tag)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith("lbbench-elsewhere/base:bookworm-")
    assert out[1].startswith("lbbench-elsewhere/node:bookworm-")
    assert out[0].split(":")[1] == images.image_ref("node").base_tag.split(":")[1]  # same content hash, other repository
