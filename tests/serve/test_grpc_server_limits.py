"""``serve/http2``'s gRPC server in this process (its own event loop in a thread) under grpcio's
client: the message limit Seldon's ``seldon.io/grpc-max-message-size`` annotation sets, and the
call context seldon-core's and our servicers use."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
import uvloop

from modelshelf.errors import ConfigurationError
from modelshelf.serve.grpc_worker import max_message_bytes
from modelshelf.serve.http2 import frames as f
from modelshelf.serve.http2.grpc_server import (
    MAX_STREAM_PENDING_BYTES,
    MAX_STREAMING_CALLS,
    GrpcServer,
)
from modelshelf.serve.http2.hpack import HpackDecoder, literal_field

LIMIT = 10_000


def _echo(request: bytes, context) -> bytes:
    return request


def _context_facts(request: bytes, context) -> bytes:
    metadata = dict(context.invocation_metadata())
    remaining = context.time_remaining()  # grpc rounds 30 s up to 30.1 at most
    facts = [
        metadata["x-caller"],
        metadata["x-token-bin"].hex(),
        "deadline" if remaining is not None and 0 < remaining <= 31 else f"deadline {remaining}",
        "ipv4:127.0.0.1:" if context.peer().startswith("ipv4:127.0.0.1:") else context.peer(),
    ]
    return "|".join(facts).encode()


def _aborts(request: bytes, context) -> bytes:
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not now: ask again later")
    raise AssertionError("abort returns")


def _sets_code(request: bytes, context) -> bytes:
    context.set_code(grpc.StatusCode.UNIMPLEMENTED)
    context.set_details("Method not implemented!")
    raise NotImplementedError("Method not implemented!")  # what generated servicers do


def _aborts_at_length(request: bytes, context) -> bytes:
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "x" * 20_000)


def _aborts_with_a_lone_surrogate(request: bytes, context) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no file b'\\xff' = \udcff here")  # surrogateescape


def _answers_text(request: bytes, context) -> str:
    return "text, where the method has no serializer"


def _floods(request: bytes, context) -> Iterator[bytes]:
    """Answers twice what a stream may hold unsent, in 1 KB messages."""
    for _ in range(2 * MAX_STREAM_PENDING_BYTES // 1000):
        yield b"f" * 1000


def _chats(requests: Iterator[bytes], context) -> Iterator[bytes]:
    yield from requests


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    annotations = {"seldon.io/grpc-max-message-size": str(LIMIT)}
    server = GrpcServer(1, max_message_bytes(annotations))
    methods = {
        "Echo": _echo,
        "Context": _context_facts,
        "Aborts": _aborts,
        "SetsCode": _sets_code,
        "AbortsAtLength": _aborts_at_length,
        "AbortsWithALoneSurrogate": _aborts_with_a_lone_surrogate,
        "AnswersText": _answers_text,
    }
    handlers = {name: grpc.unary_unary_rpc_method_handler(call) for name, call in methods.items()}
    handlers["Floods"] = grpc.unary_stream_rpc_method_handler(_floods)
    handlers["Chats"] = grpc.stream_stream_rpc_method_handler(_chats)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Probe", handlers),))
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(10)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_the_annotation_limits_received_messages(address):
    with grpc.insecure_channel(address) as channel:
        echo = channel.unary_unary("/test.Probe/Echo")
        assert echo(b"a" * (LIMIT - 10), timeout=10) == b"a" * (LIMIT - 10)
        with pytest.raises(grpc.RpcError) as caught:
            echo(b"a" * (LIMIT + 1), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"({LIMIT + 1} vs. {LIMIT})" in caught.value.details()
        assert echo(b"still serving", timeout=10) == b"still serving"


def test_the_context_gives_metadata_deadline_and_peer(address):
    with grpc.insecure_channel(address) as channel:
        answer = channel.unary_unary("/test.Probe/Context")(
            b"", timeout=30, metadata=(("x-caller", "tests"), ("x-token-bin", b"\x00\xff"))
        )
    assert answer.decode() == "tests|00ff|deadline|ipv4:127.0.0.1:"


def test_abort_and_set_code_end_the_call_with_that_status(address):
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as aborted:
            channel.unary_unary("/test.Probe/Aborts")(b"", timeout=10)
        with pytest.raises(grpc.RpcError) as unimplemented:
            channel.unary_unary("/test.Probe/SetsCode")(b"", timeout=10)
    assert aborted.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert aborted.value.details() == "not now: ask again later"
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert unimplemented.value.details() == "Method not implemented!"


def test_error_details_of_any_length_or_text_end_only_their_call(address):
    """20 KB of details would not fit the client's 16 KiB frame nor its metadata limit: cut to
    4 KiB; text UTF-8 cannot hold is escaped. The calls get their codes; the connection serves
    on."""
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as long:
            channel.unary_unary("/test.Probe/AbortsAtLength")(b"", timeout=10)
        with pytest.raises(grpc.RpcError) as surrogate:
            channel.unary_unary("/test.Probe/AbortsWithALoneSurrogate")(b"", timeout=10)
        assert channel.unary_unary("/test.Probe/Echo")(b"on", timeout=10) == b"on"
    assert long.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert long.value.details() == "x" * 4096
    assert surrogate.value.code() == grpc.StatusCode.NOT_FOUND
    assert surrogate.value.details() == "no file b'\\xff' = \\udcff here"


def test_an_answer_that_is_not_bytes_ends_its_call_not_the_connection(address):
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/test.Probe/AnswersText")(b"", timeout=10)
        assert channel.unary_unary("/test.Probe/Echo")(b"on", timeout=10) == b"on"
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "Failed to serialize response!"


def test_no_annotation_keeps_grpcs_default_limit():
    assert max_message_bytes({}) is None
    assert GrpcServer(1, None).max_receive_bytes == 4 * 1024 * 1024


def test_an_annotation_that_is_not_a_number_names_itself_and_what_it_takes():
    with pytest.raises(ConfigurationError) as caught:
        max_message_bytes({"seldon.io/grpc-max-message-size": "100MB"})
    assert "seldon.io/grpc-max-message-size='100MB' is not valid" in str(caught.value)
    assert "a whole number of bytes" in str(caught.value)


# ------------------------------------------------------------------------------ streaming calls


def _raw_connection(address: str, settings: dict[int, int]) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f.PREFACE + f.settings_frame(settings))
    return sock


def _call_headers(stream_id: int, path: bytes, end_stream: bool) -> bytes:
    fields = ((b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
              (b":authority", b"t"), (b"content-type", b"application/grpc"))  # fmt: skip
    block = b"".join(literal_field(name, value) for name, value in fields)
    flags = f.END_HEADERS | (f.END_STREAM if end_stream else 0)
    return f.frame(f.HEADERS, flags, stream_id, block)


def _frames(sock: socket.socket) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of each frame the server sends, until it closes."""
    buffer = b""
    while chunk := sock.recv(65536):
        buffer += chunk
        while len(buffer) >= 9:
            high, low, kind, flags, stream = f.FRAME_HEADER.unpack_from(buffer)
            end = 9 + (high << 8 | low)
            if len(buffer) < end:
                break
            yield kind, flags, stream, buffer[9:end]
            buffer = buffer[end:]


