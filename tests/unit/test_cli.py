"""The CLI in-process: bad input gives one line on stderr and exit status 2, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import paths
from bench.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["run", "nope"], "no scenario named 'nope'"),
        (["run", "smoke", "--duration", "ten"], "--duration: not a duration: 'ten'"),
        (["run", "smoke", "--variant", "nope"], "no variant named 'nope'"),
        (["run", "smoke", "--set", "lb.backend.processes=0"], "lb.backend.processes: Input should be greater than or equal to 1"),
        (["run", "smoke", "--set", "nonsense"], "expected KEY=VALUE"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run"], "the following arguments are required: scenario"),
        (["down"], "name a PROJECT or pass --all"),
        (["report", "/nonexistent/run"], "no run.json"),
        (["watch", "/nonexistent/run"], "no run.json here"),
        (["run", "smoke", "--metrics-port", "0"], "not a TCP port"),
        (["run", "smoke", "--junit", "/nonexistent/dir/slo.xml"], "folder /nonexistent/dir does not exist"),
        (["down", "--all", "lbbench-00000000"], "not both"),
        (["capacity", "predict", "nope", "--model", "/nonexistent"], "no profile named 'nope'"),
        (["capacity", "predict", "seed-peak", "--model", "/nonexistent"], "/nonexistent: no such file or folder"),
        (["capacity", "fit", "/nonexistent/capacity"], "no such folder"),
        (["capacity", "measure", "--stage-seconds", "1"], "--stage-seconds 1: must be between 4 and 600"),
        (["capacity", "measure", "--profile", "nope"], "no profile named 'nope'"),
        (["capacity", "measure", "--scenario", "nope"], "no scenario named 'nope'"),
        (["capacity"], "the following arguments are required: SUBCOMMAND"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    before = set(paths.REPORTS.iterdir()) if paths.REPORTS.exists() else set()
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert expect in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ")
    assert "fix:" in lines[0]
    after = set(paths.REPORTS.iterdir()) if paths.REPORTS.exists() else set()
    assert after == before, "bad input must not leave a run directory"


def test_scenarios_lists_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scenarios")
    assert code == 0
    assert out.startswith("smoke") or "\nsmoke" in out


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "up", "down", "status", "doctor", "scenarios", "images", "report"):
        assert command in out


def test_run_with_unwritable_out_is_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("x")
    code, _, err = run(capsys, "run", "smoke", "--out", str(occupied), "--duration", "5s")
    assert code == 2
    assert "already exists and is not empty" in err


def test_every_command_module_is_registered() -> None:
    """A module under bench/commands is a command only when COMMANDS lists it (and `bench --help` shows it)."""
    import pkgutil

    import bench.commands
    from bench.cli import build_parser
    from bench.commands import COMMANDS

    modules = {m.name for m in pkgutil.iter_modules(bench.commands.__path__)} - {"common"}
    assert modules == {c.__name__.rsplit(".", 1)[1] for c in COMMANDS}
    help_text = build_parser().format_help()
    for command in COMMANDS:
        assert hasattr(command, "register")
        assert callable(getattr(command, "cmd_" + command.__name__.rsplit(".", 1)[1]))
        assert "    " + command.__name__.rsplit(".", 1)[1] in help_text
