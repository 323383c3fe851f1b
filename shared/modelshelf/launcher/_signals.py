"""SIGTERM, SIGINT and SIGCHLD delivered through a pipe, so the supervisor sleeps in ``select``
until something happens (no polling while the front end runs)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def signals_to_pipe() -> Iterator[int]:
    """SIGTERM, SIGINT and SIGCHLD wake the supervisor through a pipe (no polling while
    running); the previous handlers come back afterwards."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    watched = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
    previous = {signum: signal.signal(signum, _noop) for signum in watched}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield read_end
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(read_end)
        os.close(write_end)


def _noop(signum: int, frame: object) -> None:
    """The wakeup pipe carries the signal; the handler only has to exist."""


def wait_for_signals(read_end: int, timeout: float | None) -> set[int]:
    """The signals that arrive within ``timeout`` seconds (``None``: until one does)."""
    with contextlib.suppress(InterruptedError):
        select.select([read_end], [], [], timeout)
    return drain(read_end)


def drain(read_end: int) -> set[int]:
    """The signals already in the pipe; no waiting."""
    signals: set[int] = set()
    while True:
        try:
            data = os.read(read_end, 512)
        except BlockingIOError:
            return signals
        if not data:
            return signals
        signals.update(data)
