"""modelshelf's HTTP/1.1 server: the REST front end of ``modelshelf serve`` on uvloop.

It replaces uvicorn on the hot path (``MODELSHELF_HTTP_SERVER=uvicorn`` keeps uvicorn): one
event loop, the listening sockets the parent bound (the REST port, and the metrics port when
the worker serves it), and per connection an ``HttpConnection`` that calls the app's direct
entry inline. On SIGTERM or SIGINT it stops accepting, closes idle keep-alive connections, lets
the requests under way finish for up to ``grace`` seconds, then closes what is left and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Sequence

from modelshelf.number_settings import env_number
from modelshelf.serve.http1.connection import DirectApp, HttpConnection
from modelshelf.serve.http1.forwarded import TrustedProxies

logger = logging.getLogger("modelshelf.serve.http1")

#: Env var choosing the REST port's server: ``modelshelf`` (ours, the default) or ``uvicorn``.
SERVER_ENV = "MODELSHELF_HTTP_SERVER"
SERVERS = ("modelshelf", "uvicorn")
STALL_ENV = "MODELSHELF_CLIENT_STALL_SECONDS"
DEFAULT_STALL_SECONDS = 30.0
MIN_SPEED_ENV = "MODELSHELF_CLIENT_MIN_SPEED"
#: Bytes a second a request body must average, beyond its first stall seconds' grace (Apache's
#: ``mod_reqtimeout`` asks 500; ``MODELSHELF_DOWNLOAD_MIN_SPEED`` asks 1024 of a store).
DEFAULT_MIN_SPEED = 1024.0


def http_server_kind() -> str:
    """Which server serves REST (``MODELSHELF_HTTP_SERVER``); an unknown name is an error."""
    from modelshelf.errors import ConfigurationError

    kind = os.environ.get(SERVER_ENV, "").strip().lower() or SERVERS[0]
    if kind not in SERVERS:
        raise ConfigurationError(
            SERVER_ENV,
            kind,
            "modelshelf (the default: modelshelf's own HTTP/1.1 server) or uvicorn",
            source="environment variable",
        )
    return kind


def client_stall_seconds() -> float:
    """``MODELSHELF_CLIENT_STALL_SECONDS``: how long a request body may stop coming, a request
    head take from its first byte to its last, or a client leave its backed-up answers unread,
    before the server gives up on it. Not the keep-alive seconds (2 by default): a client on a
    lossy link can pause that long mid-body (TCP's retransmission backoff alone reaches 3 s),
    and nginx gives such clients 60 s."""
    return env_number(STALL_ENV, DEFAULT_STALL_SECONDS, "a number of seconds > 0, e.g. 30")


def client_min_speed() -> float:
    """``MODELSHELF_CLIENT_MIN_SPEED``: the bytes a second a request body must average once
    its first ``MODELSHELF_CLIENT_STALL_SECONDS`` are over (0: no minimum, only the stall
    rule). Without it a client sending a byte just before each stall timeout would hold its
    connection, and the body read so far, for good (slowloris on the body)."""
    return env_number(
        MIN_SPEED_ENV, DEFAULT_MIN_SPEED, "bytes a second >= 0 (0: no minimum)", zero=True
    )


class HttpServer:
    """Serves ``app`` on listening sockets; keeps its connections for the idle timeout and
    the graceful stop."""

    def __init__(self, app: DirectApp, keepalive_seconds: float, access_log: bool) -> None:
        self.app = app
        self.keepalive_seconds = keepalive_seconds
        self.stall_seconds = client_stall_seconds()
        self.min_speed = client_min_speed()
        self.access_log = access_log
        self.trusted_proxies = TrustedProxies.from_env()  # FORWARDED_ALLOW_IPS, as uvicorn
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start()
        self._servers: list[asyncio.AbstractServer] = []
        self._sweep: asyncio.TimerHandle | None = None
        self._all_closed: asyncio.Event | None = None

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        self.loop = asyncio.get_running_loop()
        for sock in sockets:
            server = await self.loop.create_server(
                lambda: HttpConnection(self), sock=sock, backlog=2048
            )
            self._servers.append(server)

    async def stop(self, grace: float) -> None:
        """Stop accepting, close idle connections, give the rest ``grace`` seconds to answer
        what they are serving, then close them."""
        self.stopping = True
        for server in self._servers:
            server.close()
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            connection.shut_down()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for connection in list(self.connections):
            connection.transport.close()
        if self._sweep is not None:
            self._sweep.cancel()

    def connection_made(self, connection: HttpConnection) -> None:
        self.connections.add(connection)
        if self.stopping:
            connection.shut_down()
        elif self._sweep is None:
            self._schedule_sweep()

    def connection_lost(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        if self._all_closed is not None and not self.connections:
            self._all_closed.set()

    def _sweep_seconds(self) -> float:
        return min(max(self.keepalive_seconds / 4, 0.05), 1.0)

    def _schedule_sweep(self) -> None:
        due = self.loop.time() + self._sweep_seconds()
        self._sweep = self.loop.call_at(due, self._enforce_timeouts, due)

    def _enforce_timeouts(self, due: float) -> None:
        """The keep-alive timeout (idle connections, requests whose bytes stop coming or come too
        slowly, answers left unread), for every connection at once: one timer for the
        server, not one armed and cancelled per request. A sweep late by more than its
        interval judges no one: the loop was held (the app answering inline for seconds),
        so what clients sent meanwhile waits unread in the kernel -- the server's delay,
        not theirs; the next sweep comes after it is read."""
        self._sweep = None
        now = self.loop.time()
        if now - due < self._sweep_seconds():
            since, stalled_since = now - self.keepalive_seconds, now - self.stall_seconds
            for connection in list(self.connections):
                connection.enforce_timeouts(since, stalled_since)
        if self.connections and not self.stopping:
            self._schedule_sweep()


def serve(
    app: DirectApp,
    sockets: Sequence[socket.socket],
    keepalive_seconds: float,
    access_log: bool,
    grace: float,
    name: str = "REST worker",
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (``HttpServer.stop``) and return."""
    import uvloop

    server = HttpServer(app, keepalive_seconds, access_log)

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        loop.add_signal_handler(signal.SIGINT, stopped.set)
        await server.start(sockets)
        ports = ", ".join(str(sock.getsockname()[1]) for sock in sockets)
        logger.info("%s %d serving on port(s) %s (modelshelf http1)", name, os.getpid(), ports)
        await stopped.wait()
        await server.stop(grace)

    uvloop.run(run())
