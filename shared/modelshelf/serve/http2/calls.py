"""gRPC calls as the HTTP/2 server runs them: the context a servicer gets, running a unary or
streaming method, and the trailers that end a call.

The context is the part of ``grpc.ServicerContext`` that seldon-core's servicer, ours and
grpc_reflection's use; errors follow grpcio's server (an exception is UNKNOWN "Exception calling
application: ...", unless the method set a code first).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import queue
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc

from modelshelf.serve.http2.hpack import literal_field

logger = logging.getLogger(__name__)

#: grpc-status 0, written once.
OK_TRAILERS = literal_field(b"grpc-status", b"0")
#: The longest ``grpc-message`` written (percent-encoded bytes); longer details are cut, so an
#: answer's header block fits one frame of the peer's default 16 KiB and grpc clients' 8 KiB
#: metadata limit (beyond them the client fails the connection or the call, not with our code).
MAX_MESSAGE_BYTES = 4096
#: Bytes ``grpc-message`` writes as %XX: all but printable ASCII, and ``%`` itself.
_ESCAPED = re.compile(rb"[^\x20-\x24\x26-\x7e]")
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
#: Headers of the transport, not the call's metadata (``invocation_metadata`` leaves them out).
_TRANSPORT_HEADERS = frozenset(
    (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)


class CallAbortedError(Exception):
    """``context.abort`` was called: the call ends with the context's code and details."""


class MethodHandler(NamedTuple):
    """What the connection needs of a registered method."""

    call: Callable[..., Any]
    request_streaming: bool
    response_streaming: bool
    deserialize: Callable[[bytes], Any] | None
    serialize: Callable[[Any], bytes] | None
    path: str  # "/package.Service/Method": errors name the method whose message was expected


class Metadatum(NamedTuple):
    """One entry of ``invocation_metadata()``, as grpcio gives it (a pair with names)."""

    key: str
    value: str | bytes


class CallContext:
    """The part of ``grpc.ServicerContext`` our servicers, seldon-core's and reflection use."""

    __slots__ = ("_active", "_deadline", "_headers", "_peer", "code", "details")

    def __init__(self, headers: list[tuple[bytes, bytes]], peer: str, deadline: float | None):
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self._headers = headers
        self._peer = peer
        self._deadline = deadline
        self._active = True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if code is grpc.StatusCode.OK:
            raise ValueError("abort with OK: use a normal return")
        self.code, self.details = code, details
        raise CallAbortedError(details)

    def abort_with_status(self, status: Any) -> None:
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        found = []
        for name, value in self._headers:
            if name[:1] == b":" or name in _TRANSPORT_HEADERS:
                continue
            key = name.decode("latin-1")
            if key.endswith("-bin"):
                found.append(Metadatum(key, base64.b64decode(value + b"=" * (-len(value) % 4))))
            else:
                found.append(Metadatum(key, value.decode("latin-1")))
        return tuple(found)

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def deadline_passed(self) -> bool:
        """Whether the call's ``grpc-timeout`` is over: its client has stopped waiting."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def is_active(self) -> bool:
        return self._active

    def set_trailing_metadata(self, metadata: Any) -> None:
        """Accepted and not sent: none of the servicers served here sets any."""

    def send_initial_metadata(self, metadata: Any) -> None:
        """Accepted and not sent (see ``set_trailing_metadata``)."""

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class RequestsEnd:
    """Put in a streaming call's request queue: no more requests."""


