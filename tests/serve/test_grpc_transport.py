"""The gRPC port's transport: modelshelf's own HTTP/2 server (``serve/http2``), the default, under
real clients (tritonclient, grpcio stubs) and hostile bytes on raw sockets; and grpcio's server
behind ``MODELSHELF_GRPC_SERVER=grpcio``.

One ``modelshelf serve`` of ``SleepyModel`` (an echo: V2 answers its input as ``predict``)
serves the module; the SIGTERM test runs last on it.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton
from frontends import COMPONENTS, MODELSHELF, Launch, finish, running, start
from google.protobuf.json_format import MessageToDict
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.utils import json_to_seldon_message
from tritonclient.grpc import service_pb2, service_pb2_grpc

from microservice import wait_for_text
from modelshelf.serve.http2 import frames as f
from modelshelf.serve.http2.hpack import HpackDecoder, literal_field

LAUNCH = Launch("SleepyModel", COMPONENTS, grpc=True)


@pytest.fixture(scope="module")
def echo():
    with running(LAUNCH, [MODELSHELF]) as (service,):
        yield service


def address_of(service) -> str:
    return f"127.0.0.1:{service.grpc_port}"


def echo_request(array: np.ndarray) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="SleepyModel")
    request.inputs.add(name="input-0", datatype="FP64", shape=list(array.shape))
    request.raw_input_contents.append(array.astype("<f8").tobytes())
    return request


def echoed(answer: service_pb2.ModelInferResponse) -> np.ndarray:
    shape = list(answer.outputs[0].shape)
    return np.frombuffer(answer.raw_output_contents[0], "<f8").reshape(shape)


def grpc_worker_of(service) -> psutil.Process:
    """The process of ``service`` that listens on its gRPC port."""
    children = psutil.Process(service.process.pid).children(recursive=True)
    (worker,) = [
        child
        for child in children
        if any(
            c.status == "LISTEN" and c.laddr.port == service.grpc_port
            for c in child.net_connections("tcp")
        )
    ]
    return worker


def assert_still_serving(service) -> None:
    client = triton.InferenceServerClient(address_of(service))
    try:
        assert client.is_server_live()
    finally:
        client.close()


# ------------------------------------------------------------------------------ real clients


@pytest.mark.parametrize("rows", [4_000, 60_000])  # 128 KB and 1.9 MB each way
def test_large_request_and_answer_flow_both_ways(echo, rows):
    """Larger than HTTP/2's 64 KiB default windows and a MiB: flow control in both directions."""
    array = np.arange(rows * 4, dtype="<f8").reshape(rows, 4)
    client = triton.InferenceServerClient(address_of(echo))
    try:
        x = triton.InferInput("input-0", [rows, 4], "FP64")
        x.set_data_from_numpy(array)
        found = client.infer("SleepyModel", [x], client_timeout=30).as_numpy("predict")
    finally:
        client.close()
    np.testing.assert_array_equal(found, array)


