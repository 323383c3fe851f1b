"""Process groups and listening sockets, read from ``/proc``; signals to sets of processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterable

_PR_SET_CHILD_SUBREAPER = 36


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def serving_processes(pids: Iterable[int]) -> set[int]:
    """The processes among ``pids`` that hold a listening TCP socket."""
    listening = _listening_socket_inodes()
    serving = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in listening:
                    serving.add(pid)
                    break
    return serving


def _listening_socket_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Signal each of ``pids`` that still exists and is ours to signal."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def become_subreaper() -> None:
    """Orphans of the front end become our children, so we can reap them (as PID 1 does)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
