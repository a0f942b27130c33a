"""Process identity that survives pid reuse: boot id, pid and the process's start time.

A pid alone names a process only while it runs: once it is gone the kernel hands
the number to another one. The pid with its start time (in clock ticks since boot)
and the boot id names exactly one process, so a record of it can later tell
whether that very process still runs (a lab's owner, a probe container's creator).

Also :class:`Forked`: a step run in a forked copy of this process, beside the rest.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def boot_id() -> str | None:
    """This boot's id (/proc/sys/kernel/random/boot_id), None when it cannot be read."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields of a /proc/PID/stat file from the 3rd (state, ppid, pgrp, ...), None when it cannot be read."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing ")"
    return text[text.rfind(")") + 2 :].split()


def _stat_ints(pid: int, *index: int) -> list[int] | None:
    """Fields ``index`` (counted as :func:`_stat_fields` does) of /proc/``pid``/stat as ints, None when gone or malformed."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    try:
        return None if fields is None else [int(fields[i]) for i in index]
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), None when it is gone."""
    got = _stat_ints(pid, 19)
    return None if got is None else got[0]


def alive(pid: int, ticks: int | None, boot: str | None) -> bool:
    """Whether the process recorded as (``pid``, ``ticks``, ``boot``) still runs: same boot, same pid and start time.

    >>> import os
    >>> alive(os.getpid(), start_ticks(os.getpid()), boot_id())
    True
    >>> alive(os.getpid(), start_ticks(os.getpid()), "another-boot")
    False
    """
    now_boot = boot_id()
    if boot and now_boot and boot != now_boot:
        return False
    now = start_ticks(pid)
    if now is None:
        return False
    return ticks in (None, now)


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a process that can still write: a killed process that its
    new parent has not reaped yet (a zombie) still answers ``killpg(pgid, 0)``, but writes nothing."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _any_live(2, pgid)


def children_alive(ppid: int) -> bool:
    """Whether process ``ppid`` has a child that can still write (a zombie child cannot).

    Its children from ``/proc/PPID/task/*/children`` (a look at each, not at every process
    on the host: a forked master polls this at 100 Hz); the whole scan where that is missing.
    """
    try:
        kids = [kid for task in Path(f"/proc/{ppid}/task").iterdir() for kid in (task / "children").read_text().split()]
    except (OSError, ValueError):
        return _any_live(1, ppid)
    for kid in kids:
        fields = _stat_fields(Path(f"/proc/{kid}/stat"))
        if fields is not None and fields[0] not in ("Z", "X"):
            return True
    return False


def _any_live(index: int, value: int) -> bool:
    """Whether a process that is not a zombie has ``value`` as field ``index`` (1: ppid, 2: pgrp) of its stat."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)  # state, ppid, pgrp, ...
        if fields is not None and len(fields) > index and fields[index] == str(value) and fields[0] not in ("Z", "X"):
            return True
    return False


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, as Ctrl-C does, so the same cleanup runs (main thread only:
    elsewhere it changes nothing, as only the main thread may set a signal handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def quick_exit() -> None:
    """Let this process exit without its last garbage collection (call once, early, in a process
    that ends when its work ends: the `bench` command, a Locust process).

    When the interpreter ends it collects every object still alive; with pandas, pyarrow,
    matplotlib or Locust imported (and a run's data in memory) that takes 0.5-1.5 s of a 2-core
    machine, for memory the kernel takes back at once anyway. :func:`gc.freeze` at exit puts every
    object out of the collector's reach, so the process ends in about 0.1 s. Nothing else changes:
    the other exit handlers still run, and what writes files closes them itself (the capture,
    Locust's CSV writer, logging's flush at exit), as Python never promised to finalise what is
    left at exit.
    """
    atexit.register(gc.freeze)


class ForkStalled(RuntimeError):
    """A forked copy made no progress (no CPU time) for too long: most likely a lock it inherited, held by a thread that the fork did not copy."""


class Forked:
    """``fn()`` run in a forked copy of this process, beside whatever this process does next.

    The copy shares this process's memory until either writes to it (copy on write), so
    ``fn`` reads large data without it being pickled; only its return value comes back
    (pickled). Made for independent steps of one job on a multi-core machine, such as
    writing files while this process computes something else. :meth:`result` waits and
    returns ``fn``'s value or raises its exception (with the copy's traceback as a note);
    :meth:`close` waits for the copy if it still runs, and kills it after ``wait_s``.
    The copy ignores SIGINT (Ctrl-C goes to the whole process group: this process
    decides, the copy finishes what it writes) and takes the default action on SIGTERM
    instead of this process's handlers.

    A fork copies only the thread that forks: a lock another thread held then (in a
    library, or a stream being printed to) stays held in the copy forever. A copy that
    used no CPU for ``stall_s`` while it was awaited is taken for such a one: it is
    killed and :class:`ForkStalled` raised, so the caller can do the step itself.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        ctx = multiprocessing.get_context("fork")
        self._answer, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_run_forked, args=(fn, send), daemon=True)
        with warnings.catch_warnings():
            # Python >= 3.12 warns of fork() in a process with threads (Arrow's pools, bench run's teardown): see above
            warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning)
            self._proc.start()
        send.close()
        self._done = False

    def result(self, stall_s: float = 20.0) -> Any:
        """Wait for ``fn`` in the copy; its return value, or its exception raised here (:class:`ForkStalled`: see above)."""
        pid, last, since = self._proc.pid, None, time.monotonic()
        while not self._answer.poll(0.5):  # an answer, or the end of a copy that died (EOF)
            used = cpu_ticks(pid) if pid is not None else None
            if used is None or used != last:
                last, since = used, time.monotonic()
            elif time.monotonic() - since > stall_s:
                self.close(wait_s=0.0)
                raise ForkStalled(f"a forked step used no CPU for {stall_s:.0f} s: stopped")
        try:
            ok, value = self._answer.recv()
        except EOFError:
            self.close()
            raise RuntimeError(f"a forked step ended without an answer (exit code {self._proc.exitcode})") from None
        self.close()
        if not ok:
            raise value
        return value

    def close(self, wait_s: float | None = None) -> None:
        """Wait until the copy has ended (at once when it has); with ``wait_s``, kill it if it still runs then."""
        if self._done:
            return
        self._proc.join(wait_s)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._answer.close()
        self._done = True


def cpu_ticks(pid: int) -> int | None:
    """User + system CPU time ``pid`` used so far, in clock ticks (fields 14-15 of /proc/PID/stat); None when it cannot be read."""
    got = _stat_ints(pid, 11, 12)
    return None if got is None else sum(got)


def _run_forked(fn: Callable[[], Any], send: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        answer: tuple[bool, Any] = (True, fn())
    except BaseException as exc:  # noqa: BLE001 - any failure goes back to the parent, which raises it
        exc.add_note("in a forked step:\n" + "".join(traceback.format_exception(exc)))
        answer = (False, exc)
    try:
        send.send(answer)
    except Exception as exc:  # noqa: BLE001 - an unpicklable value or exception: say what it was
        send.send((False, RuntimeError(f"a forked step's answer could not be sent back: {exc!r}; {answer[1]!r}")))
    send.close()