def test_a_message_above_the_limit_is_resource_exhausted(echo):
    array = np.zeros((140_000, 4))  # 4.5 MB: above gRPC's default 4 MiB
    with grpc.insecure_channel(address_of(echo)) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(echo_request(array), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in caught.value.details()
    assert_still_serving(echo)


def test_many_concurrent_calls_on_one_channel(echo):
    with grpc.insecure_channel(address_of(echo)) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        arrays = [np.full((1 + n % 7, 4), float(n)) for n in range(200)]
        calls = [stub.ModelInfer.future(echo_request(a), timeout=30) for a in arrays]
        for array, call in zip(arrays, calls, strict=True):
            np.testing.assert_array_equal(echoed(call.result()), array)


def test_several_channels_at_once(echo):
    def calls_on_own_channel(seed: int) -> None:
        with grpc.insecure_channel(
            address_of(echo), options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            seldon = prediction_pb2_grpc.ModelStub(channel)
            for n in range(30):
                array = np.full((2, 4), float(seed * 100 + n))
                answer = stub.ModelInfer(echo_request(array), timeout=30)
                np.testing.assert_array_equal(echoed(answer), array)
            message = json_to_seldon_message({"jsonData": {"seed": seed}})
            answer = MessageToDict(seldon.Predict(message, timeout=30))
            assert answer["jsonData"] == {"seed": seed}

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(calls_on_own_channel, range(6)))


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_calls_are_inflated(echo, compression):
    """grpcio's server took gzip and deflate calls (tritonclient's compression_algorithm):
    so does ours; answers go out uncompressed, which every client accepts."""
    array = np.arange(20_000, dtype=np.float64).reshape(5_000, 4)  # compresses well
    with grpc.insecure_channel(address_of(echo), compression=compression) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        np.testing.assert_array_equal(
            echoed(stub.ModelInfer(echo_request(array), timeout=30)), array
        )


def test_a_message_that_inflates_past_the_limit_is_refused(echo):
    """A small gzip body may inflate to gigabytes: inflating stops at the message limit."""
    with grpc.insecure_channel(address_of(echo), compression=grpc.Compression.Gzip) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\0" * (8 * 1024 * 1024), timeout=30)  # 8 MiB of zeros: ~8 KB gzipped
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(echo)


def test_an_unknown_encoding_is_unimplemented(echo):
    raw = RawConnection(echo)
    try:
        path = b"/inference.GRPCInferenceService/ServerLive"
        raw.send(raw.headers(1, path, end_stream=True, extra=((b"grpc-encoding", b"snappy"),)))
        assert raw.grpc_status(1) == str(grpc.StatusCode.UNIMPLEMENTED.value[0])
    finally:
        raw.close()
    assert_still_serving(echo)


@pytest.mark.parametrize(
    "method",
    ["/inference.GRPCInferenceService/ServerLive", "/seldon.protos.Model/Predict"],
)
def test_bytes_that_are_not_the_methods_message_are_invalid_argument(echo, method):
    """A client's unreadable message is its error (INVALID_ARGUMENT naming the method whose
    message was expected), not a server fault with a traceback per call; the server keeps
    serving."""
    with (
        grpc.insecure_channel(address_of(echo)) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(method)(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the request is not a {method} request message: " in caught.value.details()
    assert "could not parse a gRPC request" not in echo.log()
    assert_still_serving(echo)


def test_unknown_method_is_unimplemented_and_a_deadline_is_accepted(echo):
    with grpc.insecure_channel(address_of(echo)) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/no.Such/Method")(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "/no.Such/Method" in caught.value.details()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=0.5).live


def test_an_error_message_keeps_its_non_ascii_text(echo):
    """grpc-message is percent-encoded UTF-8: a client reads back the exact text."""
    with grpc.insecure_channel(address_of(echo)) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="Ünknown-100%")
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Ünknown-100%" in caught.value.details()


# ------------------------------------------------------------------------------ hostile bytes


class RawConnection:
    """HTTP/2 by hand: what a broken or hostile client sends."""

    def __init__(self, service, preface: bytes = f.PREFACE) -> None:
        self.service = service
        self.sock = socket.create_connection(("127.0.0.1", service.grpc_port), timeout=10)
        self.buffer = b""
        self.decoder = HpackDecoder(max_header_list_size=1 << 20)
        if preface:
            self.sock.sendall(preface + f.settings_frame({}))

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def headers(self, stream_id: int, path: bytes, end_stream: bool = False, extra=()) -> bytes:
        block = b"".join(
            literal_field(name, value)
            for name, value in (
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path),
                (b":authority", b"test"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                *extra,
            )
        )
        flags = f.END_HEADERS | (f.END_STREAM if end_stream else 0)
        return f.frame(f.HEADERS, flags, stream_id, block)

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        """The next frame (type, flags, stream, payload), or None once the server closed."""
        while True:
            if len(self.buffer) >= 9:
                high, low, kind, flags, stream = f.FRAME_HEADER.unpack_from(self.buffer)
                length = high << 8 | low
                if len(self.buffer) >= 9 + length:
                    payload = self.buffer[9 : 9 + length]
                    self.buffer = self.buffer[9 + length :]
                    return kind, flags, stream & 0x7FFFFFFF, payload
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def grpc_status(self, stream_id: int) -> str:
        """Frames until ``stream_id`` ends: its grpc-status, or ``RST`` for a reset."""
        while (found := self.read_frame()) is not None:
            kind, flags, stream, payload = found
            if kind == f.HEADERS:
                fields = dict(self.decoder.decode(payload))
                if stream == stream_id and flags & f.END_STREAM:
                    return fields[b"grpc-status"].decode()
            elif kind == f.RST_STREAM and stream == stream_id:
                return "RST"
        raise AssertionError(f"the connection closed before stream {stream_id} ended")

    def goaway_code(self) -> int | None:
        """Frames until the server closes: the error code of its GOAWAY (None if it sent none)."""
        code = None
        while (found := self.read_frame()) is not None:
            kind, _, _, payload = found
            if kind == f.GOAWAY:
                code = struct.unpack(">LL", payload[:8])[1]
        return code

    def close(self) -> None:
        self.sock.close()

    def assert_closed_with(self, code: int, *frames: bytes) -> None:
        """Sends ``frames``: the server closes this connection with GOAWAY ``code`` and keeps
        serving other clients."""
        try:
            self.send(*frames)
            assert self.goaway_code() == code
        finally:
            self.close()
        assert_still_serving(self.service)


SERVER_LIVE = b"/inference.GRPCInferenceService/ServerLive"
MODEL_INFER = b"/inference.GRPCInferenceService/ModelInfer"
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


def test_a_raw_call_is_answered_ok(echo):
    """The hand-made client itself is right: a plain call answers grpc-status 0."""
    raw = RawConnection(echo)
    try:
        raw.send(raw.headers(1, SERVER_LIVE), f.frame(f.DATA, f.END_STREAM, 1, EMPTY_MESSAGE))
        assert raw.grpc_status(1) == "0"
    finally:
        raw.close()


@pytest.mark.parametrize("max_frame", [None, 65_536])
def test_an_answer_above_the_peers_frame_size_is_split_into_frames_it_takes(echo, max_frame):
    """A ~40 KB answer within the windows: HEADERS, DATA frames no larger than the client's
    SETTINGS_MAX_FRAME_SIZE (16 KiB unless it says more), trailers; the DATA joined is one
    length-prefixed message holding the answer."""
    array = np.arange(1_250 * 4, dtype="<f8").reshape(1_250, 4)
    message = echo_request(array).SerializeToString()
    raw = RawConnection(echo, preface=b"")
    try:
        settings = {} if max_frame is None else {f.MAX_FRAME_SIZE: max_frame}
        raw.send(f.PREFACE + f.settings_frame(settings))
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        raw.send(raw.headers(1, MODEL_INFER), f.frame(f.DATA, f.END_STREAM, 1, body))
        frames, data = [], b""
        while (found := raw.read_frame()) is not None:
            kind, flags, stream, payload = found
            if stream != 1:
                continue
            frames.append((kind, flags))
            if kind == f.DATA:
                assert len(payload) <= (max_frame or f.DEFAULT_MAX_FRAME_SIZE)
                data += payload
            elif kind == f.HEADERS and flags & f.END_STREAM:
                assert dict(raw.decoder.decode(payload))[b"grpc-status"] == b"0"
                break
            elif kind == f.HEADERS:
                raw.decoder.decode(payload)
    finally:
        raw.close()
    count = -(-len(data) // (max_frame or f.DEFAULT_MAX_FRAME_SIZE))
    assert frames == [
        (f.HEADERS, f.END_HEADERS),
        *[(f.DATA, 0)] * count,
        (f.HEADERS, f.END_HEADERS | f.END_STREAM),
    ]
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5
    np.testing.assert_array_equal(
        echoed(service_pb2.ModelInferResponse.FromString(data[5:])), array
    )


def test_an_early_answer_to_a_call_the_client_ended_sends_no_reset(echo):
    """HEADERS ending the client's side, for no such method: the trailers-only answer closes
    the stream, and an RST_STREAM after it would be a frame on a closed stream (RFC 7540 §5.1)."""
    raw = RawConnection(echo)
    try:
        raw.send(
            raw.headers(1, b"/no.Such/Method", end_stream=True),
            f.frame(f.PING, 0, 0, b"and then"),
        )
        on_stream = []
        while (found := raw.read_frame()) is not None:
            kind, flags, stream, payload = found
            if kind == f.PING:
                break
            if stream == 1:
                on_stream.append((kind, flags))
                if kind == f.HEADERS:
                    status = dict(raw.decoder.decode(payload))[b"grpc-status"]
        assert on_stream == [(f.HEADERS, f.END_HEADERS | f.END_STREAM)]
        assert status == str(grpc.StatusCode.UNIMPLEMENTED.value[0]).encode()
    finally:
        raw.close()


def test_headers_continued_in_continuation_frames_and_pings_are_answered(echo):
    raw = RawConnection(echo)
    try:
        block = raw.headers(1, SERVER_LIVE)[9:]
        raw.send(
            f.frame(f.PING, 0, 0, b"12345678"),
            f.frame(f.HEADERS, 0, 1, block[:10]),
            f.frame(f.CONTINUATION, 0, 1, block[10:20]),
            f.frame(f.CONTINUATION, f.END_HEADERS, 1, block[20:]),
            f.frame(f.DATA, f.END_STREAM, 1, EMPTY_MESSAGE),
        )
        pings = []
        while (found := raw.read_frame()) is not None:
            kind, flags, _, payload = found
            if kind == f.PING:
                pings.append((flags, payload))
                break
        assert pings == [(f.ACK, b"12345678")]
        assert raw.grpc_status(1) == "0"
    finally:
        raw.close()


def test_garbage_instead_of_the_preface_closes_the_connection(echo):
    raw = RawConnection(echo, preface=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 30)
    raw.assert_closed_with(f.PROTOCOL_ERROR)


def test_an_oversize_frame_closes_the_connection(echo):
    raw = RawConnection(echo)
    header = f.FRAME_HEADER.pack(0xFFFF, 0xFF, f.DATA, 0, 1)  # a 16 MiB frame announced
    raw.assert_closed_with(f.FRAME_SIZE_ERROR, raw.headers(1, SERVER_LIVE), header + bytes(100))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (f.frame(f.PING, 0, 1, b"12345678"), f.PROTOCOL_ERROR),  # PINGs are on stream 0
        (f.frame(f.PING, 0, 0, b"1234"), f.FRAME_SIZE_ERROR),
        (f.rst_stream(0, f.CANCEL), f.PROTOCOL_ERROR),
        (f.rst_stream(9, f.CANCEL), f.PROTOCOL_ERROR),  # a stream never opened (idle)
        (f.window_update(9, 100), f.PROTOCOL_ERROR),
        (f.frame(f.GOAWAY, 0, 1, bytes(8)), f.PROTOCOL_ERROR),
        (f.frame(f.GOAWAY, 0, 0, bytes(7)), f.FRAME_SIZE_ERROR),  # RFC 9113 §6.8: 8 or more
        (f.frame(f.PRIORITY, 0, 0, bytes(5)), f.PROTOCOL_ERROR),
    ],
    ids=[
        "ping-on-a-stream",
        "ping-of-4-bytes",
        "rst-on-0",
        "rst-on-idle",
        "window-on-idle",
        "goaway-on-a-stream",
        "goaway-of-7-bytes",
        "priority-on-0",
    ],
)
def test_a_frame_on_the_wrong_stream_closes_the_connection_with_its_code(echo, frame, code):
    raw = RawConnection(echo)
    try:
        raw.send(frame)
        assert raw.goaway_code() == code
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (lambda raw: [f.settings_frame({f.ENABLE_PUSH: 2})], f.PROTOCOL_ERROR),
        (lambda raw: [f.frame(f.SETTINGS, f.ACK, 0, b"\x00" * 6)], f.FRAME_SIZE_ERROR),
        (  # an open stream's window at 2^31-1, then one more byte for every stream
            lambda raw: [
                raw.headers(1, SERVER_LIVE),
                f.window_update(1, f.MAX_WINDOW - f.DEFAULT_WINDOW),
                f.settings_frame({f.INITIAL_WINDOW_SIZE: f.DEFAULT_WINDOW + 1}),
            ],
            f.FLOW_CONTROL_ERROR,
        ),
    ],
    ids=["enable-push-2", "ack-with-payload", "window-overflow-by-settings"],
)
def test_settings_a_server_cannot_take_close_the_connection_with_their_code(echo, frames, code):
    raw = RawConnection(echo)
    try:
        raw.send(*frames(raw))
        assert raw.goaway_code() == code
    finally:
        raw.close()


