"""``modelshelf serve`` replaces a REST worker that dies, and stops only when workers keep dying."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import httpx
import pytest
from frontends import COMPONENTS, MODELSHELF, Launch, running

from microservice import free_port, run_to_exit, seldon_parameters, started, wait_for_text

CRASH = {"jsonData": {"exit": 3}}
HELLO = {"jsonData": {"hello": 1}}


def _pid(service) -> int:
    response = service.post("/api/v1.0/predictions", HELLO)
    assert response.status_code == 200, response.text
    return response.json()["jsonData"]["pid"]


def test_a_request_that_kills_the_worker_does_not_end_the_server():
    launch = Launch("CrashingModel", COMPONENTS)
    env = {"MODELSHELF_MAX_WORKER_RESTARTS": "3"}
    with running(launch, [MODELSHELF], env=env) as (service,):
        first = _pid(service)
        for crash in range(1, 4):
            with pytest.raises(httpx.HTTPError):  # the connection dies with the worker
                service.post("/api/v1.0/predictions", CRASH)
            wait_for_text(service.log, f"{crash} replacement(s) in the last 60 s")
            # The next requests are answered by the new worker (queued on the kept socket).
            answers = {_pid(service) for _ in range(3)}
            assert len(answers) == 1 and first not in answers
            assert service.process.poll() is None
        # A fourth death within the minute: workers keep dying, the server stops (exit 1).
        with pytest.raises(httpx.HTTPError):
            service.post("/api/v1.0/predictions", CRASH)
        assert service.process.wait(30) == 1
        log = service.log()
        assert "workers keep dying: 3 replaced in the last 60 s" in log
        assert "MODELSHELF_MAX_WORKER_RESTARTS=3" in log
        assert "rest worker" in log and "exited with code 3" in log


def test_a_worker_that_cannot_load_stops_the_server_without_retrying():
    params = seldon_parameters(fail_load=True)
    ports = ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
    result = run_to_exit(
        [*MODELSHELF, "CrashingModel", "--parameters", params, "--grpc-workers", "0", *ports],
        COMPONENTS,
        timeout=90,
    )
    assert result.returncode == 1, result.stdout
    assert "CrashingModel cannot load (fail_load)" in result.stdout
    assert "the rest worker died before it served" in result.stdout
    assert "replaced by" not in result.stdout


def test_a_grpc_worker_that_never_listens_stops_the_server_however_slowly_it_fails():
    """The gRPC port is held by a socket without SO_REUSEPORT: every gRPC worker loads (7 s)
    and then fails to bind. At 7 s an attempt the per-minute window never filled (10 allowed):
    it was replaced for ever, the server live but never ready. Now it stops (exit 1) at once."""
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen(1)
        grpc_port = holder.getsockname()[1]
        params = seldon_parameters(load_seconds=7.0)
        ports = ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
        ports += ["--grpc-port", str(grpc_port)]
        command = [*MODELSHELF, "CrashingModel", "--parameters", params, "--grpc-workers", "1"]
        result = run_to_exit([*command, *ports], COMPONENTS, timeout=45)
    assert result.returncode == 1, result.stdout
    assert "address already in use" in result.stdout
    assert re.search(
        r"stopping the server: the grpc worker \d+ died before it listened", result.stdout
    )
    assert "replaced by" not in result.stdout


def test_sigterm_while_a_worker_loads_stops_the_server_at_once():
    """A worker still loading its model has nothing in flight: SIGTERM (a rollout, a scale-down)
    ends it and the server at once, not after the parent's hard limit (STOP_SECONDS, 9 s)."""
    params = seldon_parameters(load_seconds=120)
    ports = ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
    command = [*MODELSHELF, "CrashingModel", "--parameters", params, "--grpc-workers", "0", *ports]
    with started(command, COMPONENTS) as (process, log):
        wait_for_text(log.read_text, ": loading", timeout=60)
        worker = int(re.search(r"CrashingModel (\d+): loading", log.read_text())[1])
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        assert time.monotonic() - signalled < 5, log.read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)


def test_sigterm_as_a_worker_finishes_loading_stops_the_server_at_once():
    """A SIGTERM that reaches a worker as its ``load()`` returns, before its server takes the
    signal, still ends it at once: nothing is in flight yet (it was ignored there, and the
    parent waited its hard limit, STOP_SECONDS, then killed the worker)."""
    params = seldon_parameters(stop_after_load=True)
    ports = ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
    command = [*MODELSHELF, "CrashingModel", "--parameters", params, "--grpc-workers", "0", *ports]
    with started(command, COMPONENTS) as (process, log):
        assert process.wait(30) == 0, log.read_text()
        assert "killing" not in log.read_text()


def test_a_grpc_worker_that_dies_is_replaced():
    import grpc
    from google.protobuf import json_format
    from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

    def predict(port: int, body: dict) -> dict:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_pb2_grpc.ModelStub(channel)
            message = json_format.ParseDict(body, prediction_pb2.SeldonMessage())
            answer = stub.Predict(message, timeout=30)
        return json_format.MessageToDict(answer)

    launch = Launch("CrashingModel", COMPONENTS, grpc=True)
    with running(launch, [MODELSHELF]) as (service,):
        first = predict(service.grpc_port, HELLO)["jsonData"]["pid"]
        with pytest.raises(grpc.RpcError):
            predict(service.grpc_port, CRASH)
        wait_for_text(service.log, "grpc worker replaced by")
        deadline = time.monotonic() + 60  # the new worker binds the port once it has loaded
        while True:
            try:
                second = predict(service.grpc_port, HELLO)["jsonData"]["pid"]
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert second != first
        _pid(service)  # REST answers throughout
        assert service.process.poll() is None
