"""Adaptive batching of V2 gRPC ``ModelInfer`` on ``modelshelf serve``'s own HTTP/2 server:
concurrent calls from real gRPC clients (each on its own connection) against a serving process,
each answer byte-equal to the one the call gets alone.

Requests are built with tritonclient's messages (an independent copy of the protocol's
``.proto``); the answers are compared as the bytes the server sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import joblib
import numpy as np
import pytest
from frontends import (
    MODELSHELF,
    batch_sizes,
    read_by_server,
    released_together,
    running,
    sklearn_launch,
    wait_for,
)
from sklearn.ensemble import RandomForestClassifier
from test_grpc_transport import RawConnection
from tritonclient.grpc import service_pb2

from microservice import Microservice
from modelshelf.serve.http2 import frames as f

# A wait long enough that calls sent at once join on a loaded machine.
BATCHING_ENV = {"MODELSHELF_MAX_BATCH_TIME_MS": "200", "MODELSHELF_MAX_BATCH_SIZE": "64"}
METHOD = "/inference.GRPCInferenceService/ModelInfer"
MODEL = "forest"
#: Each channel its own connection (grpc shares one between alike channels by default).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]

Outcome = tuple[str, bytes | str]  # ("ok", answer bytes) or (status code name, details)


@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1).astype(int)
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(X, y)
    folder = tmp_path_factory.mktemp("forest")
    joblib.dump(model, folder / "model.joblib")
    return folder


@contextlib.contextmanager
def _serving(
    folder: Path, env: dict[str, str], extra_args: tuple[str, ...] = ()
) -> Iterator[Microservice]:
    launch = sklearn_launch(folder, MODEL, method="predict_proba")
    launch = dataclasses.replace(launch, grpc=True, extra_args=launch.extra_args + extra_args)
    with running(launch, [MODELSHELF], env=env) as (service,):
        yield service


@pytest.fixture(scope="module")
def server(forest_dir: Path) -> Iterator[Microservice]:
    with _serving(forest_dir, BATCHING_ENV) as service:
        yield service


def _rows(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 4)).round(6)


def _request(rows: np.ndarray, datatype: str = "FP64", name: str = "x") -> bytes:
    """A raw-contents ModelInferRequest of ``rows`` as ``datatype``."""
    dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4"}[datatype]
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name=name, datatype=datatype)
    tensor.shape.extend(rows.shape)
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype=dtype).tobytes())
    return request.SerializeToString()


def _call(channel: grpc.Channel, request: bytes, method: str = METHOD) -> Outcome:
    infer = channel.unary_unary(method)  # bytes in, bytes out: the answer as the server sent it
    try:
        return "ok", infer(request, timeout=60)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details()


def _one_by_one(service: Microservice, requests: list[bytes]) -> list[Outcome]:
    return _calls_one_by_one(service, [(METHOD, request) for request in requests])


def _at_once(service: Microservice, requests: list[bytes]) -> list[Outcome]:
    return _calls_at_once(service, [(METHOD, request) for request in requests])


def test_concurrent_calls_join_and_answer_as_alone(server: Microservice) -> None:
    requests = [_request(_rows(i, 1 + i % 3)) for i in range(12)]
    alone = _one_by_one(server, requests)
    assert [kind for kind, _ in alone] == ["ok"] * len(requests), alone
    before_sum, before_count = batch_sizes(server)
    for _ in range(3):  # past the first joined calls, which are also checked one by one
        assert _at_once(server, requests) == alone
    assert wait_for(lambda: batch_sizes(server)[1] > before_count)
    total, count = batch_sizes(server)  # joined calls only: two requests or more each
    assert (total - before_sum) >= 2 * (count - before_count) > 0, (total, count)


def test_calls_on_one_connection_join_and_answer_as_alone(server: Microservice) -> None:
    """Many calls in flight on one HTTP/2 connection: the queued streams are answered on it,
    each with its own answer."""
    requests = [_request(_rows(700 + i, 1 + i % 2)) for i in range(24)]
    alone = _one_by_one(server, requests)
    before = batch_sizes(server)[1]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        infer = channel.unary_unary(METHOD)
        for _ in range(3):
            calls = [infer.future(request, timeout=60) for request in requests]
            assert [("ok", call.result()) for call in calls] == alone
    assert wait_for(lambda: batch_sizes(server)[1] > before)


def test_a_bad_call_fails_alone(server: Microservice) -> None:
    """float32 cannot hold 1e300: scikit-learn refuses the row. That call gets its own
    INVALID_ARGUMENT (naming the input, as an unqueued call's does); the others their answers."""
    good = [_request(_rows(300 + i, 2)) for i in range(7)]
    bad = _request(np.array([[1e300, 0.0, 0.0, 0.0]]))
    requests = [*good[:3], bad, *good[3:]]
    alone = _one_by_one(server, requests)
    code, details = alone[3]
    assert code == "INVALID_ARGUMENT", alone[3]
    assert str(details).startswith("input 'x' (FP64, shape [1, 4]): "), details
    for _ in range(2):
        assert _at_once(server, requests) == alone


def test_other_names_and_datatypes_are_not_mixed(server: Microservice) -> None:
    """The same model asked with FP64, FP32 and INT64 tensors under two names: each call's
    answer (its output's datatype follows the request's) equals its own."""
    requests = []
    for i in range(3):
        requests.append(_request(_rows(400 + i, 1)))
        requests.append(_request(_rows(410 + i, 2), "FP32", "input-0"))
        requests.append(_request(np.array([[i, 1, 0, 2]]), "INT64"))
    alone = _one_by_one(server, requests)
    assert [kind for kind, _ in alone] == ["ok"] * len(requests), alone
    for _ in range(2):
        assert _at_once(server, requests) == alone


def test_batching_off_with_batch_size_one(forest_dir: Path) -> None:
    with _serving(forest_dir, {"MODELSHELF_MAX_BATCH_SIZE": "1"}) as service:
        calls = [(METHOD, _request(_rows(i, 1))) for i in range(8)]
        calls += [_seldon_request(_rows(i, 1)) for i in range(8)]
        alone = _calls_one_by_one(service, calls)
        assert _calls_at_once(service, calls) == alone
        # Sizes reach the metrics process once a second: none by then.
        assert not wait_for(lambda: batch_sizes(service) != (0, 0), timeout=2)


@pytest.mark.parametrize(
    ("env", "extra_args"),
    [({"MODELSHELF_GRPC_SERVER": "grpcio"}, ()), ({}, ("--grpc-threads", "2"))],
    ids=["grpcio", "grpc-threads-2"],
)
def test_servers_running_calls_in_threads_do_not_batch(
    forest_dir: Path, env: dict[str, str], extra_args: tuple[str, ...]
) -> None:
    """grpcio's server and GRPC_THREADS > 1 run calls in threads: nothing joins (even with a
    batch wait), and every answer is its own."""
    with _serving(forest_dir, BATCHING_ENV | env, extra_args) as service:
        calls = [(METHOD, _request(_rows(900 + i, 1))) for i in range(6)]
        calls += [_seldon_request(_rows(910 + i, 1)) for i in range(6)]
        alone = _calls_one_by_one(service, calls)
        assert _calls_at_once(service, calls) == alone
        # Sizes reach the metrics process once a second: none by then.
        assert not wait_for(lambda: batch_sizes(service) != (0, 0), timeout=2)


def test_calls_join_without_an_added_wait(forest_dir: Path) -> None:
    """Default settings: calls that arrive while the model works join, and every answer is
    still its own."""
    with _serving(forest_dir, {}) as service:
        requests = [_request(_rows(500 + i, 1 + i % 2)) for i in range(8)]
        alone = _one_by_one(service, requests)
        for _ in range(5):
            assert _at_once(service, requests * 2) == alone * 2
        assert wait_for(lambda: batch_sizes(service)[1] > 0)


def test_a_call_reset_while_queued_leaves_the_server_serving(forest_dir: Path) -> None:
    """A client whose deadline passes while its call waits for others (a 1.5 s batch wait)
    resets the stream: the batch leaves the call out, and the next calls are answered."""
    with _serving(forest_dir, {"MODELSHELF_MAX_BATCH_TIME_MS": "1500"}) as service:
        request = _request(_rows(600, 1))
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            infer = channel.unary_unary(METHOD)
            with pytest.raises(grpc.RpcError) as raised:
                infer(request, timeout=0.3)
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert _call(channel, request)[0] == "ok"
        assert _at_once(service, [request] * 4) == [_call_alone(service, request)] * 4
        assert "Traceback" not in service.log()


def _call_alone(service: Microservice, request: bytes) -> Outcome:
    return _one_by_one(service, [request])[0]


# ------------------------------------------------------------------ Seldon-protocol Predict

SELDON_METHOD = "/seldon.protos.Model/Predict"


def _seldon_request(rows: np.ndarray, kind: str = "tensor") -> tuple[str, bytes]:
    from seldon_core.proto import prediction_pb2

    message = prediction_pb2.SeldonMessage()
    if kind == "tensor":
        message.data.tensor.shape.extend(rows.shape)
        message.data.tensor.values.extend(rows.ravel().tolist())
    else:
        message.data.ndarray.extend(rows.tolist())
    return SELDON_METHOD, message.SerializeToString()


def _without_metrics(method: str, outcome: Outcome) -> Outcome:
    """A Seldon answer (V2's as it is) without the ``meta.metrics`` it carries when
    modelshelf's own counters are due (by time, not by request)."""
    from seldon_core.proto import prediction_pb2

    kind, answer = outcome
    if kind != "ok" or method != SELDON_METHOD:
        return outcome
    message = prediction_pb2.SeldonMessage.FromString(answer)
    del message.meta.metrics[:]
    return kind, message.SerializeToString(deterministic=True)


def _calls_at_once(service: Microservice, calls: list[tuple[str, bytes]]) -> list[Outcome]:
    """Every call from its own channel (connection) and thread, released together."""

    def send(index: int, barrier: threading.Barrier) -> Outcome:
        method, request = calls[index]
        address = f"127.0.0.1:{service.grpc_port}"
        with grpc.insecure_channel(address, options=OWN_CONNECTION) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            barrier.wait()
            return _call(channel, request, method)

    found = released_together(len(calls), send)
    return [
        _without_metrics(method, outcome) for (method, _), outcome in zip(calls, found, strict=True)
    ]


def _calls_one_by_one(service: Microservice, calls: list[tuple[str, bytes]]) -> list[Outcome]:
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        return [
            _without_metrics(method, _call(channel, request, method)) for method, request in calls
        ]


def test_seldon_predict_calls_join_and_answer_as_alone(server: Microservice) -> None:
    """Seldon ``Predict`` calls (tensor and ndarray data) join; every answer is its own."""
    calls = [_seldon_request(_rows(800 + i, 1 + i % 2)) for i in range(6)]
    calls += [_seldon_request(_rows(810 + i, 1), "ndarray") for i in range(6)]
    alone = _calls_one_by_one(server, calls)
    assert [kind for kind, _ in alone] == ["ok"] * len(calls)
    before_sum, before_count = batch_sizes(server)
    for _ in range(3):
        assert _calls_at_once(server, calls) == alone
    assert wait_for(lambda: batch_sizes(server)[1] > before_count)
    total, count = batch_sizes(server)
    assert (total - before_sum) >= 2 * (count - before_count) > 0, (total, count)


def test_a_bad_seldon_predict_call_fails_alone(server: Microservice) -> None:
    calls = [_seldon_request(_rows(850 + i, 2)) for i in range(6)]
    calls.insert(2, _seldon_request(np.array([[1e300, 0.0, 0.0, 0.0]])))
    alone = _calls_one_by_one(server, calls)
    assert [kind for kind, _ in alone] == ["ok"] * 2 + ["INVALID_ARGUMENT"] + ["ok"] * 4
    for _ in range(2):
        assert _calls_at_once(server, calls) == alone


def test_seldon_and_v2_calls_at_once_join_only_their_own_kind(server: Microservice) -> None:
    calls = []
    for i in range(6):
        calls.append(_seldon_request(_rows(830 + i, 1)))
        calls.append((METHOD, _request(_rows(830 + i, 1))))  # the same rows
    alone = _calls_one_by_one(server, calls)
    assert [kind for kind, _ in alone] == ["ok"] * len(calls)
    for _ in range(2):
        assert _calls_at_once(server, calls) == alone


# ------------------------------------------------------------- clients gone, by hand (HTTP/2)

STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def _raw_call(service: Microservice, request: bytes, settings: dict[int, int]) -> RawConnection:
    """A connection of its own (with ``settings``) that has sent one ModelInfer (stream 1)."""
    raw = RawConnection(service, preface=b"")
    raw.send(f.PREFACE + f.settings_frame(settings))
    body = b"\x00" + len(request).to_bytes(4, "big") + request
    raw.send(raw.headers(1, METHOD.encode()), f.frame(f.DATA, f.END_STREAM, 1, body))
    return raw


def _raw_outcome(raw: RawConnection, replenish: bool = False) -> Outcome:
    """Stream 1's outcome as ``_call`` gives it; ``replenish``: the windows are given back as
    DATA is read (a client with small windows that reads)."""
    data = b""
    while (found := raw.read_frame()) is not None:
        kind, flags, stream, payload = found
        if kind == f.DATA and stream == 1:
            data += payload
            if replenish and payload:
                raw.send(f.window_update(0, len(payload)), f.window_update(1, len(payload)))
        elif kind == f.HEADERS:
            fields = dict(raw.decoder.decode(payload))
            if stream == 1 and flags & f.END_STREAM:
                code = int(fields[b"grpc-status"])
                if code:
                    return STATUS_NAMES[code], fields.get(b"grpc-message", b"").decode()
                assert int.from_bytes(data[1:5], "big") == len(data) - 5
                return "ok", data[5:]
        elif kind == f.RST_STREAM and stream == 1:
            raise AssertionError("stream 1 was reset")
    raise AssertionError("the connection closed before stream 1 ended")


def test_calls_of_clients_gone_while_queued_are_not_computed(forest_dir: Path) -> None:
    """Four calls, each on its own connection, queue for one model call (a 3 s batch wait);
    meanwhile one client resets its stream (RST_STREAM CANCEL) and one resets its connection
    (TCP). The call joins the other two only (the batch-size histogram sees one call of 2),
    whose answers are byte-equal to their own calls'."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "3000", "MODELSHELF_MAX_BATCH_SIZE": "64"}
    with _serving(forest_dir, env) as service:
        requests = [_request(_rows(820 + i, 2)) for i in range(4)]
        alone = _one_by_one(service, requests)
        before = batch_sizes(service)
        raws = [_raw_call(service, request, {}) for request in requests]
        try:
            assert all(read_by_server(raw.sock) for raw in raws)  # queued, the wait not over
            raws[1].send(f.rst_stream(1, f.CANCEL))
            raws[3].sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raws[3].close()
            answers = [_raw_outcome(raws[0]), _raw_outcome(raws[2])]
        finally:
            for raw in raws:
                raw.close()
        assert answers == [alone[0], alone[2]]
        assert wait_for(lambda: batch_sizes(service)[1] > before[1])
        total, count = batch_sizes(service)
        assert (total - before[0], count - before[1]) == (2, 1)
        assert "Traceback" not in service.log()


def test_a_call_whose_deadline_passes_while_queued_is_deadline_exceeded_not_computed(
    forest_dir: Path,
) -> None:
    """A batch wait of 3 s. A call whose client sends ``grpc-timeout: 300m`` and keeps waiting
    (no reset: a raw client) is answered DEADLINE_EXCEEDED by the server at its deadline, long
    before the wait ends, as grpcio's server does; a real client's 0.3 s timeout ends its call
    DEADLINE_EXCEEDED too. Neither is computed: the model call joins the two other calls only."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "3000", "MODELSHELF_MAX_BATCH_SIZE": "64"}
    with _serving(forest_dir, env) as service:
        requests = [_request(_rows(840 + i, 2)) for i in range(4)]
        alone = _one_by_one(service, requests)
        before = batch_sizes(service)
        timed = RawConnection(service, preface=b"")
        address = f"127.0.0.1:{service.grpc_port}"
        with (
            grpc.insecure_channel(address, options=OWN_CONNECTION) as first,
            grpc.insecure_channel(address, options=OWN_CONNECTION) as second,
            grpc.insecure_channel(address, options=OWN_CONNECTION) as third,
        ):
            outcomes = [
                channel.unary_unary(METHOD).future(request, timeout=timeout)
                for channel, request, timeout in (
                    (first, requests[0], 60),
                    (second, requests[1], 0.3),
                    (third, requests[2], 60),
                )
            ]
            try:
                timed.send(f.PREFACE + f.settings_frame({}))
                body = b"\x00" + len(requests[3]).to_bytes(4, "big") + requests[3]
                extra = ((b"grpc-timeout", b"300m"),)
                timed.send(
                    timed.headers(1, METHOD.encode(), extra=extra),
                    f.frame(f.DATA, f.END_STREAM, 1, body),
                )
                sent = time.monotonic()
                assert _raw_outcome(timed) == ("DEADLINE_EXCEEDED", "Deadline Exceeded")
                waited = time.monotonic() - sent
            finally:
                timed.close()
            assert 0.25 < waited < 2, waited  # its deadline, not the batch's 3 s
            with pytest.raises(grpc.RpcError) as raised:
                outcomes[1].result()
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert [("ok", outcomes[i].result()) for i in (0, 2)] == [alone[0], alone[2]]
        assert wait_for(lambda: batch_sizes(service)[1] > before[1])
        total, count = batch_sizes(service)
        assert (total - before[0], count - before[1]) == (2, 1)
        assert "Traceback" not in service.log()


def test_a_connection_closed_while_its_call_is_queued_leaves_it_out(forest_dir: Path) -> None:
    """A client ends its connection (TCP FIN: no RST_STREAM, no GOAWAY, no TCP reset) while its
    call waits for a batch: the model call joins the two other calls only, whose answers are
    their own, and the server serves on."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "3000", "MODELSHELF_MAX_BATCH_SIZE": "64"}
    with _serving(forest_dir, env) as service:
        requests = [_request(_rows(860 + i, 3)) for i in range(3)]
        alone = _one_by_one(service, requests)
        before = batch_sizes(service)
        raws = [_raw_call(service, request, {}) for request in requests]
        try:
            assert all(read_by_server(raw.sock) for raw in raws)  # queued, the wait not over
            raws[1].sock.shutdown(socket.SHUT_WR)
            assert raws[1].goaway_code() is None  # the server closes it, answering nothing
            answers = [_raw_outcome(raws[0]), _raw_outcome(raws[2])]
        finally:
            for raw in raws:
                raw.close()
        assert answers == [alone[0], alone[2]]
        assert wait_for(lambda: batch_sizes(service)[1] > before[1])
        total, count = batch_sizes(service)
        assert (total - before[0], count - before[1]) == (2, 1)
        assert _one_by_one(service, requests) == alone
        assert "Traceback" not in service.log()


def test_queued_answers_larger_than_the_send_window_arrive_whole(forest_dir: Path) -> None:
    """Two calls queued for one model call, from clients whose stream window is 4 KiB and
    connection window HTTP/2's 64 KiB, each answer ~96 KB: the server sends what the windows
    allow and the rest as the clients give window back; each answer is byte-equal to its own
    call's (from grpcio's client, with windows large enough)."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "1000", "MODELSHELF_MAX_BATCH_SIZE": "10000"}
    with _serving(forest_dir, env) as service:
        requests = [_request(_rows(880 + i, 4_000)) for i in range(2)]
        alone = _one_by_one(service, requests)
        assert all(len(answer) > 65_535 for _, answer in alone), [len(a) for _, a in alone]
        before = batch_sizes(service)
        raws = [_raw_call(service, request, {f.INITIAL_WINDOW_SIZE: 4096}) for request in requests]
        try:
            answers = [_raw_outcome(raw, replenish=True) for raw in raws]
        finally:
            for raw in raws:
                raw.close()
        assert answers == alone
        assert wait_for(lambda: batch_sizes(service)[1] > before[1])
        total, count = batch_sizes(service)
        assert (total - before[0], count - before[1]) == (2, 1)  # they were queued and joined