def test_streaming_calls_past_the_bound_are_refused_with_resource_exhausted(address):
    """Each streaming call has a thread: past ``MAX_STREAMING_CALLS`` open at once, the next
    is answered RESOURCE_EXHAUSTED; once the client leaves, streaming calls run again. (Runs
    before the other streaming test: it counts on no streaming call running.)"""
    sock = _raw_connection(address, {})
    last = 2 * MAX_STREAMING_CALLS + 1
    try:
        sock.sendall(
            b"".join(
                _call_headers(stream, b"/test.Probe/Chats", end_stream=False)
                for stream in range(1, last + 2, 2)
            )
        )
        decoder = HpackDecoder()
        for kind, flags, stream, payload in _frames(sock):
            if kind == f.HEADERS:
                fields = dict(decoder.decode(payload))
                if flags & f.END_STREAM:
                    assert stream == last, f"stream {stream} ended: {fields}"
                    break
        assert fields[b"grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]).encode()
        assert f"{MAX_STREAMING_CALLS} streaming calls".encode() in fields[b"grpc-message"]
    finally:
        sock.close()
    with grpc.insecure_channel(address) as channel:
        chat = channel.stream_stream("/test.Probe/Chats")
        for _ in range(20):  # the closed connection's calls end in their threads
            try:
                assert list(chat(iter([b"a", b"b"]), timeout=10)) == [b"a", b"b"]
                break
            except grpc.RpcError as refused:
                assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                threading.Event().wait(0.1)
        else:
            raise AssertionError("streaming calls stayed refused after the client left")


def test_a_streaming_answer_the_client_never_takes_is_reset_not_held(address):
    """The client grants no window: once a stream's unsent answers pass their bound, the
    stream is reset (ENHANCE_YOUR_CALM) instead of the server holding all of them."""
    sock = _raw_connection(address, {f.INITIAL_WINDOW_SIZE: 0})
    try:
        sock.sendall(
            _call_headers(1, b"/test.Probe/Floods", end_stream=False)
            + f.frame(f.DATA, f.END_STREAM, 1, b"\x00" * 5)
        )
        for kind, _, stream, payload in _frames(sock):
            if kind == f.RST_STREAM and stream == 1:
                assert int.from_bytes(payload, "big") == f.ENHANCE_YOUR_CALM
                break
        else:
            raise AssertionError("the server closed without resetting the stream")
    finally:
        sock.close()
    with grpc.insecure_channel(address) as channel:
        assert channel.unary_unary("/test.Probe/Echo")(b"on", timeout=10) == b"on"
