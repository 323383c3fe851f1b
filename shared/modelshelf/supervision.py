"""Child processes, started, watched and stopped one way: the supervisor under ``modelshelf run``
(the front end, one command), ``modelshelf serve`` (forked REST, gRPC and metrics workers) and
``graph run`` (one ``modelshelf run`` per node), so the three cannot drift apart.

The rules, the same for all three:

* a child is a command in a session of its own (so everything it starts can be found and
  stopped) or a forked callable (default signal handling, and SIGTERM when its parent dies, so
  no worker outlives the server);
* SIGTERM, SIGINT and SIGCHLD wake the supervisor through a pipe, so it sleeps while nothing
  happens and never loses a signal that arrives between two checks;
* stopping is SIGTERM (to the processes the caller names first), SIGKILL to whatever of a child
  is still running after the grace period -- or at once on a second SIGTERM/SIGINT -- and then
  the processes it left behind get SIGTERM and, ``LEFTOVER_SECONDS`` later, SIGKILL;
* every child is reaped (orphans too, with ``reap_orphans``: as PID 1, or as a subreaper);
* a child's exit status is reported as the shell does: its code, or 128 + N after signal N.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from modelshelf.errors import ModelshelfError

logger = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
#: After a child has ended: how long the processes it left behind get before SIGKILL.
LEFTOVER_SECONDS = 2.0
_TICK = 0.05
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PR_SET_CHILD_SUBREAPER = 36
_EXITED_NOWAIT = os.WEXITED | os.WNOHANG | os.WNOWAIT


class ChildNotReadyError(ModelshelfError):
    """A child exited before it was ready, or was still not ready at the deadline."""

    def __init__(self, child: Child, reason: str) -> None:
        self.child = child
        self.reason = reason
        super().__init__(f"{child.name} {reason}")


@dataclass(eq=False)
class Child:
    """One child process (``Supervisor.start_command`` or ``Supervisor.fork``) and how it ended."""

    name: str
    handle: Any  # a Popen, or a multiprocessing Process: each reaps its own pid
    own_session: bool  # a command leads a session (and group) of its own; a fork does not
    ready: Any = None  # a multiprocessing Event the child sets once it serves, or None
    #: Python's convention: the exit code, or -N after signal N; None while running.
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.handle.pid

    def poll(self) -> int | None:
        """The returncode once the child has ended (reaping it); ``None`` while it runs."""
        if self.returncode is None:
            popen = isinstance(self.handle, subprocess.Popen)
            self.returncode = self.handle.poll() if popen else self.handle.exitcode
        return self.returncode

    @property
    def exit_code(self) -> int | None:
        """The exit status as the shell reports it: 128 + N after signal N."""
        code = self.poll()
        return 128 - code if code is not None and code < 0 else code

    def describe_exit(self) -> str:
        """``code 3`` or ``signal SIGKILL``, for the log."""
        code = self.poll()
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"signal {signal.Signals(-code).name}"
        return f"code {code}"

    def is_ready(self) -> bool:
        """Whether the child said it serves (children that do not report it always are)."""
        return self.ready is None or self.ready.is_set()

    def processes(self) -> set[int]:
        """While it runs the child and its descendants; and, leading a session, its group (a
        pid that leads a group is not reused, unlike the pid of a reaped child)."""
        table = _process_table()
        found = {self.pid} | descendants(self.pid, table) if self.poll() is None else set()
        return found | (group_members(self.pid, table) if self.own_session else set())


class Supervisor:
    """The children of one program and how they stop: SIGTERM, ``grace_seconds``, SIGKILL."""

    def __init__(self, grace_seconds: float, reap_orphans: bool = False) -> None:
        self.grace_seconds = grace_seconds
        self.reap_orphans = reap_orphans
        self.children: list[Child] = []  # not yet reaped
        #: SIGTERM / SIGINT received while watching signals, in order.
        self.stop_signals: list[int] = []
        self._wakeups: int | None = None

    @contextlib.contextmanager
    def watching_signals(self) -> Iterator[Supervisor]:
        """SIGTERM, SIGINT and SIGCHLD wake ``wait`` through a pipe (no polling, no signal lost
        between two checks); with ``reap_orphans`` the orphans of our children become ours to
        reap. The previous handlers come back afterwards."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        watched = (*STOP_SIGNALS, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, _wake) for signum in watched}
        previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        if self.reap_orphans:
            _set_subreaper(True)
        self._wakeups = read_end
        try:
            yield self
        finally:
            if self.reap_orphans:
                _set_subreaper(False)
            self._wakeups = None
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(read_end)
            os.close(write_end)

    @property
    def stop_requested(self) -> bool:
        """Whether a SIGTERM or SIGINT has arrived (checked without waiting)."""
        self._read_signals()
        return bool(self.stop_signals)

    def wait(self, timeout: float | None) -> None:
        """Sleep until a child ends, a signal arrives or ``timeout`` passes; then reap."""
        if self._wakeups is None:
            time.sleep(_TICK if timeout is None else timeout)
        else:
            with contextlib.suppress(InterruptedError):
                select.select([self._wakeups], [], [], timeout)
            self._read_signals()
        self.reap()

    def _read_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wakeups is not None and (data := os.read(self._wakeups, 512)):
                self.stop_signals.extend(signum for signum in data if signum in STOP_SIGNALS)

    def start_command(self, name: str, command: Sequence[str], **popen: Any) -> Child:
        """``command`` as the leader of a new session (``popen``: ``subprocess.Popen``'s
        keywords, e.g. ``cwd``, ``env``, ``stdout``)."""
        child = Child(name, subprocess.Popen(command, start_new_session=True, **popen), True)
        self.children.append(child)
        return child

    def fork(
        self, name: str, target: Callable[..., object], *args: Any, report_ready: bool = False
    ) -> Child:
        """``target(*args)`` in a forked process; with ``report_ready`` it gets one more
        argument, an event to set once it serves (``Child.is_ready``)."""
        context = multiprocessing.get_context("fork")
        ready = context.Event() if report_ready else None
        args = (*args, ready) if report_ready else args
        process = context.Process(target=_forked, args=(os.getpid(), target, *args), name=name)
        process.start()
        child = Child(name, process, False, ready)
        self.children.append(child)
        return child

    def reap(self) -> None:
        """Collect every child that has ended (and, with ``reap_orphans``, any orphan)."""
        while True:
            self.children = [child for child in self.children if child.poll() is None]
            try:  # WNOWAIT only looks: a child of ours is reaped by its handle, keeping its status
                found = self.reap_orphans and os.waitid(os.P_ALL, 0, _EXITED_NOWAIT)
            except ChildProcessError:
                return
            if not found:
                return
            if found.si_pid not in {child.pid for child in self.children}:
                os.waitpid(found.si_pid, os.WNOHANG)

    def wait_ready(
        self,
        children: Sequence[Child],
        is_ready: Callable[[Child], bool],
        timeout: float,
        waiting_for: str = "ready",
    ) -> None:
        """Until ``is_ready`` holds for every child; ``ChildNotReadyError`` for the first that
        exits before, or that is still not ready at the deadline."""
        deadline = time.monotonic() + timeout
        pending = list(children)
        while pending:
            for child in list(pending):
                if child.poll() is not None:
                    raise ChildNotReadyError(
                        child, f"exited before it was ready (exit code {child.returncode})"
                    )
                if is_ready(child):
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                raise ChildNotReadyError(pending[0], f"not {waiting_for} after {timeout:.0f} s")
            if pending:
                self.wait(0.1)

    def stop(
        self,
        children: Iterable[Child],
        first: Callable[[Child], set[int]] | None = None,
        then_rest: bool = False,
    ) -> None:
        """SIGTERM to ``first(child)`` of each running child (the child itself by default); with
        ``then_rest``, to the rest of its processes once those are gone. SIGKILL to every process
        of a child still running ``grace_seconds`` later, or at once on another SIGTERM/SIGINT.
        Returns once every child is reaped and nothing it left behind runs."""
        children = list(children)
        started, signals_before = time.monotonic(), len(self.stop_signals)
        known = {child: child.processes() for child in children}
        first_waves = {child: first(child) if first else {child.pid} for child in children}
        # Counted as signalled: only what was signalled, and of the processes that still ran
        # (a child that had ended was counted in the first wave, not in the total: "4 of 3").
        signalled: set[int] = set()
        for child in children:
            if child.poll() is None:
                signal_all(first_waves[child], signal.SIGTERM)
                signalled |= first_waves[child]
        logger.info(
            "stopping %s: SIGTERM to %d of %d processes first; SIGKILL after %.0f s",
            ", ".join(child.name for child in children),
            len(signalled),
            len(signalled | set().union(*known.values())),
            self.grace_seconds,
        )
        #: with ``then_rest``: the first-wave processes the rest of each child waits for
        before_rest = {c: first_waves[c] - {c.pid} for c in children} if then_rest else {}
        killing = False
        while running := {child: child.processes() for child in children if child.poll() is None}:
            for child, processes in running.items():
                known[child] |= processes
            again = len(self.stop_signals) > signals_before
            if again or time.monotonic() - started > self.grace_seconds:
                if not killing:
                    why = "a second stop signal" if again else f"{self.grace_seconds:.0f} s passed"
                    names = ", ".join(child.name for child in running)
                    logger.warning("killing %s: %s", names, why)
                killing = True
                # the children first: a shell whose background job died first would exit 0
                leaders = [child.pid for child in running]
                rest = set().union(*running.values()) - set(leaders)
                signal_all([*leaders, *rest], signal.SIGKILL)
            for child, processes in running.items():
                if child in before_rest and not before_rest[child] & processes:
                    del before_rest[child]  # the first wave is gone: the rest may stop now
                    signal_all(processes - {child.pid}, signal.SIGTERM)
            self.wait(_TICK)
        for child in children:
            self.stop_leftovers(child, known[child])

    def stop_leftovers(self, child: Child, known: Iterable[int] = ()) -> None:
        """What an ended child left running (its group, ``known`` processes of its tree):
        SIGTERM, then SIGKILL after ``LEFTOVER_SECONDS``."""
        deadline = time.monotonic() + LEFTOVER_SECONDS
        signalled = False
        known = set(known) - {child.pid}
        while leftovers := (child.processes() | known) & set(_process_table()):
            if not signalled:
                signal_all(leftovers, signal.SIGTERM)
                signalled = True
            elif time.monotonic() > deadline:
                signal_all(leftovers, signal.SIGKILL)
            self.wait(_TICK)
        self.reap()