def test_a_client_lowering_its_header_table_gets_a_size_update_first(echo):
    """RFC 7541 §4.2: after SETTINGS_HEADER_TABLE_SIZE below 4,096 the server's next header
    block starts with a dynamic table size update (nghttp2 refuses one that does not); once."""
    raw = RawConnection(echo)
    try:
        raw.send(
            f.settings_frame({f.HEADER_TABLE_SIZE: 0}),
            *[
                raw.headers(stream, SERVER_LIVE)
                + f.frame(f.DATA, f.END_STREAM, stream, EMPTY_MESSAGE)
                for stream in (1, 3)
            ],
        )
        blocks = []
        while (found := raw.read_frame()) is not None:
            kind, flags, stream, payload = found
            if kind == f.HEADERS:
                blocks.append(payload)
                raw.decoder.decode(payload)
                if stream == 3 and flags & f.END_STREAM:
                    break
    finally:
        raw.close()
    updates = [block[0] & 0xE0 == 0x20 for block in blocks]
    assert updates == [True] + [False] * (len(blocks) - 1)


@pytest.mark.parametrize("window", [f.DEFAULT_WINDOW, 0])
def test_a_request_that_is_not_grpc_gets_an_http_status_within_the_window(echo, window):
    """A GET: 405, with a text body only if the client's window takes it (DATA is flow
    controlled; HEADERS are not)."""
    raw = RawConnection(echo)
    try:
        block = literal_field(b":method", b"GET") + literal_field(b":path", b"/")
        raw.send(
            f.settings_frame({f.INITIAL_WINDOW_SIZE: window}),
            f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, block),
        )
        frames = []
        while (found := raw.read_frame()) is not None:
            kind, flags, stream, payload = found
            if stream == 1:
                frames.append((kind, payload))
                if flags & f.END_STREAM:
                    break
    finally:
        raw.close()
    assert dict(raw.decoder.decode(frames[0][1]))[b":status"] == b"405"
    body = [payload for kind, payload in frames if kind == f.DATA]
    assert body == ([b"gRPC calls are POST requests with a :path"] if window else [])


