"""``serve/http2``'s gRPC server in this process (its own event loop in a thread) under grpcio's
client: the message limit Seldon's ``seldon.io/grpc-max-message-size`` annotation sets, and the
call context seldon-core's and our servicers use."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import pytest
import uvloop

from modelshelf.errors import ConfigurationError
from modelshelf.serve.grpc_worker import max_message_bytes
from modelshelf.serve.http2.grpc_server import GrpcServer

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
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Probe",
                {name: grpc.unary_unary_rpc_method_handler(call) for name, call in methods.items()},
            ),
        )
    )
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


def test_no_annotation_keeps_grpcs_default_limit():
    assert max_message_bytes({}) is None
    assert GrpcServer(1, None).max_receive_bytes == 4 * 1024 * 1024


def test_an_annotation_that_is_not_a_number_names_itself_and_what_it_takes():
    with pytest.raises(ConfigurationError) as caught:
        max_message_bytes({"seldon.io/grpc-max-message-size": "100MB"})
    assert "seldon.io/grpc-max-message-size='100MB' is not valid" in str(caught.value)
    assert "a whole number of bytes" in str(caught.value)
