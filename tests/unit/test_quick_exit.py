"""bench.proc.quick_exit: a process ends without its last garbage collection, and loses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import cli

#: A process that registers an exit handler, then quick_exit, leaves garbage in a cycle and an
#: open file it wrote and closed, and exits with a status of its own.
CHILD = """
import atexit, gc, sys
from pathlib import Path
out = Path(sys.argv[1])
# registered first, so it runs after quick_exit's (exit handlers run last-registered first)
atexit.register(lambda: out.joinpath("frozen").write_text(str(gc.get_freeze_count())))
from bench.proc import quick_exit
quick_exit()
atexit.register(lambda: out.joinpath("later").write_text("ran"))
cycle = []
cycle.append(cycle)
with open(out / "data", "w") as f:
    f.write("kept")
sys.exit(3)
"""


def test_quick_exit_freezes_the_objects_at_exit_and_keeps_status_handlers_and_files(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "data").read_text() == "kept"
    assert (tmp_path / "later").read_text() == "ran"  # registered after it: runs before it
    assert int((tmp_path / "frozen").read_text()) > 1000  # every object left, the cycle included, out of the collector's reach


def test_only_the_bench_command_exits_quickly_not_a_caller_of_main(monkeypatch, capsys) -> None:
    """A test calling main() keeps its process's collector (a frozen pytest would never free a cycle again)."""
    calls: list[int] = []
    monkeypatch.setattr(cli, "quick_exit", lambda: calls.append(1))
    assert cli.main(["schema", "run"]) == 0
    assert '"properties"' in capsys.readouterr().out
    assert calls == []


def test_the_bench_command_exits_quickly() -> None:
    """`bench` as a command (main() without arguments): every object frozen at its exit, its status kept."""
    probe = (
        "import atexit, gc, os, sys; sys.argv = ['bench', 'schema', 'nothing'];"
        "atexit.register(lambda: os.write(2, f'frozen {gc.get_freeze_count()}'.encode()));"
        "from bench.cli import main; sys.exit(main())"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "nothing" in done.stderr  # the command's own error and status
    assert int(done.stderr.rsplit("frozen ", 1)[1]) > 1000
