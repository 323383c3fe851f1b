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
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

from modelshelf.errors import ModelshelfError
from modelshelf.redaction import redact_uri

LOG_TAIL_LINES = 60


class NodeFailedError(ModelshelfError):
    """A node's server stopped, or never became healthy; carries the end of its log."""

    def __init__(self, node: str, reason: str, log_tail: str) -> None:
        self.node = node
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"node {node!r} {reason}; its last log lines:\n{log_tail}")


class _HasProcess(Protocol):
    process: subprocess.Popen | None


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
    ) -> subprocess.Popen:
        """Start ``command`` in a session of its own (so ``_stop`` can reach all of it), its output
        echoed under ``name`` and its last lines kept in ``log_tail``."""
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(name, process, log_tail), daemon=True).start()
        return process

    def _pump(self, name: str, process: subprocess.Popen, log_tail: collections.deque) -> None:
        assert process.stdout is not None
        for line in process.stdout:
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
        name_of: Callable[[_Child], str],
        tail_of: Callable[[_Child], str],
        is_ready: Callable[[_Child], bool],
        timeout: float,
        waiting_for: str,
    ) -> None:
        """Until ``is_ready`` holds for every child; ``NodeFailedError`` (with the child's last log
        lines) for the first that exits before, or that is still not ``waiting_for`` at the
        deadline."""
        deadline = time.monotonic() + timeout
        pending = list(children)
        while pending:
            for child in list(pending):
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    time.sleep(0.2)  # let the pump thread read the last lines
                    raise NodeFailedError(
                        name_of(child),
                        f"exited before it was ready (exit code {code})",
                        tail_of(child),
                    )
                if is_ready(child):
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                raise NodeFailedError(
                    name_of(pending[0]),
                    f"not {waiting_for} after {timeout:.0f} s",
                    tail_of(pending[0]),
                )
            if pending:
                time.sleep(0.1)

    def _stop(self, processes: Iterable[subprocess.Popen | None], timeout: float) -> None:
        """SIGTERM each process (its entry point stops its front end gracefully); SIGKILL every
        process of its tree and session still running after ``timeout``."""
        self._stopping = True
        running = [process for process in processes if process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            leftovers = descendants(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
            for pid in [process.pid, *leftovers, *descendants(process.pid)]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc; empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
