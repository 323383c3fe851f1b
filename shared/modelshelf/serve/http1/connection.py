"""One HTTP/1.1 connection: httptools parses, the app answers inline, answers leave in order.

uvicorn runs every request as an asyncio Task through ASGI's ``receive``/``send`` messages: about
85 µs of CPU per single-row request (measured), four times our own code's. Here the parser's
``on_message_complete`` hands the whole request to the app's direct entry (``answer(scope,
body)``) and writes its ``(status, headers, payload)`` at once, in one ``write``. Only an answer
that must wait (a prediction queued to join a batch) is an awaitable: the connection keeps a
queue so that pipelined requests are still answered in the order they came.

What the connection enforces, as a server must: keep-alive (HTTP/1.1's default; HTTP/1.0 only with
``Connection: keep-alive``), ``Connection: close``, ``Expect: 100-continue``, a body over the app's
``max_body`` refused before it is read whole (the app's answer, then close), a transfer coding
other than ``chunked`` alone (501, RFC 9112 6.1), header size and count limits (431), a request
whose head or body stops coming for the keep-alive seconds (closed; a body: 408, then close), a
slow client (a head not whole within the stall seconds, a body under a minimum speed: 408, then
close), malformed requests (400, then close), a failure of the server's own code (500 as the app's
``INTERNAL_ERROR``, logged at ERROR, then close), ``X-Forwarded-For``/``-Proto`` from a trusted
proxy (``forwarded``), and backpressure: a client that does not read its answers is not read
either, and the requests already read when it stops (up to one read, ~256 KB of small pipelined
ones) are not answered until it reads again: their bodies are in memory already, their answers (a
metrics page, a large prediction) would not be; one that reads none of its answers for the
stall seconds is reset, its unsent answers dropped, whether the connection was still open or
closing (an error, ``Connection: close``, the idle timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http
import json
import logging
import socket
import struct
import termios
import urllib.parse
from collections import deque
from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import httptools

from modelshelf.redaction import redact_parameters
from modelshelf.serve.http1 import forwarded

if TYPE_CHECKING:
    from modelshelf.serve.http1.server import HttpServer

logger = logging.getLogger("modelshelf.serve.http1")
#: uvicorn's access-log line, under a logger of ours.
access_logger = logging.getLogger("modelshelf.serve.access")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]

#: The request line and headers together may hold this many bytes; more is answered 431 (414
#: when the request target alone is over).
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 200
#: Bytes fed to the parser while a request's head (or a chunked body's chunk header or trailer
#: section) is incomplete, beyond which it is answered 431 even before a header line ends
#: (httptools holds an unfinished line in memory). Loose by one read (the chunk a head starts in
#: may hold earlier pipelined requests).
MAX_UNFINISHED_HEAD_BYTES = MAX_HEADER_BYTES + 256 * 1024
#: Answers one connection may owe (pipelined behind one that waits to join a batch) before
#: it stops reading requests.
MAX_OWED = 16
#: Answer bytes the transport may hold unsent before the connection stops reading requests.
WRITE_BUFFER_BYTES = 256 * 1024
#: How long a connection ended by an error answer still reads (and drops) what the client sends.
LINGER_SECONDS = 2.0
#: ``SO_LINGER`` on, 0 seconds: closing the socket resets the connection, unsent bytes dropped.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)
#: The buffer ``ioctl(TIOCOUTQ)`` fills: a C int.
QUEUE_SIZE = bytes(4)
#: Above this, the payload is written apart from the head instead of being copied into it.
COPY_LIMIT = 64 * 1024


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The server's own refusals of a request's head, by status: what it answers.
HEAD_REFUSALS = {
    414: f"The request target is over {MAX_HEADER_BYTES:,} bytes; send large inputs as a body.",
    431: "Request header fields too large.",
}
#: Request headers ``on_header`` acts on: one set lookup per header, whatever their number.
WATCHED_HEADERS = frozenset(
    (b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto")
)
METHODS = {
    name.encode(): name for name in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")
}
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
INTERNAL_ERROR: Reply = (
    500,
    [(b"content-type", b"application/json")],
    b'{"error": "internal server error (see the server log)"}\n',
)


def content_length(value: bytes) -> int | None:
    """A ``Content-Length`` field's value as a number, ``None`` when it is not one: the one
    reading of it, for this server and the ASGI app on uvicorn (``modelshelf.serve.rest``)."""
    return int(value) if value.isdigit() else None


def plain_reply(status: int, message: str) -> bytes:
    """A whole text/plain answer that ends the connection (the server's own errors)."""
    return closing_reply(status, b"text/plain; charset=utf-8", message.encode())


def closing_reply(status: int, content_type: bytes, body: bytes) -> bytes:
    """A whole answer that ends the connection."""
    return (
        STATUS_LINES[status]
        + b"content-type: %s\r\ncontent-length: %d\r\n" % (content_type, len(body))
        + b"connection: close\r\n\r\n"
        + body
    )


#: ``INTERNAL_ERROR`` as a whole answer that ends the connection: the server's own code failed.
INTERNAL_ERROR_CLOSE = closing_reply(500, INTERNAL_ERROR[1][0][1], INTERNAL_ERROR[2])


class DirectApp(Protocol):
    """What the server calls: ``answer(scope, body)`` gives the reply, or an awaitable of it;
    ``body`` is ``None`` for a body over ``max_body`` bytes, refused unread (the connection is
    closed after the answer)."""

    max_body: int

    def answer(self, scope: dict, body: bytes | None) -> Reply | Awaitable[Reply]: ...


class _RefusedError(Exception):
    """Raised in a parser callback to stop parsing: the request is answered without its body."""


class _InvalidRequestError(Exception):
    """Raised in a parser callback for a request httptools parsed but the server cannot take
    (a path that is not ASCII): answered 400 as httptools' own parse errors are."""


class _Owed:
    """An answer owed, in request order: a reply once known, or raw bytes (``scope`` is None);
    ``future``: the reply to come (a prediction queued to join a batch), cancelled if the
    connection ends first, so that the batch leaves it out."""

    __slots__ = ("close", "future", "keep_alive", "reply", "scope")

    def __init__(self, scope: dict | None, keep_alive: bool, reply: Any = None) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.reply = reply
        self.close = False
        self.future: asyncio.Future | None = None


class _Deferred(_Owed):
    """A request read while the client was not reading its answers: the app runs for it once
    the client reads again (``waiting`` until then)."""

    __slots__ = ("body", "waiting")

    def __init__(self, scope: dict, keep_alive: bool, body: bytes | None) -> None:
        super().__init__(scope, keep_alive)
        self.body = body
        self.waiting = True


class HttpConnection(asyncio.Protocol):
    """One client connection (``HttpServer`` makes one per accept)."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.max_body = server.app.max_body
        self.loop = server.loop
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.local: tuple[str, int] | None = None
        self.peer: tuple[str, int] | None = None
        self.owed: deque[_Owed] = deque()
        self.deferred = 0  # ``_Deferred`` entries of ``owed`` still waiting for the app
        self.closing = False  # read no more requests; close once every owed answer is written
        self.draining = False  # the server stops: close after the request under way is answered
        self.linger = False  # an error answer ends the connection: ``_linger`` before closing
        self.closed = False
        self.write_paused = False
        self.unread = 0  # answer bytes the client had not taken when last looked at
        self.reading_paused = False
        self.last_active = 0.0  # loop time of the last request bytes or answer (idle timeout)
        # The request being parsed
        self.in_request = False
        self._in_head = False
        self._head_fed = 0
        #: Loop time the request's head began, then (once the head is whole) its body: what
        #: the deadlines of ``enforce_timeouts`` count from.
        self._started = 0.0
        self._url = b""
        self._headers: Headers = []
        self._head_bytes = 0
        self._declared: int | None = None
        self._expect_continue = False
        self._forwarded = False  # an X-Forwarded-* header came: ``_apply_forwarded``
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._scope: dict | None = None
        self._keep_alive = True
        #: The status and message the server answers itself (414, 431, 501), set before
        #: ``_RefusedError``.
        self._refusal: tuple[int, str] | None = None
        #: The head of an upgrade request that has a body, without its upgrade: httptools skips
        #: such a body (``_replay_without_upgrade``).
        self._replay: bytes | None = None

    # -- asyncio callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.local = _address(transport.get_extra_info("sockname"))
        self.peer = _address(transport.get_extra_info("peername"))
        max_body_at = getattr(self.app, "max_body_at", None)
        if max_body_at is not None:  # one app on two ports, two limits (``MetricsPortRouter``)
            self.max_body = max_body_at(self.local)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
        self.last_active = self.loop.time()
        self.server.connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._forget_owed()
        self.server.connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
            if self._in_head:
                self._head_fed += len(data)
                if self._head_fed > MAX_UNFINISHED_HEAD_BYTES:
                    self._fail(plain_reply(431, HEAD_REFUSALS[431]))
        except httptools.HttpParserUpgrade as upgrade:
            if self._replay is not None:  # its body is still to read: see on_headers_complete
                self._replay_without_upgrade(data[upgrade.args[0] :])
            else:
                self._end_after_owed()  # an upgrade request, answered: nothing more is read
        except httptools.HttpParserError as error:
            cause = error.__context__  # what a parser callback raised, if one did
            if isinstance(cause, _RefusedError):
                if self._refusal:
                    self._fail(plain_reply(*self._refusal))
                return
            if cause is None or isinstance(
                cause, (httptools.HttpParserError, _InvalidRequestError)
            ):
                logger.debug("invalid HTTP request from %s: %r", self.peer, cause or error)
                self._fail(plain_reply(400, "Invalid HTTP request received."))
                return
            # The server's own code failed (answering, or reading a request it could parse):
            # not the client's fault, and it must be seen.
            logger.error("serving a request from %s failed", self.peer, exc_info=cause)
            self._fail(INTERNAL_ERROR_CLOSE)

    def eof_received(self) -> bool | None:
        # The client sent all it will: answer what is owed, then close.
        if not self.owed:
            return None  # closes the transport
        self._end_after_owed()
        return True

    def pause_writing(self) -> None:
        """The client is not reading its answers: read no more of its requests until it does."""
        self.write_paused = True
        self.unread = self._unread_bytes()
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_active = self.loop.time()
        if self.deferred:
            self._write_owed()
        self._resume_reading_if_due()

    # -- parser callbacks

    def on_message_begin(self) -> None:
        self.in_request = self._in_head = True
        self._started = self.last_active  # the time its first bytes were read
        self._url = b""
        self._headers = []
        self._head_bytes = self._head_fed = self._body_size = 0
        self._declared = None
        self._scope = None
        self._expect_continue = False
        self._chunks = []

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEADER_BYTES:
            self._refuse_headers(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEADER_BYTES:
            self._refuse_headers()
        if self._scope is not None:
            # A trailer field (after a chunked body): dropped, as RFC 9110 6.5.1 allows; merged
            # into the headers it could replace the content-type the request was judged by.
            return
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace; RFC 9110 drops it
        self._headers.append((name, value))
        if name in WATCHED_HEADERS:
            if name == b"content-length":
                self._declared = content_length(value)
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    self._expect_continue = True
            else:
                self._forwarded = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._started = self.last_active
        if len(self._headers) > MAX_HEADERS:
            self._refuse_headers()
        parser = self.parser
        method = parser.get_method()
        url = self._url
        # A fragment is not part of a request-target, but llhttp lets it through: parse_url
        # drops it (as uvicorn did), the path routed must not keep it.
        try:
            if url[:1] == b"/" and b"?" not in url and b"%" not in url and b"#" not in url:
                raw_path, query, path = url, b"", url.decode("ascii")
            else:
                parsed = httptools.parse_url(url)
                raw_path, query = parsed.path, parsed.query or b""
                path = raw_path.decode("ascii")
                if "%" in path:
                    path = urllib.parse.unquote(path)
        except UnicodeDecodeError as error:  # llhttp lets bytes over 0x7f through
            raise _InvalidRequestError(
                f"a request target that is not ASCII: {url[:80]!r}"
            ) from error
        version = parser.get_http_version()
        # An upgrade (h2c, websocket) is not taken: answered as HTTP/1.1, then the connection
        # ends (what the client sends after it is not HTTP/1.1), and the answer says so.
        upgrade = parser.should_upgrade()
        self._keep_alive = parser.should_keep_alive() and not upgrade and not self.server.stopping
        if upgrade and self._has_body():
            # httptools tells llhttp to skip the body of an upgrade request (``curl --http2 -d``
            # sends one): the request is read again without its upgrade, body and all.
            self._replay = self._head_without_upgrade(method, version)
        self._scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": version,
            "server": self.local,
            "client": self.peer,
            "scheme": "http",
            "root_path": "",
            "method": METHODS.get(method) or method.decode("ascii"),
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
        }
        if self._forwarded:
            self._apply_forwarded(self._scope)
        if self._declared is not None and self._declared > self.max_body:
            self._refuse_body()
        if self._expect_continue and version != "1.0":  # HTTP/1.0 has no 1xx (RFC 9110 10.1.1)
            if self._declared is None:
                self._check_transfer_coding()  # before the client is told to send the body
            if self.owed:
                self.owed.append(_Owed(None, True, CONTINUE))
            else:
                self.transport.write(CONTINUE)

    def on_chunk_header(self) -> None:
        if not self._chunks:  # the body's first chunk: its transfer codings are judged, once
            self._check_transfer_coding()
        # A chunk's data, or after the last chunk its trailer fields: until data comes, bytes
        # fed count as for an unfinished head (httptools holds a trailer line in memory).
        self._in_head = True
        self._head_fed = 0

    def on_chunk_complete(self) -> None:
        self._in_head = False

    def on_body(self, body: bytes) -> None:
        self._in_head = False
        self._body_size += len(body)
        if self._body_size > self.max_body:
            self._refuse_body()
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.in_request = False
        if self.closing or self._replay is not None:  # a replay answers it, with its body
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._dispatch(self._scope, body, self._keep_alive)

    # -- answers

    def _dispatch(self, scope: Any, body: bytes | None, keep_alive: bool) -> None:
        if self.write_paused:
            # The client does not read: its answer is built once it does (``_run_deferred``).
            self.owed.append(_Deferred(scope, keep_alive, body))
            self.deferred += 1
            return
        try:
            reply = self.app.answer(scope, body)
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            reply = INTERNAL_ERROR
        if type(reply) is tuple:
            if not self.owed:
                self._send(scope, reply, keep_alive)
                return
            self.owed.append(_Owed(scope, keep_alive, reply))
            self._write_owed()
        else:
            owed = _Owed(scope, keep_alive)
            self.owed.append(owed)
            future = owed.future = asyncio.ensure_future(reply)
            future.add_done_callback(partial(self._settled, owed))
        if len(self.owed) >= MAX_OWED:  # answered now or not, they wait behind one that waits
            self._pause_reading()

    def _settled(self, owed: _Owed, future: asyncio.Future) -> None:
        if self.closed:
            return
        scope = owed.scope
        try:
            owed.reply = future.result()
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            owed.reply = INTERNAL_ERROR
        except asyncio.CancelledError:
            # Not an answer the app gave: 500, and the connection ends (as for the server's
            # own failures) rather than wait for an answer that will not come.
            logger.error("%s %s failed: its answer was cancelled", scope["method"], scope["path"])
            owed.reply = INTERNAL_ERROR
            owed.keep_alive = False
            self.linger = True  # what the client still sends must not reset the answer
        self._write_owed()

    def _write_owed(self) -> None:
        self._write_known()
        if self.deferred and not self.write_paused and not self.closed:
            self._run_deferred()
        if self.closed:
            return
        if not self.owed:
            if self.closing:
                self._close()
            else:
                self._resume_reading_if_due()

    def _write_known(self) -> None:
        """Write the answers owed from the first on, as long as each is known."""
        owed = self.owed
        while owed and owed[0].reply is not None:
            first = owed.popleft()
            if first.scope is None:  # raw bytes: 100 Continue, or the server's own error
                self.transport.write(first.reply)
                if first.close:
                    self._close()
                    return
                # A 100 Continue that waited behind earlier answers: the body could not come
                # before it, so its minimum speed counts from now (``_late_request``).
                self._started = self.loop.time()
            else:
                self._send(first.scope, first.reply, first.keep_alive)
            if self.closed:
                return

    def _run_deferred(self) -> None:
        """The client reads again: run the app for the requests deferred while it did not, in
        order, as for requests just read (only among the first ``MAX_OWED`` answers owed),
        writing each answer known, until the client's answers back up again."""
        owed = self.owed
        while self.deferred and not self.write_paused and not self.closed:
            for position, entry in enumerate(owed):
                if position == MAX_OWED:
                    return
                if type(entry) is _Deferred and entry.waiting:
                    break
            else:
                return
            entry.waiting = False
            self.deferred -= 1
            scope = entry.scope
            body, entry.body = entry.body, None
            future = None
            try:
                reply = self.app.answer(scope, body)
                if type(reply) is not tuple:
                    future = asyncio.ensure_future(reply)
            except Exception:
                logger.exception("%s %s failed", scope["method"], scope["path"])
                reply = INTERNAL_ERROR
            if future is not None:
                entry.future = future
                future.add_done_callback(partial(self._settled, entry))
            else:
                entry.reply = reply
                if position == 0:
                    self._write_known()

    def _send(self, scope: dict, reply: Reply, keep_alive: bool) -> None:
        # Stopping: the last answer owed ends the connection.
        close = not keep_alive or (self.draining and not self.owed and not self.in_request)
        try:
            status, headers, payload = reply
            fields = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
            if b"connection:" in fields and _asks_close(headers):
                close, ending = True, b"\r\n"  # the app's own ``connection: close`` says it
            elif close:
                ending = b"connection: close\r\n\r\n"
            elif scope["http_version"] == "1.0":
                ending = b"connection: keep-alive\r\n\r\n"
            else:
                ending = b"\r\n"
            head = (
                (STATUS_LINES.get(status) or _status_line(status))
                + fields
                + b"content-length: %d\r\n" % len(payload)
                + ending
            )
        except Exception:
            # A reply the server cannot write (the app's bug, or ours): 500 in its place, as
            # the app's own failures are, then close (what the app meant is unknown).
            logger.exception("%s %s: the reply cannot be written", scope["method"], scope["path"])
            self.linger = True
            self.transport.write(INTERNAL_ERROR_CLOSE)
            self._close()
            return
        if scope["method"] == "HEAD":
            self.transport.write(head)
        elif len(payload) > COPY_LIMIT:
            self.transport.writelines((head, payload))
        else:
            self.transport.write(head + payload)
        if self.server.access_log:
            _log_access(scope, status)
        if close:
            self._close()
        else:
            self.last_active = self.loop.time()

    def _apply_forwarded(self, scope: dict) -> None:
        """``client`` and ``scheme`` from ``X-Forwarded-For`` / ``-Proto`` when the peer is a
        trusted proxy (``FORWARDED_ALLOW_IPS``), as uvicorn's ``proxy_headers`` set them."""
        self._forwarded = False
        proxies = self.server.trusted_proxies
        if self.peer is None or not proxies.trusts(self.peer[0]):
            return
        proto = None
        chain = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-for":
                chain.append(value)
        if proto is not None:
            scheme = proto.decode("latin-1").strip()
            if scheme in forwarded.SCHEMES:
                scope["scheme"] = scheme
        if chain:
            client = proxies.client(b", ".join(chain).decode("latin-1"))
            if client[0]:  # an empty X-Forwarded-For names no one
                scope["client"] = client

    # -- an upgrade request with a body

    def _has_body(self) -> bool:
        return bool(self._declared) or any(
            name == b"transfer-encoding" for name, _ in self._headers
        )

    def _head_without_upgrade(self, method: bytes, version: str) -> bytes:
        """The request's head as a plain HTTP/1.1 request that ends the connection, as other
        declined upgrades do (``Expect`` is left out: its 100 Continue was sent)."""
        dropped = (b"upgrade", b"connection", b"http2-settings", b"expect")
        lines = [b"%s %s HTTP/%s" % (method, self._url, version.encode("ascii"))]
        lines += [name + b": " + value for name, value in self._headers if name not in dropped]
        return b"\r\n".join([*lines, b"connection: close", b"", b""])

    def _replay_without_upgrade(self, body: bytes) -> None:
        """Read the upgrade request again, from its head without the upgrade and the bytes
        after it, with a new parser (the old one stopped at the upgrade)."""
        head, self._replay = self._replay, None
        self.parser = httptools.HttpRequestParser(self)
        self.data_received(head + body)

    # -- ending

    def _check_transfer_coding(self) -> None:
        """501 for a transfer coding other than ``chunked`` alone (RFC 9112 6.1): llhttp reads
        any list that ends in ``chunked`` (``gzip, chunked``) as chunked, the rest ignored.
        Called only for a chunked body (or one announced by ``Expect``), not per request."""
        codings = [value for name, value in self._headers if name == b"transfer-encoding"]
        if codings and (len(codings) > 1 or codings[0].lower() != b"chunked"):
            found = b", ".join(codings).decode("latin-1")
            self._refuse_headers(
                501,
                f"Transfer-Encoding {found!r} is not supported: send the body as it is, "
                "with a Content-Length or chunked.",
            )

    def _refuse_headers(self, status: int = 431, message: str = "") -> None:
        self._refusal = status, message or HEAD_REFUSALS[status]
        raise _RefusedError

    def _refuse_body(self) -> None:
        """A body over the limit: answered now (the app's 413), the rest never read."""
        self.in_request = False
        self.linger = True
        self._dispatch(self._scope, None, False)
        self.closing = True
        self._pause_reading()
        raise _RefusedError

    def _fail(self, answer: bytes) -> None:
        """The request cannot be served: the answers owed, then ``answer``, then close."""
        self.in_request = False
        self.linger = True
        self.closing = True
        self._pause_reading()
        if not self.owed:
            self.transport.write(answer)
            self._close()
            return
        owed = _Owed(None, False, answer)
        owed.close = True
        self.owed.append(owed)

    def _end_after_owed(self) -> None:
        self.closing = True
        self._pause_reading()
        if not self.owed:
            self._close()

    def shut_down(self) -> None:
        """The server stops: close now if idle (a request whose head is unfinished is not under
        way yet, as for uvicorn), else once the answers owed are written."""
        if not self.owed and (not self.in_request or self._scope is None):
            self._close()
        else:
            self.draining = True

    def enforce_timeouts(self, since: float, stalled_since: float) -> None:
        """From the server's sweep (one timer for every connection, nothing per request).
        With no byte from the client since ``since`` (loop time, the keep-alive seconds ago),
        no answer owed or waiting for the client to read it: an idle connection, or one whose
        request head stopped coming, is closed. Slow clients (slowloris) are held to deadlines
        counted from ``stalled_since`` (``MODELSHELF_CLIENT_STALL_SECONDS`` ago): a request head
        must come whole within the stall seconds of its first byte (nginx's
        ``client_header_timeout``), a body must not stop for the stall seconds nor, past them,
        average under ``MODELSHELF_CLIENT_MIN_SPEED`` (Apache's ``mod_reqtimeout``); else 408,
        then close (it would hold the connection and what was read of it for good). Answers
        that back up unread are dropped (``_drop_if_unread``), on a connection closed too."""
        if self.write_paused or (self.closed and self.transport.get_write_buffer_size()):
            # Closed too: ``close`` waits for the last answers to be sent, which a client that
            # never reads holds for good (up to ``WRITE_BUFFER_BYTES`` without pausing writes).
            self._drop_if_unread(stalled_since)
            return
        if self.closed:  # lingering after an error answer, or gone
            return
        if self.closing or self.owed:
            return
        if self.in_request and not self.reading_paused:
            late = self._late_request(stalled_since)
            if late:
                logger.debug("%s: %s: 408, then close", self.peer, late)
                message = json.dumps({"error": late}).encode()
                self._fail(closing_reply(408, b"application/json", message))
                return
        if self.last_active >= since:
            return
        if not self.in_request or self._scope is None:
            if self.in_request:
                logger.debug("%s: a request head unfinished for the keep-alive time", self.peer)
            self._close()

    def _late_request(self, stalled_since: float) -> str | None:
        """What the request under way is late for (the 408's message), if anything."""
        seconds = self.server.stall_seconds
        if self._scope is None:
            if self._started >= stalled_since:
                return None
            return (
                f"the request head did not come whole within {seconds:g} s "
                "(MODELSHELF_CLIENT_STALL_SECONDS); send it at once"
            )
        if self.last_active < stalled_since:
            return (
                f"the request body stopped coming: no byte of it for {seconds:g} s "
                "(MODELSHELF_CLIENT_STALL_SECONDS); send the body without pausing that long"
            )
        speed = self.server.min_speed
        if speed and self._started + self._body_size / speed < stalled_since:
            return (
                f"the request body came too slowly: {self._body_size} bytes in "
                f"{self.loop.time() - self._started:.0f} s, under {speed:g} bytes/s after the "
                f"first {seconds:g} s (MODELSHELF_CLIENT_MIN_SPEED, "
                "MODELSHELF_CLIENT_STALL_SECONDS)"
            )
        return None

    def _drop_if_unread(self, since: float) -> None:
        """Answers back up unread (over ``WRITE_BUFFER_BYTES``): dropped with the connection
        once the client has read none of them since ``since`` -- a client that never reads
        would hold them, and the requests it pipelined, for good. One that reads, however
        slowly, is kept: progress is the bytes it has not read going down between two sweeps."""
        unread = self._unread_bytes()
        if unread < self.unread:
            self.last_active = self.loop.time()
        self.unread = unread
        if self.last_active >= since:
            return
        logger.debug(
            "%s read none of its answers for %g s (%d bytes unread): connection dropped",
            self.peer,
            self.server.stall_seconds,
            unread,
        )
        self.closing = self.closed = True
        self._forget_owed()
        # A reset, not a FIN: the kernel would otherwise keep sending what it holds (megabytes,
        # the socket's send buffer) to a client that takes none of it, for minutes.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        self.transport.abort()  # ``close`` would wait for the unsent answers to be read

    def _unread_bytes(self) -> int:
        """Answer bytes the client has not taken: the transport's buffer and the kernel's send
        queue (``TIOCOUTQ``: unsent or unacknowledged). The transport's buffer alone stays the
        same for seconds while a slow reader drains megabytes the kernel holds."""
        queued = 0
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket on Linux: the buffer alone
                found = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, QUEUE_SIZE)
                (queued,) = struct.unpack("i", found)
        return self.transport.get_write_buffer_size() + queued

    def _close(self) -> None:
        self.closing = True
        if not self.closed:
            self.closed = True
            self.last_active = self.loop.time()  # answers left unsent: their stall counts now
            self._forget_owed()
            if self.linger and self.transport.can_write_eof():
                self._linger()
            else:
                self.transport.close()

    def _forget_owed(self) -> None:
        """The answers owed will not be written: the ones still to come are cancelled (a
        queued prediction's rows are then left out of its batch's model call)."""
        for entry in self.owed:
            if entry.future is not None and entry.reply is None:
                entry.future.cancel()
        self.owed.clear()
        self.deferred = 0

    def _linger(self) -> None:
        """Close after an error answer while the client may still be sending (a refused body):
        our side ends (FIN), what still comes is read and dropped for up to ``LINGER_SECONDS``,
        then the socket closes. Closed at once, the unread bytes would make the kernel reset
        the connection, and a reset can destroy the answer before the client reads it."""
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
        if self.reading_paused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading_if_due(self) -> None:
        if (
            self.reading_paused
            and not self.write_paused
            and not self.closing
            and len(self.owed) < MAX_OWED
            and not self.transport.is_closing()
        ):
            self.reading_paused = False
            self.transport.resume_reading()
            if self.in_request:  # its bytes waited on the server, not the client: a new count
                self._started = self.loop.time()


def _asks_close(headers: Headers) -> bool:
    return any(name == b"connection" and b"close" in value.lower() for name, value in headers)


def _address(found: Any) -> tuple[str, int] | None:
    if isinstance(found, tuple) and len(found) >= 2:
        return str(found[0]), int(found[1])
    return None


def _log_access(scope: dict, status: int) -> None:
    """uvicorn's access line: ``client - "METHOD path?query HTTP/version" status``, but the
    value of a query parameter named as a secret's is not logged (``?token=<redacted>``)."""
    client = scope["client"]
    path = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path += "?" + redact_parameters(scope["query_string"].decode("ascii", "replace"))
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d',
        f"{client[0]}:{client[1]}" if client else "-",
        scope["method"],
        path,
        scope["http_version"],
        status,
    )