def test_a_header_list_too_big_fails_its_stream_only(echo):
    raw = RawConnection(echo)
    try:
        big = ((b"x-big", b"y" * 40_000),)
        raw.send(raw.headers(1, SERVER_LIVE, extra=big), f.frame(f.DATA, f.END_STREAM, 1, b""))
        assert raw.grpc_status(1) == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        raw.send(raw.headers(3, SERVER_LIVE), f.frame(f.DATA, f.END_STREAM, 3, EMPTY_MESSAGE))
        assert raw.grpc_status(3) == "0"  # the same connection serves the next call
    finally:
        raw.close()


def test_a_header_block_too_big_to_decode_closes_the_connection(echo):
    """100 KB of headers: not even decoded (HPACK costs CPU); the next client is served."""
    raw = RawConnection(echo)
    big = ((b"x-big", b"y" * 100_000),)
    raw.assert_closed_with(f.ENHANCE_YOUR_CALM, raw.headers(1, SERVER_LIVE, extra=big))


def test_a_stream_reset_mid_message_leaves_the_connection_serving(echo):
    raw = RawConnection(echo)
    try:
        raw.send(
            raw.headers(1, SERVER_LIVE),
            f.frame(f.DATA, 0, 1, b"\x00\x00\x01\x00\x00" + b"a" * 100),  # 100 of 65,536 bytes
            f.rst_stream(1, f.CANCEL),
            raw.headers(3, SERVER_LIVE),
            f.frame(f.DATA, f.END_STREAM, 3, EMPTY_MESSAGE),
        )
        assert raw.grpc_status(3) == "0"
    finally:
        raw.close()


