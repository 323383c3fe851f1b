"""Which processes serve a port (they hold a listening TCP socket), read from ``/proc``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable


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
