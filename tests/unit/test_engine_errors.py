"""Errors the Docker engine returns while a lab starts or is torn down end in one line with the engine's message.

The engine's answer is recorded (a docker-py APIError as the engine's HTTP API returns it,
seen when the engine's default bridge had gone while `bench up` started a lab); the lab's
own start and cleanup code runs for real around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker.errors
import pytest

from bench import engine, images, paths
from bench.cli import main
from bench.errors import engine_error
from bench.topology import lab as labmod

BRIDGE_GONE = "failed to create endpoint lbbench-1a2b3c4d-lb-a-1 on network bridge: network 7f3c0a not found"


class _Response:
    status_code = 500
    reason = "Internal Server Error"
    url = "http+docker://localhost/v1.41/containers/x/start"


def api_error(explanation: str = BRIDGE_GONE) -> docker.errors.APIError:
    return docker.errors.APIError("500 Server Error: Internal Server Error", response=_Response(), explanation=explanation)  # type: ignore[arg-type]


def test_engine_error_is_one_line_with_the_engines_words() -> None:
    err = engine_error(api_error())
    assert err is not None
    line = str(err)
    assert "\n" not in line and BRIDGE_GONE in line and "APIError 500" in line and "fix:" in line
    assert engine_error(ValueError("x")) is None


def test_bench_up_engine_error_during_start_cleans_up_then_says_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    calls: list[str] = []

    class Ref:
        node_tag = "lbbench/node:test"

    vv = (Path(__file__).parent / "data" / "haproxy-vv-2.6.txt").read_text()
    monkeypatch.setattr(engine, "client", lambda: None)
    monkeypatch.setattr(engine, "compose_binary", lambda: ["docker", "compose"])
    monkeypatch.setattr(images, "ensure_images", lambda *a, **k: Ref())
    monkeypatch.setattr(images, "haproxy_build", lambda image, log=None: images.parse_vv(image, "sha256:00", vv))
    monkeypatch.setattr(labmod.Lab, "prepare", lambda self, subnets=None: calls.append("prepare"))
    monkeypatch.setattr(labmod.Lab, "check_configs", lambda self: [])

    def up(self: labmod.Lab, validated: bool = False) -> None:
        calls.append("up")
        self.files.root.mkdir(parents=True)  # what a start leaves before the engine refuses
        raise api_error()

    real_down = labmod.Lab.down

    def down(self: labmod.Lab) -> list[str]:
        calls.append("down")
        monkeypatch.setattr(labmod, "remove_by_label", lambda label: (0, 0))
        return real_down(self)

    monkeypatch.setattr(labmod.Lab, "up", up)
    monkeypatch.setattr(labmod.Lab, "down", down)
    code = main(["up", "split"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert calls == ["prepare", "up", "down"], "the cleanup runs before the error is reported"
    assert len(err) == 1 and err[0].startswith("bench: error: the Docker engine refused (APIError 500): ") and BRIDGE_GONE in err[0]
    assert not any((tmp_path / "state").iterdir()), "the lab's state folder is removed"


def test_teardown_never_raises_engine_errors_and_says_what_is_left(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A teardown on the way out of a failed start must not replace the error that brought us there."""
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")

    def refuse(label: str) -> Any:
        raise api_error("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")

    monkeypatch.setattr(labmod, "remove_by_label", refuse)
    monkeypatch.setattr(labmod, "remove_loadgen_cgroups", lambda project: None)
    said: list[str] = []
    lab = labmod.Lab.__new__(labmod.Lab)
    lab.project, lab.log, lab.started = "lbbench-1a2b3c4d", said.append, True
    lab.files = labmod.LabFiles.for_project(lab.project)
    lab.files.root.mkdir(parents=True)
    problems = lab.down()
    assert len(problems) == 1 and "Cannot connect to the Docker daemon" in problems[0]
    assert said and "teardown of lbbench-1a2b3c4d incomplete" in said[0] and "`bench down lbbench-1a2b3c4d` retries" in said[0]
    assert not lab.files.root.exists() and lab.started is False


@pytest.mark.parametrize("name", ["..", "../..", "/", "x/../..", "", "lbbench-1a2b3c4d/../../etc", "A" * 70])
def test_bench_down_refuses_what_is_not_a_lab_name_before_touching_anything(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench down ..` once meant rmtree(state/..): a lab name is checked before the engine or a folder is touched."""
    monkeypatch.setattr(paths, "STATE", tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "keep").write_text("x")

    def touched() -> Any:
        raise AssertionError("the engine was asked")

    monkeypatch.setattr(engine, "client", touched)
    code = main(["down", name])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (tmp_path / "keep").exists() and (tmp_path / "state").exists()