def test_bytes_after_a_unary_calls_message_fail_the_call_at_once(echo):
    raw = RawConnection(echo)
    try:
        raw.send(raw.headers(1, SERVER_LIVE), f.frame(f.DATA, 0, 1, EMPTY_MESSAGE + b"more"))
        assert raw.grpc_status(1) == str(grpc.StatusCode.INTERNAL.value[0])
    finally:
        raw.close()


def test_a_connection_closed_mid_call_leaves_the_server_serving(echo):
    raw = RawConnection(echo)
    raw.send(raw.headers(1, SERVER_LIVE), f.frame(f.DATA, 0, 1, b"\x00\x00\x01\x00\x00abc"))
    raw.close()
    assert_still_serving(echo)


def test_a_message_announced_too_large_ends_its_stream_early(echo):
    """The 5-byte prefix announcing 1 GiB fails the call at once; what follows is dropped,
    and the connection serves the next call."""
    raw = RawConnection(echo)
    try:
        raw.send(raw.headers(1, SERVER_LIVE), f.frame(f.DATA, 0, 1, b"\x00\x40\x00\x00\x00"))
        assert raw.grpc_status(1) == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        raw.send(*[f.frame(f.DATA, 0, 1, b"z" * 1_000_000)] * 5)
        raw.send(raw.headers(3, SERVER_LIVE), f.frame(f.DATA, f.END_STREAM, 3, EMPTY_MESSAGE))
        assert raw.grpc_status(3) == "0"
    finally:
        raw.close()


