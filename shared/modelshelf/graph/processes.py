"""The child processes of a local run (``graph run``'s Seldon graph or KServe InferenceService).

Both runs start servers the same way, echo their output to one log under the child's name, keep
its last lines for the error that says why it failed, fetch models in a process of their own (as
the storage initializer does) and stop them as the kubelet does. This is that shared part, so the
two runs cannot drift apart.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

from modelshelf.errors import ModelshelfError
from modelshelf.redaction import redact_uri
from modelshelf.supervision import Child, ChildNotReadyError, Supervisor

LOG_TAIL_LINES = 60


class NodeFailedError(ModelshelfError):
    """A node's server stopped, or never became healthy; carries the end of its log."""

    def __init__(self, node: str, reason: str, log_tail: str) -> None:
        self.node = node
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"node {node!r} {reason}; its last log lines:\n{log_tail}")


class _HasProcess(Protocol):
    process: Child | None
    log_tail: collections.deque


_Child = TypeVar("_Child", bound=_HasProcess)


def log_tail_buffer() -> collections.deque:
    """Where a child's last ``LOG_TAIL_LINES`` lines are kept for its error message."""
    return collections.deque(maxlen=LOG_TAIL_LINES)


def modelshelf_run(server_dir: Path) -> list[str]:
    """What a modelshelf image's entry point runs, for the server in ``server_dir``."""
    return [sys.executable, "-m", "modelshelf.cli", "run", "--server-dir", str(server_dir)]


def first_exited(children: Iterable[_Child]) -> _Child | None:
    """The first of ``children`` whose process has stopped, if any."""
    for child in children:
        if child.process is not None and child.process.poll() is not None:
            return child
    return None


class ChildProcesses:
    """Starts, logs, and stops the servers of one local run (the base of both runs)."""

    def __init__(self, log_stream: TextIO | None) -> None:
        self.log_stream = log_stream or sys.stderr
        self._log_lock = threading.Lock()
        self._stopping = False  # once set, child output is no longer echoed (shutdown noise)
        self.supervisor = Supervisor(grace_seconds=30)
        self._started: list[Child] = []

    def _log(self, name: str, line: str) -> None:
        with self._log_lock, contextlib.suppress(ValueError, OSError):
            self.log_stream.write(f"[{name}] {line}\n")
            self.log_stream.flush()

    def _spawn(
        self,
        name: str,
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        log_tail: collections.deque,
    ) -> Child:
        """Start ``command`` in a session of its own (so ``stop`` can reach all of it), its output
        echoed under ``name`` and its last lines kept in ``log_tail``."""
        child = self.supervisor.start_command(
            name,
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._started.append(child)
        threading.Thread(target=self._pump, args=(name, child, log_tail), daemon=True).start()
        return child

    def _pump(self, name: str, child: Child, log_tail: collections.deque) -> None:
        for line in child.handle.stdout:
            log_tail.append(line.rstrip("\n"))
            if not self._stopping:
                self._log(name, line.rstrip("\n"))

    def _fetch_in_own_process(
        self, name: str, uri: str, secret_env: Callable[[], dict[str, str]], failure: str
    ) -> str:
        """The local folder of ``uri``: a local path as it is; anything else downloaded by
        ``python -m modelshelf.graph.fetch`` in a process whose environment alone holds the
        storage secret, so credentials reach the download and not the server. ``secret_env`` is
        only called (and may only fail for a missing secret) when there is something to download."""
        if uri.lower().startswith("file://") or Path(uri).exists():
            from modelshelf.storage import download

            return str(download(uri).resolve())  # the server runs in its own folder
        self._log(name, f"fetching {uri}")
        result = subprocess.run(
            [sys.executable, "-m", "modelshelf.graph.fetch", uri],
            env={**os.environ, **secret_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise NodeFailedError(name, failure, (result.stdout + result.stderr)[-4000:])
        self._log(name, f"fetched {redact_uri(uri)} into {lines[-1]}")
        return lines[-1]

    def _wait_ready(
        self,
        children: list[_Child],
        is_ready: Callable[[_Child], bool],
        timeout: float,
        waiting_for: str,
    ) -> None:
        """Until ``is_ready`` holds for every child; ``NodeFailedError`` (with the child's last log
        lines) for the first that exits before, or that is still not ``waiting_for`` at the
        deadline."""
        by_pid = {child.process.pid: child for child in children if child.process is not None}
        try:
            self.supervisor.wait_ready(
                [child.process for child in by_pid.values() if child.process is not None],
                lambda process: is_ready(by_pid[process.pid]),
                timeout,
                waiting_for,
            )
        except ChildNotReadyError as exc:
            if exc.child.returncode is not None:
                time.sleep(0.2)  # let the pump thread read the last lines
            tail = "\n".join(by_pid[exc.child.pid].log_tail)
            raise NodeFailedError(exc.child.name, exc.reason, tail) from None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM each server's entry point (it stops its front end gracefully); SIGKILL every
        process of its tree and session still running after ``timeout``."""
        self._stopping = True
        self.supervisor.grace_seconds = timeout
        self.supervisor.stop(self._started)
