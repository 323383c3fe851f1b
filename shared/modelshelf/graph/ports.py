"""Free TCP ports for servers started on this machine, that nothing else takes before they bind.

The usual trick -- bind port 0, read the port, close, pass it to the server -- hands out a port
of the kernel's ephemeral range and releases it for the seconds a server takes to start. In that
window any outgoing connection on the machine can be given it as its local port, and another
process doing the same trick can be handed it too: the server then fails with "address already
in use". Ports here come from just below the ephemeral range instead (outgoing connections never
get those), in turn from a cursor that every process picking ports this way shares through a
locked file (so two of them started together do not pick the same ones), and only if nothing
holds them now. One process never gets the same port twice.
"""

from __future__ import annotations

import contextlib
import errno
import random
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from modelshelf.errors import ModelshelfError

try:
    import fcntl
except ImportError:  # Windows: the cursor is per process
    fcntl = None  # type: ignore[assignment]

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Linux's default, used where the file is missing (other systems' ranges start higher).
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
#: How many ports below (or above) the ephemeral range are used.
SPAN = 10000
CURSOR_FILE = Path(tempfile.gettempdir()) / "modelshelf-ports.cursor"


class NoFreePortError(ModelshelfError):
    """Every port of the range is in use or was already handed out by this process."""

    def __init__(self, ports: range, wanted: int, found: int) -> None:
        self.ports = ports
        self.wanted = wanted
        self.found = found
        super().__init__(
            f"needed {wanted} free TCP ports in {ports.start}-{ports.stop - 1}, found {found}"
        )


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (first, last)."""
    try:
        first, last = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return first, last


def port_range(ephemeral: tuple[int, int] | None = None) -> range:
    """Up to ``SPAN`` ports next to the ephemeral range, on the side with more room."""
    first, last = ephemeral or ephemeral_range()
    below = range(max(1024, first - SPAN), first)
    above = range(last + 1, min(65536, last + 1 + SPAN))
    return below if len(below) >= len(above) else above


PORTS = port_range()
_lock = threading.Lock()
_handed_out: set[int] = set()
_local_cursor = random.randrange(len(PORTS))


def free_ports(count: int) -> list[int]:
    """``count`` different ports that nothing is bound to now and no process picking ports
    here was given recently (the shared cursor goes round the whole range first)."""
    found: list[int] = []
    with _lock, _shared_cursor() as cursor:
        position = cursor[0]
        for _ in range(len(PORTS)):
            position = (position + 1) % len(PORTS)
            port = PORTS[position]
            if port in _handed_out or not _bindable(port):
                continue
            found.append(port)
            _handed_out.add(port)
            if len(found) == count:
                break
        cursor[0] = position
    if len(found) < count:
        raise NoFreePortError(PORTS, count, len(found))
    return found


def free_port() -> int:
    """One port, as ``free_ports(1)``."""
    return free_ports(1)[0]


@contextlib.contextmanager
def _shared_cursor() -> Iterator[list[int]]:
    """The cursor (a one-item list, to be updated in place) read from and written back to
    ``CURSOR_FILE`` under an exclusive lock; a per-process cursor if the file can't be used."""
    global _local_cursor
    handle = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            handle = open(CURSOR_FILE, "a+")  # noqa: SIM115 - closed below
    if handle is None:
        cursor = [_local_cursor]
        yield cursor
        _local_cursor = cursor[0]
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        handle.seek(0)
        text = handle.read().strip()
        start = int(text) % len(PORTS) if text.isdigit() else random.randrange(len(PORTS))
        cursor = [start]
        yield cursor
        handle.seek(0)
        handle.truncate()
        handle.write(str(cursor[0]))
        handle.flush()
        _local_cursor = cursor[0]


def _bindable(port: int) -> bool:
    """Whether a server could bind ``port`` on every address now: IPv4 and, where there is
    IPv6, IPv6 too (gRPC binds ``[::]``). No ``SO_REUSEADDR``, so a port with connections
    still in TIME_WAIT counts as taken."""
    families = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    for family, address in families:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no such address family here
        with sock:
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port))
            except OSError as error:
                if family == socket.AF_INET6 and error.errno == errno.EADDRNOTAVAIL:
                    continue  # IPv6 compiled in but not configured
                return False
    return True
