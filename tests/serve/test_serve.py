"""``modelshelf serve`` as a process: workers, load, SIGTERM, start-up failures, clients."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from frontends import COMPONENTS, MODELSHELF, Launch, running
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

from microservice import BIN, SERVERS, run_to_exit, seldon_parameters, wait_for_text

ND = {"data": {"ndarray": [[1.0, 2.0, 3.0, 4.0]]}}


@pytest.fixture(scope="module")
def two_workers():
    launch = Launch("SleepyModel", COMPONENTS, extra_args=("--workers", "2"), grpc=True)
    with running(launch, [MODELSHELF]) as (service,):
        yield service


def test_workers_share_the_port_and_each_loads_the_model_once(two_workers):
    pids = set()
    deadline = time.monotonic() + 60  # under load the second worker may still be loading
    while len(pids) < 2 and time.monotonic() < deadline:
        # A new connection each time: the kernel spreads them over the workers listening.
        for _ in range(20):
            body = httpx.post(f"{two_workers.url}/api/v1.0/predictions", json=ND).json()
            tags = body["meta"]["tags"]
            assert tags["loads"] == 1, tags
            pids.add(tags["pid"])
        if len(pids) < 2:
            time.sleep(0.5)
    assert len(pids) == 2
    assert two_workers.process.pid not in pids
    assert "server" not in httpx.get(f"{two_workers.url}/health/ping").headers  # uvicorn's


def test_bounded_load_has_no_failures(two_workers):
    """2,000 requests over 4 keep-alive connections: every one 200 with the right body."""
    body = json.dumps(ND)
    headers = {"Content-Type": "application/json"}

    def send(count: int) -> list[tuple[int, object]]:
        connection = http.client.HTTPConnection("127.0.0.1", two_workers.http_port, timeout=30)
        answers = []
        try:
            for _ in range(count):
                connection.request("POST", "/api/v1.0/predictions", body, headers)
                response = connection.getresponse()
                answers.append((response.status, json.loads(response.read())["data"]["ndarray"]))
        finally:
            connection.close()
        return answers

    with ThreadPoolExecutor(4) as pool:
        answers = [a for chunk in pool.map(send, [500] * 4) for a in chunk]
    assert len(answers) == 2000
    assert all(answer == (200, ND["data"]["ndarray"]) for answer in answers)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldon_client(two_workers, transport):
    port = two_workers.http_port if transport == "rest" else two_workers.grpc_port
    client = SeldonClient(microservice_endpoint=f"127.0.0.1:{port}")
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    result = client.microservice(data=X, method="predict", transport=transport)
    assert result.success, result.msg
    body = json_format.MessageToDict(result.response)
    found = body["data"].get("tensor") or body["data"]
    np.testing.assert_array_equal(np.array(found["values"]).reshape(2, 2), X)


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(two_workers):
    """SIGTERM to the parent alone, as a launcher (PID 1) forwards it. Runs last on the fixture."""
    service = two_workers
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            service.post("/api/v1.0/predictions", {"jsonData": {"sleep": 2.0}})
        )
    )
    request.start()
    # Signal only once the request is inside the model: a request still queued in a socket
    # when the worker stops is closed unanswered by any server (the orchestrator stops
    # routing to a pod before it sends SIGTERM).
    wait_for_text(service.log, "SleepyModel")
    started = time.monotonic()
    os.kill(service.process.pid, signal.SIGTERM)
    request.join(15)
    code = service.process.wait(15)
    elapsed = time.monotonic() - started
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["jsonData"] == {"sleep": 2.0}
    assert code == 0, service.log()[-3000:]
    assert elapsed < 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{service.url}/health/ping", timeout=2)


def test_a_class_that_cannot_be_imported_stops_start_up_with_the_cause():
    result = run_to_exit(
        [*MODELSHELF, "NoSuchClass", "--http-port", "0", "--grpc-workers", "0"], COMPONENTS
    )
    assert result.returncode == 1, result.stdout
    assert "No module named 'NoSuchClass'" in result.stdout


def test_a_model_that_cannot_load_stops_start_up_with_the_cause(tmp_path):
    params = seldon_parameters(model_uri=str(tmp_path / "missing"))
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", params, "--grpc-workers", "0"],
        SERVERS / "sklearnserver",
    )
    assert result.returncode == 1, result.stdout
    assert str(tmp_path / "missing") in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "modelshelf"), "serve", "--help"],
        [sys.executable, "-m", "modelshelf.serve", "-h"],
    ],
)
def test_help_lists_seldon_core_microservice_options(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--service-type", "--parameters", "--http-port", "--grpc-port", "--workers"):
        assert option in result.stdout
    assert "OUTPUT_TRANSFORMER" in result.stdout


def test_modelshelf_frontend_seldon_runs_seldon_core_microservice():
    launch = Launch("ScoringModel", COMPONENTS)
    env = {"MODELSHELF_FRONTEND": "seldon"}
    with running(launch, [MODELSHELF], env=env) as (service,):
        response = service.post("/api/v1.0/predictions", ND)
        assert response.status_code == 200
        assert response.headers.get("server", "").startswith("gunicorn")


def test_modelshelf_frontend_seldon_without_the_venv_on_path():
    """``.venv/bin/modelshelf serve`` with the venv not activated: seldon-core-microservice is
    the one beside the interpreter (it was a FileNotFoundError traceback)."""
    launch = Launch("ScoringModel", COMPONENTS)
    env = {"MODELSHELF_FRONTEND": "seldon", "PATH": "/usr/bin:/bin"}
    with running(launch, [MODELSHELF], env=env) as (service,):
        response = service.post("/api/v1.0/predictions", ND)
        assert response.status_code == 200
        assert response.headers.get("server", "").startswith("gunicorn")


def test_a_class_names_that_raises_is_found_at_load_not_per_request():
    """seldon-core's wrapper answers every 2-D prediction with a 500 when ``class_names()``
    raises; modelshelf serve calls it once at load, says so in a WARNING, and answers without
    names (``t:0``…) on every protocol."""
    launch = Launch("BrokenClassNamesModel", COMPONENTS)
    with running(launch, [MODELSHELF]) as (service,):
        for _ in range(3):
            answer = service.client.post(
                "/api/v1.0/predictions", json={"data": {"ndarray": [[1.0, 2.0]]}}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"] == {"names": ["t:0", "t:1"], "ndarray": [[2.0, 4.0]]}
        v2 = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]}]}
        answer = service.client.post("/v2/models/BrokenClassNamesModel/infer", json=v2)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [2.0, 4.0]
        log = service.log()
        warning = "BrokenClassNamesModel.class_names() raised RuntimeError: names table missing"
        assert log.count(warning) == 1, log[-3000:]
        assert "Traceback" not in log
