"""``modelshelf serve`` says ready only once every port it serves accepts: polled from the start
in a tight loop, the first "ready" must find the gRPC port listening (it answered 2-15 ms before
the gRPC worker listened)."""

from __future__ import annotations

import dataclasses
import http.client
import socket
import time

import grpc
import pytest
from frontends import MODELSHELF, finish, sklearn_launch, start
from tritonclient.grpc import service_pb2, service_pb2_grpc

from microservice import log_tail

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
