"""``modelshelf serve`` says ready only once every port it serves accepts: polled from the start
in a tight loop, the first "ready" must find the gRPC port listening (it answered 2-15 ms before
the gRPC worker listened)."""

from __future__ import annotations

import dataclasses
import http.client
import socket
import time

import grpc
import httpx
import pytest
from frontends import COMPONENTS, MODELSHELF, Launch, finish, running, sklearn_launch, start
from tritonclient.grpc import service_pb2, service_pb2_grpc

from microservice import log_tail, seldon_parameters, wait_for_text

READY_PATHS = ["/v2/health/ready", "/v2/models/iris/ready", "/v1/models/iris", "/health/status"]


def first_ready_answer(service, path: str, timeout: float = 90) -> None:
    """Ask ``path`` again and again from the server's start until it answers 200."""
    deadline = time.monotonic() + timeout
    connection = None
    while time.monotonic() < deadline:
        assert service.process.poll() is None, log_tail(service.log_path)
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", service.http_port, timeout=30)
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                connection.close()
                return
            assert response.status in (503, 404) or path != "/v2/health/ready", response.status
        except (ConnectionError, http.client.HTTPException, OSError):
            if connection is not None:
                connection.close()
            connection = None  # the port is not bound yet, or was closed
    raise TimeoutError(f"{path} never answered 200:\n{log_tail(service.log_path)}")


@pytest.mark.parametrize("path", READY_PATHS)
@pytest.mark.parametrize("grpc_workers", [1, 2])
def test_the_first_ready_answer_finds_the_grpc_port_listening(sklearn_models, path, grpc_workers):
    launch = sklearn_launch(sklearn_models["iris"], model_name="iris")
    launch = dataclasses.replace(
        launch, grpc=True, extra_args=(*launch.extra_args, "--grpc-workers", str(grpc_workers))
    )
    service = start(launch, MODELSHELF)
    try:
        first_ready_answer(service, path)
        with socket.socket() as sock:  # at once: refused if no gRPC worker listens yet
            assert sock.connect_ex(("127.0.0.1", service.grpc_port)) == 0, path
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
    finally:
        finish(service)


def test_ready_again_once_a_dead_grpc_workers_replacement_listens():
    """The parent clears a dead gRPC worker's flag; its replacement (same slot) sets it again:
    readiness does not stay false after a worker that was replaced."""
    from google.protobuf import json_format
    from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

    crash = json_format.ParseDict({"jsonData": {"exit": 3}}, prediction_pb2.SeldonMessage())
    with running(Launch("CrashingModel", COMPONENTS, grpc=True), [MODELSHELF]) as (service,):
        assert service.get("/v2/health/ready").status_code == 200
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        with channel, pytest.raises(grpc.RpcError):  # the worker exits inside the call
            prediction_pb2_grpc.ModelStub(channel).Predict(crash, timeout=30)
        wait_for_text(service.log, "grpc worker replaced by")
        first_ready_answer(service, "/v2/health/ready")
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", service.grpc_port)) == 0


#: seldon-core's not-ready body, which ``/health/status`` answers (503) until every port listens.
NOT_READY = {
    "status": {
        "code": -1,
        "info": "the model is not loaded yet",
        "reason": "MICROSERVICE_NOT_READY",
        "status": 1,
    }
}


def not_ready_answers(launch: Launch, path: str) -> list[httpx.Response]:
    """Start ``launch`` (its gRPC worker loads late) and poll ``path`` until it answers 200,
    then the gRPC port must listen. The answers before: seldon-core's 503 not-ready body, and
    the log one INFO line, not an ERROR per poll."""
    service = start(dataclasses.replace(launch, grpc=True), MODELSHELF)
    try:
        wait_for_text(service.log, "gRPC worker loading late", timeout=60)
        not_ready = []
        deadline = time.monotonic() + 60
        while (answer := _status_or_none(service, path)) is None or answer.status_code != 200:
            assert time.monotonic() < deadline, log_tail(service.log_path)
            assert service.process.poll() is None, log_tail(service.log_path)
            if answer is not None:
                not_ready.append(answer)
            time.sleep(0.05)
        with socket.socket() as sock:  # at once: refused if the gRPC worker does not listen
            assert sock.connect_ex(("127.0.0.1", service.grpc_port)) == 0
        log = service.log()
    finally:
        finish(service)
    assert len(not_ready) >= 3, len(not_ready)  # polled while the gRPC worker loads (5 s)
    for answer in not_ready:
        assert answer.status_code == 503
        assert answer.json() == NOT_READY  # seldon-core's body, as it was
    assert " - ERROR: " not in log, log
    assert log.count("not ready yet") == 1, log
    return not_ready


def test_health_status_before_ready_is_a_quiet_503(sklearn_models):
    """A readiness probe polling ``/health/status`` during a normal start gets seldon's 503
    not-ready answer, and the log gets one INFO line, not an ERROR per poll."""
    params = seldon_parameters(model_uri=sklearn_models["iris"], grpc_load_seconds=5.0)
    launch = Launch("LateGrpcSKLearnServer", COMPONENTS, params)
    not_ready_answers(launch, "/health/status")


@pytest.mark.parametrize("path", ["/health/status", "/api/v1.0/health/status"])
def test_a_user_class_s_health_status_waits_for_the_grpc_port(path):
    """A user's own class (seldon-core answers its ``/health/status`` itself): under
    ``modelshelf serve`` it says ready only once the gRPC port listens, as our classes do,
    with the same quiet 503 meanwhile. It answered 200 while the gRPC worker still loaded."""
    launch = Launch("LateGrpcUserModel", COMPONENTS, seldon_parameters(grpc_load_seconds=5.0))
    for answer in not_ready_answers(launch, path):
        assert answer.headers["access-control-allow-origin"] == "*"  # flask-cors', as ever


def _status_or_none(service, path="/health/status"):
    """``path``'s answer (``/health/status``), or None while the REST port does not answer yet."""
    try:
        return service.client.get(path, timeout=5)
    except httpx.HTTPError:
        return None
