"""Misbehaving servers for the storage tests, on loopback ports from ``modelshelf.graph.ports``.

* ``LyingHTTPServer``: serves files, but per path can announce a ``Content-Length`` and then send
  less and close, send a wrong ``Content-MD5``, trickle one byte every few seconds, or accept and
  never answer. Counts requests per path; can demand a user and a query signature.
* ``CuttingProxy``: a TCP proxy (in front of moto_server) that cuts, corrupts or trickles the
  server's answers once a connection has carried a given number of bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from modelshelf.graph.ports import free_port


@dataclass
class Route:
    """What ``LyingHTTPServer`` answers on one path."""

    body: bytes
    #: "ok", "truncate" (send ``cut_at`` bytes of the announced length, close), "bad-md5",
    #: "trickle" (one byte every ``interval`` s), "hang" (headers never come), "redirect"
    #: (302 to ``location``).
    mode: str = "ok"
    location: str = ""
    cut_at: int = 0
    interval: float = 1.0
    #: The first ``faults`` requests misbehave; later ones are answered properly (-1: all).
    faults: int = -1


@dataclass
class LyingHTTPServer:
    url: str
    routes: dict[str, Route]
    requests: Counter = field(default_factory=Counter)
    #: Each request's Authorization header (None when absent), in order.
    authorizations: list = field(default_factory=list)
    #: If set, requests need this Basic password and ``?X-Amz-Signature=`` this value.
    password: str | None = None
    #: Set when the test ends: trickling and hanging handlers stop.
    closing: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    state: LyingHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet: the test reads ``requests``
        pass

    def do_GET(self) -> None:
        state = self.state
        parts = urlsplit(self.path)
        state.requests[parts.path] += 1
        state.authorizations.append(self.headers.get("Authorization"))
        if state.password is not None:
            expected = "Basic " + base64.b64encode(f"reader:{state.password}".encode()).decode()
            signature = parse_qs(parts.query).get("X-Amz-Signature", [""])[0]
            if self.headers.get("Authorization") != expected or signature != state.password:
                self._answer(403, b"forbidden")
                return
        route = state.routes.get(parts.path)
        if route is None:
            self._answer(404, b"not found")
            return
        faulty = route.faults < 0 or state.requests[parts.path] <= route.faults
        mode = route.mode if faulty else "ok"
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "hang":
            state.closing.wait(60)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(route.body)))
        self.send_header("ETag", '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"')
        md5 = hashlib.md5(route.body).digest()
        if mode == "bad-md5":
            md5 = hashlib.md5(route.body + b"x").digest()
        self.send_header("Content-MD5", base64.b64encode(md5).decode())
        if mode in ("truncate", "trickle"):
            self.send_header("Connection", "close")
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(route.body[: route.cut_at])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "trickle":
            with contextlib.suppress(ConnectionError):  # the client gave up: that is the point
                for byte in route.body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if state.closing.wait(route.interval):
                        break
            self.close_connection = True
            return
        self.wfile.write(route.body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def lying_http_server(
    routes: dict[str, Route], password: str | None = None
) -> Iterator[LyingHTTPServer]:
    port = free_port()
    state = LyingHTTPServer(f"http://127.0.0.1:{port}", routes, password=password)
    handler = type("Handler", (_Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.closing.set()
        server.shutdown()
        server.server_close()


@dataclass
class CuttingProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream``; once a connection's answers passed
    ``after`` bytes, does ``mode`` to it: "cut" (close both ends), "corrupt" (flip one byte,
    then pass on) or "trickle" (one byte every ``interval`` s). Only the first ``faults``
    connections that get that far are harmed (-1: all)."""

    port: int
    upstream: tuple[str, int]
    mode: str = "cut"
    after: int = 64 * 1024
    interval: float = 1.0
    faults: int = -1
    harmed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _harm(self) -> bool:
        with self._lock:
            if self.faults >= 0 and self.harmed >= self.faults:
                return False
            self.harmed += 1
            return True

    def serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):  # either side gave up: that ends the connection
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        sent = 0
        harming = False
        with client, upstream:
            while not self.stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        upstream.sendall(data)
                        continue
                    if not harming and sent + len(data) > self.after and self._harm():
                        harming = True
                        keep = max(self.after - sent, 0)
                        client.sendall(data[:keep])
                        sent += keep
                        data = data[keep:]
                        if self.mode == "cut":
                            return
                        if self.mode == "corrupt":
                            data = bytes([data[0] ^ 0xFF]) + data[1:]
                    if harming and self.mode == "trickle":
                        for byte in data:
                            client.sendall(bytes([byte]))
                            if self.stop.wait(self.interval):
                                return
                        continue
                    client.sendall(data)
                    sent += len(data)


@contextlib.contextmanager
def cutting_proxy(upstream: str, **settings: object) -> Iterator[CuttingProxy]:
    """A ``CuttingProxy`` in front of ``upstream`` (``http://host:port``)."""
    parts = urlsplit(upstream)
    proxy = CuttingProxy(free_port(), (parts.hostname or "127.0.0.1", parts.port or 80))
    for name, value in settings.items():
        setattr(proxy, name, value)
    listener = socket.create_server(("127.0.0.1", proxy.port))
    thread = threading.Thread(target=proxy.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.stop.set()
        thread.join(5)
        listener.close()


def wait_until(condition: object, timeout: float = 30) -> None:
    """Poll ``condition()`` until true (for a request a server counts)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@dataclass
class SilentEndpoint:
    """Accepts connections and never answers; counts them."""

    port: int
    connections: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def silent_endpoint() -> Iterator[SilentEndpoint]:
    state = SilentEndpoint(free_port())
    listener = socket.create_server(("127.0.0.1", state.port))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return
            state.connections += 1

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for connection in accepted:
            connection.close()