def test_a_peer_ignoring_flow_control_is_cut_off_not_buffered(echo):
    """20 streams each sending most of a 4 MB message and never ending it: beyond the
    connection's 64 MiB window the server closes the connection (FLOW_CONTROL_ERROR)."""
    raw = RawConnection(echo)
    closed = None
    try:
        chunk = b"z" * 1_000_000
        for stream in range(1, 41, 2):
            frames = [raw.headers(stream, SERVER_LIVE)]
            frames.append(f.frame(f.DATA, 0, stream, b"\x00\x00\x3d\x09\x00" + chunk))
            frames += [f.frame(f.DATA, 0, stream, chunk)] * 3
            try:
                raw.send(*frames)
            except OSError:
                break
        closed = raw.goaway_code()
    finally:
        raw.close()
    assert closed in (f.FLOW_CONTROL_ERROR, None)  # a reset socket may lose the GOAWAY
    assert_still_serving(echo)


def test_a_client_that_never_reads_its_answers_is_not_read_from(echo):
    """60 calls of 400 KB answers (24 MB), windows granted, nothing read: the server stops
    reading that connection once 1 MiB waits unsent, instead of holding every answer."""
    worker = grpc_worker_of(echo)
    before = worker.memory_info().rss
    raw = RawConnection(echo)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        raw.send(
            f.settings_frame({f.INITIAL_WINDOW_SIZE: f.MAX_WINDOW}),
            f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW),
        )
        message = echo_request(np.ones((12_500, 4))).SerializeToString()
        raw.sock.settimeout(5)
        sent = 0
        for stream in range(1, 121, 2):
            call = raw.headers(stream, MODEL_INFER) + f.frame(
                f.DATA, f.END_STREAM, stream, b"\x00" + len(message).to_bytes(4, "big") + message
            )
            try:
                raw.sock.sendall(call)
            except TimeoutError:
                break  # the server stopped reading: what this test wants
            sent += 1
        grown = worker.memory_info().rss - before
        assert_still_serving(echo)
    finally:
        raw.close()
    assert grown < 12 * 1024 * 1024, f"{grown / 1e6:.1f} MB more after {sent} calls"


def _sleep_call(channel: grpc.Channel, seconds: float, timeout: float) -> grpc.Future:
    """Seldon ``Predict`` of ``{"sleep": seconds}``: SleepyModel logs the value, then sleeps."""
    message = json_to_seldon_message({"jsonData": {"sleep": seconds}})
    return prediction_pb2_grpc.ModelStub(channel).Predict.future(message, timeout=timeout)


