"""A single-threaded gRPC server: HTTP/2 cleartext (prior knowledge) on asyncio, unary calls
answered inline on the event loop.

grpcio's server hands every call across its threads (poller, event engine, pool: ~10 context
switches per call) and those threads take the GIL while numpy releases it inside the model's
call. Here one thread reads the frames, runs the handler and writes the answer, as the REST front
end does with httptools. It takes the handlers grpcio's generated code registers
(``add_generic_rpc_handlers``), so seldon-core's servicers, ours and grpc_reflection's register
unchanged.

What a unary call is on the wire (gRPC over HTTP/2): the client's HEADERS (``:path`` is
``/<service>/<method>``) and DATA holding one length-prefixed message; the answer is HEADERS
(``:status 200``), DATA, and trailing HEADERS with ``grpc-status`` and ``grpc-message``
ending the stream -- or, for an error before any message, one trailers-only HEADERS.

``calls_at_once`` keeps ``GRPC_THREADS``'s meaning: with 1 (the default) handlers run inline,
one at a time; with more, unary handlers run in a pool of that many threads. Streaming methods
(only reflection's, here) always run in a thread of their own, fed by a queue. An inline handler
may answer an ``asyncio.Future`` of its outcome instead (a call queued by adaptive batching,
``serve.batching``, to join the next model call): its stream is answered when it resolves, and
a stream reset, the connection's end or the call's ``grpc-timeout`` meanwhile cancels it (the
batch leaves it out; the timeout is answered DEADLINE_EXCEEDED, as grpcio does). A unary call
whose ``grpc-timeout`` is over before its handler starts (inline or in the pool) is answered
DEADLINE_EXCEEDED without running (``calls.call_unary``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import struct
import threading
import time
import zlib
from concurrent import futures
from typing import Any, NamedTuple

import grpc

from modelshelf.serve.http2 import frames as f
from modelshelf.serve.http2.calls import (
    CallContext,
    MethodHandler,
    RequestsEnd,
    call_streaming,
    call_unary,
    deadline_of,
    trailers,
)
from modelshelf.serve.http2.hpack import (
    HeaderListTooLargeError,
    HpackDecoder,
    HpackError,
    literal_field,
)

logger = logging.getLogger(__name__)

#: grpcio's default limit on a received message (4 MiB); sends are unlimited, as in grpcio.
DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
#: Streams one connection may have open; more are refused (the client queues its calls).
MAX_CONCURRENT_STREAMS = 256
#: A header list larger than this ends its stream (RST_STREAM); gRPC's own default is 16 KiB.
MAX_HEADER_LIST_BYTES = 16 * 1024
#: A header block (HPACK-encoded) longer than this cannot decode within the list limit unless
#: it is mostly padding or junk: the connection is closed before decoding it (decoding costs CPU).
MAX_HEADER_BLOCK_BYTES = 4 * MAX_HEADER_LIST_BYTES
#: Largest frame this side accepts: fewer frames per large message than HTTP/2's 16 KiB.
MAX_FRAME_BYTES = 1024 * 1024
#: Answer bytes the transport may hold unsent before the connection stops reading calls.
WRITE_BUFFER_BYTES = 1024 * 1024
#: Each stream's receive window, replenished when half is used.
RECEIVE_WINDOW = 16 * 1024 * 1024
#: The connection's receive window (or twice the message limit, if larger): what one connection
#: may hold of messages not yet complete. Replenished only as bytes are used or dropped, so a
#: peer opening many streams and never ending them is held to it (and cut off beyond it).
CONNECTION_RECEIVE_WINDOW = 64 * 1024 * 1024
#: Streaming calls (reflection's) running at once, server-wide: each has a thread of its own.
MAX_STREAMING_CALLS = 64
#: Answer bytes a streaming call may hold waiting for the client's window; beyond, the stream is
#: reset (ENHANCE_YOUR_CALM): a client asking and never reading cannot make answers pile up.
MAX_STREAM_PENDING_BYTES = WRITE_BUFFER_BYTES

_MESSAGE_PREFIX = struct.Struct(">BL")
#: zlib's window bits for the grpc-encodings we inflate (answers go out uncompressed, which
#: every client accepts): gzip's wrapper, and "deflate", which gRPC sends zlib-wrapped.
_WBITS = {b"gzip": 31, b"deflate": 15}

#: The answer's leading HEADERS block: ``:status 200`` (static index 8) and
#: ``content-type: application/grpc`` (literal without indexing, static name 31).
_RESPONSE_HEADERS = b"\x88" + b"\x0f\x10" + bytes((16,)) + b"application/grpc"


class _CallDetails(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


# ------------------------------------------------------------------------------- streams


class _Stream:
    __slots__ = (
        "answered",
        "body",
        "context",
        "due",
        "encoding",
        "expiry",
        "handler",
        "held",
        "id",
        "pending",
        "receive_window",
        "received",
        "requests",
        "send_window",
        "started",
        "trailers",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.handler: MethodHandler | None = None
        self.body = bytearray()
        self.held = 0  # DATA bytes counted against the connection's window, not yet released
        self.received = False  # the client ended its side (END_STREAM)
        self.send_window = send_window
        self.receive_window = RECEIVE_WINDOW
        self.pending = bytearray()  # answer bytes waiting for flow-control window
        self.trailers: bytes | None = None  # sent once ``pending`` is out
        self.answered = False  # the call has ended on this side (answer queued or sent)
        self.requests: queue.SimpleQueue | None = None  # streaming calls: messages in
        self.context: CallContext | None = None
        self.due: asyncio.Future | None = None  # a unary call's answer to come (batching)
        self.expiry: asyncio.TimerHandle | None = None  # ``due``'s grpc-timeout
        self.started = False  # the leading HEADERS are sent
        self.encoding = b"identity"  # grpc-encoding of the client's messages


# ------------------------------------------------------------------------------- the connection


class GrpcConnection(asyncio.Protocol):
    """One HTTP/2 connection of a gRPC client."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._buffer = bytearray()
        self._wanted = 0  # bytes ``_buffer`` must hold before its next frame can be read
        self._preface = False
        self._decoder = HpackDecoder(max_header_list_size=MAX_HEADER_LIST_BYTES)
        self._streams: dict[int, _Stream] = {}
        self._last_stream_id = 0
        self._send_window = f.DEFAULT_WINDOW
        self._peer_window = f.DEFAULT_WINDOW  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self._peer_max_frame = f.DEFAULT_MAX_FRAME_SIZE
        self._encoder_table_size = 4096  # the peer's SETTINGS_HEADER_TABLE_SIZE, HPACK's default
        self._table_update = b""  # a dynamic table size update owed (see ``_headers_out``)
        self._receive_window = server.connection_window
        self._released = 0  # bytes used or dropped since the last WINDOW_UPDATE of stream 0
        self._blocked: dict[int, _Stream] = {}  # streams with answer bytes waiting for window
        # A header block spread over CONTINUATION frames: (stream id, END_STREAM, bytes so far).
        self._continuing: tuple[int, bool, bytearray] | None = None
        self.closing = False  # GOAWAY sent: no new streams
        self.closed = False
        # When the bytes being read came off the socket: a call's grpc-timeout counts from
        # there, so calls read together behind a slow inline call are seen to have expired.
        self._read_at = 0.0

    # -- asyncio callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        address = transport.get_extra_info("peername")
        if isinstance(address, tuple):
            family = "ipv6" if ":" in address[0] else "ipv4"
            self.peer = f"{family}:{address[0]}:{address[1]}"
        self.server.connections.add(self)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
        transport.write(
            f.settings_frame(
                {
                    f.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                    f.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
                    f.MAX_FRAME_SIZE: MAX_FRAME_BYTES,
                    f.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_BYTES,
                    f.ENABLE_PUSH: 0,
                }
            )
            + f.window_update(0, self.server.connection_window - f.DEFAULT_WINDOW)
        )
        if self.server.stopping:
            self.go_away()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for stream in self._streams.values():
            self._cancel(stream)
        self._streams.clear()
        self._blocked.clear()
        self.server.connection_ended()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._read_at = time.monotonic()
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._wanted:  # a large frame arriving: copied once, whole
                return
            data, self._buffer = self._buffer, bytearray()  # read in place, not copied again
        try:
            at = 0
            if not self._preface:
                if len(data) < len(f.PREFACE):
                    if not f.PREFACE.startswith(data):
                        raise f.Http2Error(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    self._buffer += data
                    return
                if not data.startswith(f.PREFACE):
                    raise f.Http2Error(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                self._preface = True
                at = len(f.PREFACE)
            end = len(data)
            view = memoryview(data)  # DATA payloads are slices of it, not copies
            unpack = f.FRAME_HEADER.unpack_from
            self._wanted = f.HEADER_BYTES
            while end - at >= f.HEADER_BYTES:
                high, low, kind, flags, stream_id = unpack(data, at)
                length = high << 8 | low
                if length > MAX_FRAME_BYTES:
                    raise f.Http2Error(
                        f.FRAME_SIZE_ERROR, f"a frame of {length} bytes; at most {MAX_FRAME_BYTES}"
                    )
                if end - at - f.HEADER_BYTES < length:
                    self._wanted = f.HEADER_BYTES + length
                    break
                start = at + f.HEADER_BYTES
                at = start + length
                # DATA is copied once, into its stream's body; other frames' payloads as bytes.
                payload = view[start:at] if kind == f.DATA else bytes(view[start:at])
                self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
                if self.closed:
                    return
            if at < end:
                self._buffer += view[at:]
        except f.Http2Error as error:
            self._fail(error.code, str(error))
        except Exception:  # a fault here: this connection ends, the server keeps serving
            logger.exception("gRPC connection from %s failed", self.peer)
            self._fail(f.INTERNAL_ERROR, "internal error")

    def pause_writing(self) -> None:
        """The peer is not reading our answers: read no more of its calls until it does (a
        client granting large windows and never reading cannot make answers pile up)."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.closed:
            self.transport.resume_reading()

    # -- frames

    def _frame(self, kind: int, flags: int, stream_id: int, payload: Any) -> None:
        if self._continuing is not None and kind != f.CONTINUATION:
            raise f.Http2Error(f.PROTOCOL_ERROR, "a header block was not continued")
        if kind == f.DATA:
            self._data(flags, stream_id, payload)
        elif kind == f.HEADERS:
            self._headers_frame(flags, stream_id, payload)
        elif kind == f.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == f.SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == f.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == f.PING:
            if stream_id:
                raise f.Http2Error(f.PROTOCOL_ERROR, f"a PING on stream {stream_id}; they are on 0")
            if len(payload) != 8:
                raise f.Http2Error(f.FRAME_SIZE_ERROR, f"a PING of {len(payload)} bytes, not 8")
            if not flags & f.ACK:
                self.transport.write(f.frame(f.PING, f.ACK, 0, payload))
        elif kind == f.RST_STREAM:
            self._check_opened(stream_id, "RST_STREAM")
            if len(payload) != 4:
                raise f.Http2Error(f.FRAME_SIZE_ERROR, "an RST_STREAM is 4 bytes")
            stream = self._streams.pop(stream_id, None)
            if stream is not None:
                self._blocked.pop(stream_id, None)
                self._cancel(stream)
                self._maybe_finish()
        elif kind == f.GOAWAY:
            if stream_id:
                raise f.Http2Error(f.PROTOCOL_ERROR, f"a GOAWAY on stream {stream_id}, not 0")
            if len(payload) < 8:  # last stream id and error code (RFC 9113 §6.8)
                raise f.Http2Error(
                    f.FRAME_SIZE_ERROR, f"a GOAWAY of {len(payload)} bytes; 8 or more"
                )
            self.closing = True
            self._maybe_finish()
        elif kind == f.PRIORITY:
            if not stream_id:
                raise f.Http2Error(f.PROTOCOL_ERROR, "a PRIORITY frame on stream 0")
            if len(payload) != 5:
                raise f.Http2Error(f.FRAME_SIZE_ERROR, "a PRIORITY frame is 5 bytes")
        elif kind == f.PUSH_PROMISE:
            raise f.Http2Error(f.PROTOCOL_ERROR, "a client cannot push")
        # any other type: ignored (§4.1)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise f.Http2Error(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise f.Http2Error(f.FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise f.Http2Error(f.FRAME_SIZE_ERROR, "SETTINGS of a length not a multiple of 6")
        for at in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, at)
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.Http2Error(f.FLOW_CONTROL_ERROR, "initial window above 2^31-1")
                change = value - self._peer_window
                self._peer_window = value
                for stream in self._streams.values():
                    stream.send_window += change
                    if stream.send_window > f.MAX_WINDOW:  # §6.9.2
                        raise f.Http2Error(
                            f.FLOW_CONTROL_ERROR,
                            f"initial window {value}: stream {stream.id}'s above 2^31-1",
                        )
            elif key == f.ENABLE_PUSH:
                if value > 1:
                    raise f.Http2Error(f.PROTOCOL_ERROR, f"ENABLE_PUSH {value}; 0 or 1 expected")
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME_SIZE <= value <= f.MAX_FRAME_SIZE_LIMIT:
                    raise f.Http2Error(f.PROTOCOL_ERROR, f"max frame size {value}")
                self._peer_max_frame = value
            elif key == f.HEADER_TABLE_SIZE and value < self._encoder_table_size:
                # Our encoder adds nothing to its table, but a smaller table is owed a size
                # update leading our next header block (RFC 7541 §4.2): 0, once, fits any.
                self._encoder_table_size = 0
                self._table_update = b"\x20"
        self.transport.write(f.frame(f.SETTINGS, f.ACK, 0))
        self._flush_blocked()

    def _check_opened(self, stream_id: int, kind: str) -> None:
        """RFC 7540 §5.1: a frame of a stream must come after the client opened it."""
        if not stream_id or stream_id > self._last_stream_id:
            raise f.Http2Error(
                f.PROTOCOL_ERROR, f"{kind} on stream {stream_id}, which the client did not open"
            )

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise f.Http2Error(f.FRAME_SIZE_ERROR, "a WINDOW_UPDATE is 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise f.Http2Error(f.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise f.Http2Error(f.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._flush_blocked()
            return
        self._check_opened(stream_id, "WINDOW_UPDATE")
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a stream already closed here
        if not increment:
            self._reset(stream, f.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW:
            self._reset(stream, f.FLOW_CONTROL_ERROR)
            return
        if stream.id in self._blocked:
            self._flush_blocked()

    def _headers_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise f.Http2Error(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = 0, len(payload)
        if flags & f.PADDED:
            if not payload:
                raise f.Http2Error(f.PROTOCOL_ERROR, "padded HEADERS without a pad length")
            start, end = 1, end - payload[0]
        if flags & f.PRIORITY_FLAG:
            start += 5
        if start > end:
            raise f.Http2Error(f.PROTOCOL_ERROR, "HEADERS padding longer than the frame")
        block = payload[start:end]
        if len(block) > MAX_HEADER_BLOCK_BYTES:
            raise f.Http2Error(
                f.ENHANCE_YOUR_CALM, f"a header block above {MAX_HEADER_BLOCK_BYTES} bytes"
            )
        if flags & f.END_HEADERS:
            self._header_block(stream_id, bool(flags & f.END_STREAM), block)
        else:
            self._continuing = (stream_id, bool(flags & f.END_STREAM), bytearray(block))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuing is None or self._continuing[0] != stream_id:
            raise f.Http2Error(f.PROTOCOL_ERROR, "CONTINUATION of no header block")
        block = self._continuing[2]
        block += payload
        if len(block) > MAX_HEADER_BLOCK_BYTES:
            raise f.Http2Error(
                f.ENHANCE_YOUR_CALM, f"a header block above {MAX_HEADER_BLOCK_BYTES} bytes"
            )
        if flags & f.END_HEADERS:
            _, end_stream, _ = self._continuing
            self._continuing = None
            self._header_block(stream_id, end_stream, bytes(block))

    def _header_block(self, stream_id: int, end_stream: bool, block: bytes) -> None:
        too_large = None
        try:
            headers = self._decoder.decode(block)
        except HpackError as error:
            raise f.Http2Error(f.COMPRESSION_ERROR, str(error)) from None
        except HeaderListTooLargeError as error:
            headers, too_large = [], str(error)  # the table is in step: only this stream fails
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers of the client (gRPC clients send none on unary)
            if not end_stream:
                raise f.Http2Error(f.PROTOCOL_ERROR, "a second HEADERS without END_STREAM")
            self._end_of_request(stream)
            return
        if not stream_id & 1:
            raise f.Http2Error(f.PROTOCOL_ERROR, f"stream id {stream_id} is not a client's")
        if stream_id <= self._last_stream_id:
            return  # trailers of a stream this side already ended: dropped (decoded above)
        self._last_stream_id = stream_id
        if self.closing:
            self.transport.write(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        if len(self._streams) >= MAX_CONCURRENT_STREAMS:
            self.transport.write(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        stream = _Stream(stream_id, self._peer_window)
        stream.received = end_stream  # an answer before the call runs then sends no RST_STREAM
        self._streams[stream_id] = stream
        if too_large is not None:
            self._answer_error(stream, grpc.StatusCode.RESOURCE_EXHAUSTED, too_large)
            return
        self._start(stream, headers)
        if end_stream and not stream.answered:
            self._end_of_request(stream)

    def _data(self, flags: int, stream_id: int, payload: bytes | memoryview) -> None:
        if not stream_id:
            raise f.Http2Error(f.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._receive_window -= size
        if self._receive_window < 0:
            raise f.Http2Error(f.FLOW_CONTROL_ERROR, "DATA beyond the connection's window")
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream_id:
                raise f.Http2Error(f.PROTOCOL_ERROR, "DATA on an idle stream")
            self._release(size)
            return  # a stream this side closed or reset: its late frames are dropped
        stream.held += size
        if stream.received:
            self._reset(stream, f.STREAM_CLOSED)
            return
        stream.receive_window -= size
        if stream.receive_window < 0:
            self._reset(stream, f.FLOW_CONTROL_ERROR)
            return
        if flags & f.PADDED:
            if not payload or payload[0] >= size:
                raise f.Http2Error(f.PROTOCOL_ERROR, "DATA padding longer than the frame")
            payload = payload[1 : size - payload[0]]
        if not stream.answered:
            stream.body += payload
            self._read_messages(stream)
        if flags & f.END_STREAM:
            self._end_of_request(stream)
        elif stream.receive_window < RECEIVE_WINDOW // 2 and not stream.answered:
            self.transport.write(f.window_update(stream_id, RECEIVE_WINDOW - stream.receive_window))
            stream.receive_window = RECEIVE_WINDOW

    # -- gRPC calls

    def _start(self, stream: _Stream, headers: list[tuple[bytes, bytes]]) -> None:
        """Check a new call's headers and find its method."""
        path = content_type = encoding = timeout = None
        method = b""
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name == b"grpc-timeout":
                timeout = value
        if method != b"POST" or path is None:
            self._answer_http(stream, b"405", "gRPC calls are POST requests with a :path")
            return
        if content_type is None or not content_type.startswith(b"application/grpc"):
            self._answer_http(stream, b"415", "content-type must be application/grpc")
            return
        if encoding is not None and encoding not in _WBITS and encoding != b"identity":
            self._answer_error(
                stream,
                grpc.StatusCode.UNIMPLEMENTED,
                f"grpc-encoding {encoding.decode('latin-1')} is not supported; send messages "
                "uncompressed (identity), gzip or deflate",
            )
            return
        if encoding is not None:
            stream.encoding = encoding
        handler = self.server.handler(path)
        if handler is None:
            self._answer_error(
                stream,
                grpc.StatusCode.UNIMPLEMENTED,
                f"Method not found: {path.decode('latin-1')}",
            )
            return
        stream.handler = handler
        deadline = None if timeout is None else deadline_of(timeout, self._read_at)
        stream.context = CallContext(headers, self.peer, deadline)
        if handler.request_streaming:
            self._run_streaming(stream)

    def _read_messages(self, stream: _Stream) -> None:
        """Check the size of the message arriving; a streaming call gets each complete one."""
        body = stream.body
        if len(body) < 5:
            return
        limit = self.server.max_receive_bytes
        while len(body) >= 5:
            compressed, length = _MESSAGE_PREFIX.unpack_from(body)
            if length > limit:
                self._answer_error(
                    stream,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Received message larger than max ({length} vs. {limit})",
                )
                return
            if compressed and stream.encoding not in _WBITS:
                self._answer_error(
                    stream,
                    grpc.StatusCode.INTERNAL,
                    "a compressed message without grpc-encoding gzip or deflate",
                )
                return
            if stream.requests is None:  # unary: one message, nothing after it
                if len(body) > 5 + length:
                    self._answer_error(
                        stream,
                        grpc.StatusCode.INTERNAL,
                        f"a unary call's body is one message; {len(body) - 5 - length} more "
                        "bytes followed it",
                    )
                return
            if len(body) < 5 + length:
                return
            message = self._message(stream, compressed, body[5 : 5 + length])
            if message is None:
                return
            stream.requests.put(message)
            del body[: 5 + length]
            self._release(stream.held - len(body))
            stream.held = len(body)

    def _message(self, stream: _Stream, compressed: int, data: Any) -> bytes | None:
        """A request message as sent, or inflated (gzip, deflate) within the size limit;
        ``None`` once the call is answered with the error."""
        if not compressed:
            return bytes(data)
        limit = self.server.max_receive_bytes
        inflater = zlib.decompressobj(_WBITS[stream.encoding])
        try:
            message = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            message, problem = b"", f"could not be inflated ({exc})"
        else:
            problem = None if inflater.eof else "is cut short"
        if len(message) > limit:
            self._answer_error(
                stream,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message larger than max (over {limit} bytes once inflated)",
            )
            return None
        if problem is not None:
            encoding = stream.encoding.decode("latin-1")
            self._answer_error(
                stream, grpc.StatusCode.INTERNAL, f"the {encoding} message {problem}"
            )
            return None
        return message

    def _end_of_request(self, stream: _Stream) -> None:
        stream.received = True
        if stream.answered:  # its answer waits for window; the stream ends once it is out
            return
        if stream.requests is not None:
            stream.requests.put(RequestsEnd)
            return
        body = stream.body
        if len(body) < 5 or _MESSAGE_PREFIX.unpack_from(body)[1] != len(body) - 5:
            self._answer_error(
                stream,
                grpc.StatusCode.INTERNAL,
                "a unary call's body must be exactly one message "
                f"(5-byte prefix and its length); got {len(body)} bytes",
            )
            return
        with memoryview(body) as view:  # the message is copied once, out of the body
            message = self._message(stream, body[0], view[5:])
        if message is None:
            return
        stream.body = bytearray()
        self._release(stream.held)
        stream.held = 0
        handler = stream.handler
        if handler.response_streaming:
            self._run_streaming(stream, message)
        elif self.server.pool is None:
            result = call_unary(handler, message, stream.context)
            if type(result) is tuple:
                self._answer(stream, *result)
            else:  # queued to join a model call (adaptive batching): answered when it resolves
                stream.due = result
                result.add_done_callback(lambda done: self._answer_due(stream, done))
                remaining = stream.context.time_remaining()
                if remaining is not None:
                    if remaining <= 0:
                        self._deadline_passed(stream)
                    else:
                        stream.expiry = self.server.loop.call_later(
                            remaining, self._deadline_passed, stream
                        )
        else:
            done = self.server.pool.submit(call_unary, handler, message, stream.context)
            loop = self.server.loop
            done.add_done_callback(
                lambda result: loop.call_soon_threadsafe(self._answer_later, stream, result)
            )

    def _answer_due(self, stream: _Stream, result: asyncio.Future) -> None:
        """A queued call's answer, unless its stream was reset or closed meanwhile (then the
        future was cancelled: the batch left the request out), or already sent (its deadline's
        timer found it ready: ``_deadline_passed``)."""
        if stream.due is not result:
            return
        stream.due = None
        if result.cancelled() or self._streams.get(stream.id) is not stream or self.closed:
            return
        exc = result.exception()
        if exc is not None:
            logger.error("gRPC call failed", exc_info=exc)
            self._answer(
                stream,
                None,
                grpc.StatusCode.UNKNOWN.value[0],
                f"Exception calling application: {exc}",
            )
            return
        self._answer(stream, *result.result())

    def _deadline_passed(self, stream: _Stream) -> None:
        """A queued call's ``grpc-timeout`` passed before its model call: DEADLINE_EXCEEDED,
        as grpcio answers, and the batch leaves it out (``_cancel``); the client may not even
        be waiting (its own deadline, or none kept by a proxy), the work is useless."""
        stream.expiry = None
        due = stream.due
        if due is None or self._streams.get(stream.id) is not stream or self.closed:
            return
        if due.done() and not due.cancelled():
            # Computed in the pass the deadline passed in (its callback not yet run: the timer
            # came first): the answer is sent, not thrown away for DEADLINE_EXCEEDED.
            self._answer_due(stream, due)
            return
        self._answer_error(stream, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _answer_later(self, stream: _Stream, result: futures.Future) -> None:
        if not result.cancelled() and self._streams.get(stream.id) is stream:
            self._answer(stream, *result.result())

    def _answer(
        self, stream: _Stream, payload: bytes | None, code: int, details: str | None
    ) -> None:
        """The call's answer: headers, the message if any, trailers."""
        if payload is None:
            self._answer_status(stream, code, details)
            return
        ending = trailers(code, details)
        size = len(payload) + 5
        stream.answered = True
        if size <= stream.send_window and size <= self._send_window and not stream.pending:
            # The whole answer in one write, its bytes copied once (by the join): the message
            # is framed in place, over as many DATA frames as the peer's frame size needs.
            stream.send_window -= size
            self._send_window -= size
            stream.started = True
            self.transport.write(
                b"".join(
                    (
                        self._headers_out(f.END_HEADERS, stream.id, _RESPONSE_HEADERS),
                        *_data_frames(stream.id, payload, self._peer_max_frame),
                        self._headers_out(f.END_HEADERS | f.END_STREAM, stream.id, ending),
                    )
                )
            )
            self._closed_here(stream)
            return
        stream.pending += _MESSAGE_PREFIX.pack(0, len(payload))
        stream.pending += payload
        stream.trailers = ending
        self._send_pending(stream)

    def _headers_out(self, flags: int, stream_id: int, block: bytes) -> bytes:
        """A HEADERS frame of ``block``, led by the table size update owed, if any."""
        if self._table_update:
            block = self._table_update + block
            self._table_update = b""
        return f.frame(f.HEADERS, flags, stream_id, block)

    def _send_message(self, stream: _Stream, payload: bytes) -> None:
        """One message of a streaming answer (from the loop)."""
        if self._streams.get(stream.id) is not stream or stream.answered:
            return
        stream.pending += _MESSAGE_PREFIX.pack(0, len(payload)) + payload
        self._send_pending(stream)
        if len(stream.pending) > MAX_STREAM_PENDING_BYTES:
            self._reset(stream, f.ENHANCE_YOUR_CALM)

    def _streaming_ended(self, stream: _Stream, code: int, details: str | None) -> None:
        self.server.streaming_calls -= 1
        self._end_streaming(stream, code, details)

    def _end_streaming(self, stream: _Stream, code: int, details: str | None) -> None:
        if self._streams.get(stream.id) is not stream or stream.answered:
            return
        if not stream.started:
            self._answer_status(stream, code, details)
            return
        stream.answered = True
        stream.trailers = trailers(code, details)
        self._send_pending(stream)

    def _send_pending(self, stream: _Stream) -> None:
        """As much of ``stream.pending`` as the windows allow; then its trailers, if set. The
        frames go out in one write: each write is a send(2), ~10 µs on loopback."""
        pending = stream.pending
        out = []
        if not stream.started:
            stream.started = True
            out.append(self._headers_out(f.END_HEADERS, stream.id, _RESPONSE_HEADERS))
        while pending:
            size = min(len(pending), stream.send_window, self._send_window, self._peer_max_frame)
            if size <= 0:
                self._blocked[stream.id] = stream
                break
            out.append(f.frame(f.DATA, 0, stream.id, bytes(pending[:size])))
            del pending[:size]
            stream.send_window -= size
            self._send_window -= size
        else:
            self._blocked.pop(stream.id, None)
            if stream.trailers is not None:
                out.append(
                    self._headers_out(f.END_HEADERS | f.END_STREAM, stream.id, stream.trailers)
                )
                stream.trailers = None
                self.transport.write(b"".join(out))
                self._closed_here(stream)
                return
        if out:
            self.transport.write(b"".join(out))

    def _flush_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                return
            self._send_pending(stream)

    def _answer_status(self, stream: _Stream, code: int, details: str | None) -> None:
        """A trailers-only answer (no message): one HEADERS ending the stream."""
        stream.answered = True
        block = _RESPONSE_HEADERS + trailers(code, details)
        self.transport.write(self._headers_out(f.END_HEADERS | f.END_STREAM, stream.id, block))
        self._closed_here(stream)

    def _answer_error(self, stream: _Stream, code: grpc.StatusCode, details: str) -> None:
        self._answer_status(stream, code.value[0], details)

    def _answer_http(self, stream: _Stream, status: bytes, message: str) -> None:
        """Not a gRPC request: an HTTP status (gRPC's spec maps them for clients)."""
        stream.answered = True
        block = literal_field(b":status", status) + literal_field(b"content-type", b"text/plain")
        body = message.encode()
        if len(body) > min(stream.send_window, self._send_window):  # no window: headers only
            self.transport.write(self._headers_out(f.END_HEADERS | f.END_STREAM, stream.id, block))
        else:
            stream.send_window -= len(body)
            self._send_window -= len(body)
            self.transport.write(
                self._headers_out(f.END_HEADERS, stream.id, block)
                + f.frame(f.DATA, f.END_STREAM, stream.id, body)
            )
        self._closed_here(stream)

    def _closed_here(self, stream: _Stream) -> None:
        """This side ended the stream: forget it once the client ended its side too; a client
        still sending (an early error) is told to stop."""
        if not stream.received:
            self.transport.write(f.rst_stream(stream.id, f.NO_ERROR))
        self._streams.pop(stream.id, None)
        self._blocked.pop(stream.id, None)
        self._cancel(stream)
        self._maybe_finish()

    def _reset(self, stream: _Stream, code: int) -> None:
        self.transport.write(f.rst_stream(stream.id, code))
        self._streams.pop(stream.id, None)
        self._blocked.pop(stream.id, None)
        self._cancel(stream)
        self._maybe_finish()

    def _release(self, size: int) -> None:
        """``size`` bytes of DATA used or dropped: the connection's window gets them back
        (one WINDOW_UPDATE per half window)."""
        self._released += size
        if self._released >= self.server.connection_window // 2 and not self.closed:
            self.transport.write(f.window_update(0, self._released))
            self._receive_window += self._released
            self._released = 0

    def _cancel(self, stream: _Stream) -> None:
        if stream.due is not None:  # queued for a model call: the batch leaves it out
            stream.due.cancel()
            stream.due = None
        if stream.expiry is not None:
            stream.expiry.cancel()
            stream.expiry = None
        if stream.held:
            self._release(stream.held)
            stream.held = 0
        if stream.context is not None:
            stream.context._active = False
        if stream.requests is not None:
            stream.requests.put(RequestsEnd)

    def _run_streaming(self, stream: _Stream, message: bytes | None = None) -> None:
        """A streaming method in a thread of its own: requests in through a queue, answers out
        through the loop."""
        if self.server.streaming_calls >= MAX_STREAMING_CALLS:
            self._answer_error(
                stream,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{MAX_STREAMING_CALLS} streaming calls (server reflection's) run at once at "
                "most; call again once one has ended",
            )
            return
        self.server.streaming_calls += 1
        stream.requests = queue.SimpleQueue()
        if message is not None:
            stream.requests.put(message)
            stream.requests.put(RequestsEnd)
        loop = self.server.loop
        thread = threading.Thread(
            target=call_streaming,
            args=(
                stream.handler,
                stream.requests,
                stream.context,
                lambda payload: loop.call_soon_threadsafe(self._send_message, stream, payload),
                lambda code, details: loop.call_soon_threadsafe(
                    self._streaming_ended, stream, code, details
                ),
            ),
            name=f"grpc-stream-{stream.id}",
            daemon=True,
        )
        thread.start()

    # -- ending

    def go_away(self) -> None:
        """GOAWAY: no new streams; the connection closes once its open calls end."""
        if self.closing and self.closed:
            return
        self.closing = True
        if self.transport is not None and not self.closed:
            self.transport.write(f.goaway(self._last_stream_id, f.NO_ERROR))
            self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.closing and not self._streams and self.transport is not None:
            self.transport.close()

    def _fail(self, code: int, message: str) -> None:
        logger.debug("closing gRPC connection from %s: %s", self.peer, message)
        if self.transport is not None and not self.closed:
            self.transport.write(f.goaway(self._last_stream_id, code, message.encode()[:200]))
            self.transport.close()
        self.closed = True

    @property
    def open_calls(self) -> int:
        return len(self._streams)


def _data_frames(stream_id: int, payload: bytes, max_frame: int) -> list[bytes | memoryview]:
    """``payload`` as one gRPC message (5-byte prefix) in DATA frames of at most ``max_frame``
    bytes: frame headers and slices of ``payload``, to be joined (no copy of it here)."""
    size = len(payload) + 5
    prefix = _MESSAGE_PREFIX.pack(0, len(payload))
    header = f.FRAME_HEADER.pack
    if size <= max_frame:
        return [header(size >> 8, size & 0xFF, f.DATA, 0, stream_id), prefix, payload]
    view = memoryview(payload)
    first = max_frame - 5
    pieces: list[bytes | memoryview] = [
        header(max_frame >> 8, max_frame & 0xFF, f.DATA, 0, stream_id),
        prefix,
        view[:first],
    ]
    for at in range(first, len(payload), max_frame):
        chunk = view[at : at + max_frame]
        length = len(chunk)
        pieces += (header(length >> 8, length & 0xFF, f.DATA, 0, stream_id), chunk)
    return pieces


# ------------------------------------------------------------------------------- the server


class GrpcServer:
    """Registers grpcio-style handlers and serves them on one event loop."""

    def __init__(self, calls_at_once: int = 1, max_receive_bytes: int | None = None) -> None:
        self.max_receive_bytes = max_receive_bytes or DEFAULT_MAX_RECEIVE_BYTES
        self.connection_window = min(
            max(CONNECTION_RECEIVE_WINDOW, 2 * (self.max_receive_bytes + 5)), f.MAX_WINDOW
        )
        self.pool = (
            futures.ThreadPoolExecutor(max_workers=calls_at_once) if calls_at_once > 1 else None
        )
        self._generic: list[Any] = []
        self._methods: dict[bytes, MethodHandler] = {}
        self.connections: set[GrpcConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self.streaming_calls = 0  # running in their threads (``MAX_STREAMING_CALLS``)
        self._servers: list[asyncio.AbstractServer] = []
        self._idle: asyncio.Event | None = None

    # grpcio's registration API, as generated code and grpc_reflection call it
    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._generic.extend(handlers)
        self._methods.clear()

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))

    def handler(self, path: bytes) -> MethodHandler | None:
        """The method at ``path`` (found once, then cached; unknown paths are not cached)."""
        found = self._methods.get(path)
        if found is not None:
            return found
        details = _CallDetails(path.decode("latin-1"), ())
        for generic in self._generic:
            handler = generic.service(details)
            if handler is None:
                continue
            call = (
                handler.unary_unary
                or handler.unary_stream
                or handler.stream_unary
                or handler.stream_stream
            )
            method = MethodHandler(
                call,
                handler.request_streaming,
                handler.response_streaming,
                handler.request_deserializer,
                handler.response_serializer,
                details.method,
            )
            self._methods[path] = method
            return method
        return None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (SO_REUSEPORT, so every worker may bind it); the port bound."""
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(
            lambda: GrpcConnection(self), host, port, reuse_port=True, backlog=1024
        )
        for sock in server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def stop(self, grace: float) -> None:
        """Stop listening, GOAWAY every connection, let open calls finish within ``grace``
        seconds, then close what is left."""
        self.stopping = True
        for server in self._servers:
            server.close()
        self._idle = asyncio.Event()
        for connection in list(self.connections):
            connection.go_away()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def connection_ended(self) -> None:
        if self._idle is not None and not self.connections:
            self._idle.set()