def call_unary(
    handler: MethodHandler, message: bytes, context: CallContext
) -> tuple[bytes | None, int, str | None] | asyncio.Future:
    """Run one unary call: (answer bytes or None, status code, details), or the future of
    them: a method may answer an ``asyncio.Future`` of that triple (V2 ``ModelInfer`` or Seldon
    ``Predict`` queued for adaptive batching), which the server waits on.

    A call whose ``grpc-timeout`` passed before it got here (behind slow calls run inline, or
    waiting for a pool thread) is answered DEADLINE_EXCEEDED, the status its client has, and
    not run: its client has given up, so the model time would be wasted (grpcio's server
    runs it anyway)."""
    if context.deadline_passed():
        return None, grpc.StatusCode.DEADLINE_EXCEEDED.value[0], "Deadline Exceeded"
    try:
        request = handler.deserialize(message) if handler.deserialize else message
    except Exception as exc:  # the client's bytes, not a server fault: no traceback per call
        logger.debug("a gRPC request is not %s's request message: %s", handler.path, exc)
        return (
            None,
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
            f"the request is not a {handler.path} request message: {exc}",
        )
    try:
        response = handler.call(request, context)
        if isinstance(response, asyncio.Future):
            return response
        payload = handler.serialize(response) if handler.serialize else response
    except CallAbortedError:
        return None, context.code.value[0], context.details
    except Exception as exc:
        if context.code is not None and context.code is not grpc.StatusCode.OK:
            return None, context.code.value[0], context.details
        logger.exception("gRPC call failed")
        return None, grpc.StatusCode.UNKNOWN.value[0], f"Exception calling application: {exc}"
    if context.code is not None and context.code is not grpc.StatusCode.OK:
        return None, context.code.value[0], context.details
    if not isinstance(payload, bytes | bytearray | memoryview):  # grpcio answers the same
        logger.error("a gRPC method answered a %s, not bytes", type(payload).__name__)
        return None, grpc.StatusCode.INTERNAL.value[0], "Failed to serialize response!"
    return payload, 0, None


def call_streaming(
    handler: MethodHandler,
    requests: queue.SimpleQueue,
    context: CallContext,
    send: Callable[[bytes], None],
    end: Callable[[int, str | None], None],
) -> None:
    """Run a streaming method in the calling thread: requests from ``requests`` (until
    ``RequestsEnd``); each answer to ``send``, then the status to ``end`` (both thread-safe)."""

    def incoming() -> Iterator[Any]:
        while True:
            message = requests.get()
            if message is RequestsEnd:
                return
            yield handler.deserialize(message) if handler.deserialize else message

    code, details = 0, None
    try:
        request = incoming() if handler.request_streaming else next(incoming())
        answers = handler.call(request, context)
        if not handler.response_streaming:
            answers = [answers]
        for answer in answers:
            payload = handler.serialize(answer) if handler.serialize else answer
            send(payload)
        if context.code is not None and context.code is not grpc.StatusCode.OK:
            code, details = context.code.value[0], context.details
    except CallAbortedError:
        code, details = context.code.value[0], context.details
    except Exception as exc:
        logger.exception("gRPC streaming call failed")
        code, details = grpc.StatusCode.UNKNOWN.value[0], f"Exception calling application: {exc}"
    end(code, details)


def trailers(code: int, details: str | bytes | None) -> bytes:
    if not code:
        return OK_TRAILERS
    block = literal_field(b"grpc-status", str(code).encode())
    if details:
        if isinstance(details, bytes):  # grpcio takes bytes too
            details = details.decode("utf-8", "replace")
        block += literal_field(b"grpc-message", percent_encode(str(details)))
    return block


def percent_encode(text: str) -> bytes:
    """gRPC's ``grpc-message``: UTF-8 (what UTF-8 cannot hold, a lone surrogate, as ``\\udcff``),
    with bytes outside printable ASCII and ``%`` as %XX; cut at a character to at most
    ``MAX_MESSAGE_BYTES``."""
    encoded = _escaped(text)
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return encoded
    out = bytearray()
    for char in text[:MAX_MESSAGE_BYTES]:
        piece = _escaped(char)
        if len(out) + len(piece) > MAX_MESSAGE_BYTES:
            break
        out += piece
    return bytes(out)


def _escaped(text: str) -> bytes:
    return _ESCAPED.sub(
        lambda found: b"%%%02X" % found[0][0], text.encode("utf-8", "backslashreplace")
    )


def deadline_of(timeout: bytes, received: float) -> float | None:
    """``grpc-timeout`` (digits and a unit) as a monotonic deadline, counted from ``received``
    (when the call's bytes were read: a server cannot know when the client sent them);
    unreadable: none."""
    unit = _TIMEOUT_UNITS.get(timeout[-1:])
    digits = timeout[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None
    return received + int(digits) * unit