def _set_subreaper(on: bool) -> None:
    """Orphans of our children become ours (to reap) instead of PID 1's."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _wake(signum: int, frame: object) -> None:
    """The wakeup pipe carries the signal; the handler only has to exist."""


def _forked(parent: int, target: Callable[..., object], *args: Any) -> None:
    """Start of every forked child: default signal handling and no wakeup pipe (not the
    parent's), and SIGTERM when the parent dies, so no child outlives it."""
    signal.set_wakeup_fd(-1)
    for signum in (*STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    try:
        target(*args)
    except ModelshelfError as exc:  # says what failed and what was expected: one line
        hint = "; --log-level DEBUG logs its traceback" if exc.__cause__ is not None else ""
        logger.error("%s failed: %s%s", multiprocessing.current_process().name, exc, hint)
        logger.debug("where it failed", exc_info=exc)
        sys.exit(1)  # the exit code of an exception left to multiprocessing


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Signal each of ``pids`` that still exists and is ours to signal."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _process_table() -> dict[int, tuple[int, int]]:
    """Live (not zombie) processes: pid -> (parent pid, process group), from ``/proc``."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if fields[0] not in (b"Z", b"X"):
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int, table: dict[int, tuple[int, int]] | None = None) -> set[int]:
    """Every live process below ``pid``."""
    table = _process_table() if table is None else table
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def group_members(pgid: int, table: dict[int, tuple[int, int]] | None = None) -> set[int]:
    """Live processes whose process group is ``pgid``."""
    table = _process_table() if table is None else table
    return {pid for pid, (_ppid, pgrp) in table.items() if pgrp == pgid}
