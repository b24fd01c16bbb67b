"""Subprocess helpers for integration tests: one process group per child, nothing left behind.

`Proc` starts a command in its own session (so it leads a fresh process group), sends its
stdout (and, unless told otherwise, its stderr) to a file, and can wait with a deadline,
signal, stop and kill the whole group. Every started `Proc` is remembered until it has been
reaped, and an `atexit` hook SIGKILLs whatever is still alive when the interpreter exits, so
even a test run that dies on an exception leaves no processes behind.

Reaping is careful about PID reuse: exit is detected with ``waitid(..., WNOWAIT)``, the group
is SIGKILLed while the zombie leader still pins the PGID, and only then is the leader reaped.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal as _signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from harness.poll import PollTimeout, poll

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
"""The repository root (the directory holding ``harness/``, ``tests/`` and ``wampd/``)."""

T = TypeVar("T")

_LIVE: set[Proc] = set()
_LIVE_LOCK = threading.Lock()


class ProcError(RuntimeError):
    """A harness process misbehaved (timed out, exited early, ...); the message has its log."""


class ProcTimeout(PollTimeout, ProcError):
    """A wait on a `Proc` gave up: it timed out, or the process exited first.

    Both a :class:`~harness.poll.PollTimeout` (a test failure) and a :class:`ProcError`.
    """


def harness_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``os.environ`` plus the repo root on ``PYTHONPATH`` (so ``-m harness.x``,
    ``-m bench`` and ``tests.*`` imports work from any working directory), unbuffered Python
    output, and ``extra``."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def read_tail(path: Path, n: int = 50) -> str:
    """Return the last ``n`` lines of a text file ('' if it does not exist)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Parse every line of ``text`` that is a JSON object; other lines are skipped."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("{"):
            continue
        try:
            obj = json.loads(stripped)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def descendants(pid: int) -> list[int]:
    """Return all live descendants of ``pid`` (children first, breadth first).

    Uses ``/proc/<pid>/task/*/children`` and falls back to scanning the ppid field of
    ``/proc/*/stat`` when that file is unavailable (kernels without CONFIG_PROC_CHILDREN).
    """
    result: list[int] = []
    queue = [pid]
    seen = {pid}
    while queue:
        parent = queue.pop(0)
        for child in _children(parent):
            if child not in seen:
                seen.add(child)
                result.append(child)
                queue.append(child)
    return result


def _children(pid: int) -> list[int]:
    task_dir = Path(f"/proc/{pid}/task")
    found: list[int] = []
    try:
        tasks = list(task_dir.iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    try:
        for task in tasks:
            found.extend(int(x) for x in (task / "children").read_text().split())
    except FileNotFoundError:
        return _children_by_stat(pid)
    except (ProcessLookupError, PermissionError):
        pass
    return found


def _children_by_stat(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None and stat[1] == pid:
            found.append(int(entry.name))
    return found


def _read_stat(pid: int) -> tuple[str, int, int] | None:
    """Return (state, ppid, pgrp) of ``pid`` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in process group ``pgid``."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (R, S, T, Z, ...), or None if gone."""
    stat = _read_stat(pid)
    return stat[0] if stat is not None else None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    stat = _read_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to every pid, ignoring the ones that are already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_pids_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` is alive (zombies count as gone); return the survivors."""
    remaining = list(pids)

    def all_gone() -> bool:
        remaining[:] = [p for p in remaining if pid_alive(p)]
        return not remaining

    with contextlib.suppress(PollTimeout):
        poll(all_gone, timeout)
    return remaining


class Proc:
    """A command running in its own session, with stdout (and stderr) going to a file.

    With ``die_with_parent`` (the default) the child also gets SIGKILL when the test
    process dies, however it dies (see :meth:`_launch_argv`).

    ``stderr_path=None`` (the default) sends stderr to the stdout file too; pass a separate
    path when the stdout lines must stay machine-readable (stderr writes can land in the
    middle of a block-buffered stdout line otherwise).
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        stdout_path: Path,
        stderr_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.argv: list[str] = [os.fspath(a) for a in argv]
        self.die_with_parent = die_with_parent
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.env: dict[str, str] = dict(env) if env is not None else harness_env()
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self._popen: subprocess.Popen[bytes] | None = None
        self._offset = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the command (stdout/stderr appended to the log files); return self."""
        if self.running:
            raise ProcError(f"{self.name} is already running (pid {self.pid})")
        self.stdout_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._offset = self.stdout_path.stat().st_size
        except FileNotFoundError:
            self._offset = 0
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(self.stdout_path.open("ab"))
            err: Any = subprocess.STDOUT
            if self.stderr_path is not None:
                self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
                err = stack.enter_context(self.stderr_path.open("ab"))
            self._popen = subprocess.Popen(
                self._launch_argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def _launch_argv(self) -> list[str]:
        """``self.argv``, behind ``setpriv --pdeathsig KILL`` when ``die_with_parent``.

        The parent-death signal makes the child die even if this process is SIGKILLed (no
        finalizer, no atexit). It fires when the *thread* that started the child exits, so
        it is only used for children started from the main thread. setpriv (util-linux)
        execs the command, so the PID is the command's own.
        """
        if not self.die_with_parent or threading.current_thread() is not threading.main_thread():
            return self.argv
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return self.argv
        return [setpriv, "--pdeathsig", "KILL", "--", *self.argv]

    @property
    def pid(self) -> int:
        """PID of the main process (also the process group and session id)."""
        if self._popen is None:
            raise ProcError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def started(self) -> bool:
        """True once start() has been called."""
        return self._popen is not None

    @property
    def returncode(self) -> int | None:
        """Exit status once the main process has exited (negative: killed by that signal)."""
        if self._popen is None:
            return None
        self._exited()
        return self._popen.returncode

    @property
    def running(self) -> bool:
        """True while the main process has not exited."""
        return self._popen is not None and not self._exited()

    def _exited(self) -> bool:
        """Detect exit; on exit SIGKILL the rest of the group, then reap the leader."""
        popen = self._popen
        if popen is None:
            return True
        if popen.returncode is not None:
            return True
        try:
            # WNOWAIT: look, but leave the zombie in place for _reap().
            info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere
            exited = True
        else:
            exited = info is not None
        if exited:
            self._reap()
        return exited

    def _reap(self, strays: Iterable[int] = ()) -> None:
        """SIGKILL what is left of the group, reap the (exited or killed) leader, and wait
        until the group members and ``strays`` are really gone (SIGKILL is asynchronous)."""
        assert self._popen is not None
        # Until the leader is reaped its zombie pins the PGID, so this cannot hit a
        # recycled group.
        leader = self._popen.pid
        members = [p for p in (*group_members(leader), *strays) if p != leader]
        self._killpg(_signal.SIGKILL)
        signal_pids(strays, _signal.SIGKILL)
        self._popen.wait()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        left = wait_pids_gone(members, timeout=10.0)
        if left:
            raise ProcError(f"{self.name}: processes {left} survived SIGKILL")

    def _killpg(self, sig: int) -> None:
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the main process to exit; return its status.

        Raises ProcTimeout (with the log tail) if it is still running after ``timeout``
        seconds; the process is left running in that case.
        """
        poll(
            self._exited,
            timeout,
            describe=lambda: f"{self.name} (pid {self.pid}) still running\n{self.describe()}",
            error=ProcTimeout,
        )
        rc = self.returncode
        assert rc is not None
        return rc

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the main process only (no-op once it has exited)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no-op once the leader has exited)."""
        if self.running:
            self._killpg(sig)

    def descendants(self) -> list[int]:
        """Live descendants of the main process (see :func:`descendants`)."""
        if not self.running:
            return []
        return descendants(self.pid)

    def stop(self, timeout: float = 5.0, sig: int = _signal.SIGTERM) -> int | None:
        """Send ``sig`` (SIGTERM) to the main process, wait up to ``timeout`` seconds, then
        SIGKILL the whole group. Idempotent; returns the exit status (None if never started).
        """
        if self._popen is None:
            return None
        if self.running:
            # A stopped (SIGSTOP) process would never act on SIGTERM.
            self._killpg(_signal.SIGCONT)
            self.signal(sig)
            with contextlib.suppress(PollTimeout):
                poll(self._exited, timeout)
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the whole process group (and any descendant that left it) and reap.

        Idempotent; returns the exit status (None if never started).
        """
        if self._popen is None:
            return None
        if self.running:
            self._reap(strays=descendants(self.pid))
        return self._popen.returncode

    # -- output ---------------------------------------------------------------------------

    def output(self, *, all_runs: bool = False) -> str:
        """What this run (since the last start()) wrote to the stdout file so far; the whole
        file (earlier runs appended to it too) with ``all_runs``."""
        try:
            with self.stdout_path.open("rb") as fh:
                if not all_runs:
                    fh.seek(self._offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of the stdout file (and of the stderr file if separate)."""
        tail = read_tail(self.stdout_path, n)
        if self.stderr_path is None:
            return tail
        return f"--- stdout ---\n{tail}\n--- stderr ---\n{read_tail(self.stderr_path, n)}"

    def describe(self, n: int = 50) -> str:
        """Command line, status and log tail, for error messages."""
        state = "running" if self.running else f"exited with status {self.returncode}"
        return (
            f"command: {' '.join(self.argv)}\nstate: {state}\n"
            f"last {n} log lines ({self.stdout_path}):\n{self.log_tail(n)}"
        )

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line this run wrote to stdout that is a JSON object (others skipped)."""
        return parse_json_lines(self.output())

    def wait_for_json(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """Poll the stdout file until a JSON line satisfies ``predicate``; return it.

        Raises ProcTimeout with the log tail on timeout, or as soon as the process has
        exited without producing such a line.
        """

        def matching() -> list[dict[str, Any]]:
            return [obj for obj in self.json_lines() if predicate(obj)][:1]

        return self._poll_output(matching, timeout, "JSON line")

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """Poll the stdout file until a line satisfies ``predicate``; return it (see
        :meth:`wait_for_json` for the error behaviour)."""

        def matching() -> list[str]:
            return [line for line in self.output().splitlines() if predicate(line)][:1]

        return self._poll_output(matching, timeout, "line")

    def _poll_output(self, find: Callable[[], list[T]], timeout: float, what: str) -> T:
        """The first of what ``find`` finds (a list: an empty line or ``{}`` counts too)."""

        def describe() -> str:
            if self.running:
                return f"no matching {what} from {self.name}\n{self.describe()}"
            return f"{self.name} exited without the expected {what}\n{self.describe()}"

        found = poll(
            find, timeout, describe=describe, stop=lambda: not self.running, error=ProcTimeout
        )
        return found[0]

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> Self:
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen else None
        return f"<Proc {self.name} pid={pid} running={self.running}>"


class ProcessHost:
    """Something the harness runs as one :class:`Proc` (a router, a server), started later.

    Subclasses set :attr:`_proc` when they start it, name themselves in :attr:`_what`, and
    have ``start()`` and ``stop()``; as a context manager it is started and stopped.
    """

    _what = "process"

    def __init__(self) -> None:
        self._proc: Proc | None = None

    @property
    def pid(self) -> int:
        """PID of the main process (RuntimeError if never started)."""
        if self._proc is None:
            raise RuntimeError(f"{self._what} was never started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the main process is alive (a paused one counts as running)."""
        return self._proc is not None and self._proc.running

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Started (unless it already runs); stopped again at the end of the block."""
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``module`` with this interpreter (use with :func:`harness_env`)."""
    return [sys.executable, "-m", module, *args]


def kill_all() -> None:
    """SIGKILL every Proc that is still alive (used at interpreter exit)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()


atexit.register(kill_all)