def _calls_expired_behind_slow_ones(service, busy: int) -> int:
    """On one connection: ``busy`` calls of 1.5 s take every place a call can run (the loop,
    inline, or the pool's threads); then three calls with a 0.2 s deadline. Each of those ends
    DEADLINE_EXCEEDED at the client; how many of them reached the model (``sleeping 0.301s``
    in the log), once a later call on the connection is answered (the server has read and
    handled them)."""
    with grpc.insecure_channel(address_of(service)) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        seconds = (1.501, 1.502)[:busy]
        blocking = [_sleep_call(channel, s, timeout=30) for s in seconds]
        for s in seconds:
            wait_for_text(service.log, f"sleeping {s}s")
        late = [_sleep_call(channel, 0.301, timeout=0.2) for _ in range(3)]
        for call in late:
            with pytest.raises(grpc.RpcError) as raised:
                call.result()
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        for call, s in zip(blocking, seconds, strict=True):
            assert MessageToDict(call.result())["jsonData"] == {"sleep": s}
        message = json_to_seldon_message({"jsonData": {"after": 1}})
        answer = prediction_pb2_grpc.ModelStub(channel).Predict(message, timeout=30)
        assert MessageToDict(answer)["jsonData"] == {"after": 1}
    log = service.log()
    assert "Traceback" not in log
    return log.count("sleeping 0.301s")


def test_calls_whose_deadline_passed_behind_an_inline_call_are_not_run(echo):
    """The three calls are read together once the slow call returns; the first runs (0.3 s:
    its deadline counts from that read, the server cannot know when they were sent), the two
    others' deadlines pass meanwhile: DEADLINE_EXCEEDED without running."""
    assert _calls_expired_behind_slow_ones(echo, busy=1) == 1


def test_calls_whose_deadline_passed_waiting_for_a_pool_thread_are_not_run():
    """GRPC_THREADS=2: the calls wait for a thread past their deadline; none runs."""
    with running(LAUNCH, [MODELSHELF], env={"GRPC_THREADS": "2"}) as (service,):
        assert _calls_expired_behind_slow_ones(service, busy=2) == 0


# ------------------------------------------------------------------------------ stopping


def test_sigterm_lets_an_in_flight_call_finish_and_exits_0(echo):
    """Runs last on the module's server: SIGTERM to the parent while a call sleeps in the
    model; the call is answered, the process exits 0."""
    answers = []

    def call() -> None:
        with grpc.insecure_channel(address_of(echo)) as channel:
            message = json_to_seldon_message({"jsonData": {"sleep": 2.0}})
            answers.append(prediction_pb2_grpc.ModelStub(channel).Predict(message, timeout=20))

    request = threading.Thread(target=call)
    request.start()
    wait_for_text(echo.log, "sleeping 2.0s")  # the call is in the model (the class's name
    started = time.monotonic()  # alone is in the log from the start: SIGTERM could come first)
    os.kill(echo.process.pid, signal.SIGTERM)
    request.join(15)
    code = echo.process.wait(15)
    assert answers and MessageToDict(answers[0])["jsonData"] == {"sleep": 2.0}
    assert code == 0, echo.log()[-3000:]
    assert time.monotonic() - started < 10


# ------------------------------------------------------------------------------ the fallback


def test_the_switch_serves_with_grpcio():
    env = {"MODELSHELF_GRPC_SERVER": "grpcio"}
    with running(LAUNCH, [MODELSHELF], env=env) as (service,):
        with grpc.insecure_channel(address_of(service)) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            array = np.ones((3, 4))
            np.testing.assert_array_equal(
                echoed(stub.ModelInfer(echo_request(array), timeout=30)), array
            )
        wait_for_text(service.log, "(grpcio)")
        assert "(modelshelf http2)" not in service.log()


def test_an_unknown_server_name_stops_the_server_naming_the_choices():
    service = start(LAUNCH, MODELSHELF, env={"MODELSHELF_GRPC_SERVER": "grcpio"})
    try:
        assert service.process.wait(60) == 1
        log = service.log()
        assert "environment variable MODELSHELF_GRPC_SERVER='grcpio' is not valid" in log
        assert "http2" in log and "grpcio" in log
        assert "restart" not in log.lower()  # refused by the parent, before any worker
    finally:
        finish(service)
