"""The bench's gRPC rows end to end: ``modelshelf serve`` started by the harness and loaded by
h2load (``bench.grpc_load``'s C client) or, without it, the Python client, figures in the raw
results and the report. No figure is held to a threshold; only that real calls were made,
counted and answered right, and that calls answered with a gRPC error count as errors."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

import models
from bench import grpc_load
from benchrun import run_bench
from microservice import BIN, SERVERS, free_ports, running_command, seldon_parameters

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make test and make bench install it)"
)
needs_h2load = pytest.mark.skipif(
    shutil.which("h2load") is None,
    reason="h2load is not installed (make test and make bench install nghttp2-client)",
)
IRIS_ROW = [[5.1, 3.5, 1.4, 0.2]]


def test_grpc_rows_are_measured_and_reported(tmp_path: Path) -> None:
    done = run_bench(tmp_path, BENCH_SYSTEMS="serve-sklearn-grpc-w1", BENCH_PARTS="rest")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    raw = json.loads((tmp_path / "results" / "latest.json").read_text())
    (run,) = raw["rest"]["runs"]["serve-sklearn-grpc-w1"]
    assert "error" not in run, run.get("error")
    assert run["cold_start_s"] > 0
    assert run["command"][1:3] == ["serve", "SKLearnServer"]
    for load, rows in (("single", 1), ("batch", 50)):
        figures = run[load]
        assert figures["requests"] > 0 and figures["errors"] == 0, figures
        assert figures["rows_per_request"] == rows
        assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert run["answer_checked"] == "a real gRPC call before and after each load"
    client = "h2load" if shutil.which("h2load") else "bench.grpc_load"
    assert run["load_client"] == client
    assert client.split(".")[-1] in raw["settings"]["grpc_load"]
    report = (tmp_path / "results" / "latest.md").read_text()
    assert "V2 gRPC**, 1 worker `serve-sklearn-grpc-w1`" in report
    assert "real gRPC client checks the answer (its rows) before and after each load" in report


@contextlib.contextmanager
def iris_server(tmp_path: Path) -> Iterator[str]:
    """``modelshelf serve`` SKLearnServer on the iris classifier; yields its gRPC address."""
    folder = models.save(models.iris_classifier(), tmp_path / "iris")
    http, grpc, metrics = free_ports(3)
    command = [
        str(BIN / "modelshelf"), "serve", "SKLearnServer",
        "--parameters", seldon_parameters(model_uri=str(folder)),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
    ]  # fmt: skip
    with running_command(
        command, SERVERS / "sklearnserver", None, http, grpc, metrics, health_path="/health/ping"
    ):
        yield f"127.0.0.1:{grpc}"


def iris_request(kind: str, model: str = "iris") -> bytes:
    """V2 requests from tritonclient's stubs: the test process cannot also register ours (the
    same proto names); the wire format is the same. Seldon's from seldon-core's."""
    if kind == grpc_load.SELDON_KIND:
        return grpc_load.request_bytes(model, kind, IRIS_ROW)
    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[1, 4])],
        raw_input_contents=[np.asarray(IRIS_ROW, dtype="<f8").tobytes()],
    )
    return request.SerializeToString()


def answered_rows(address: str, body: bytes, kind: str) -> tuple[bytes, int]:
    """One real gRPC call: the answer's bytes and how many rows it holds."""
    answer = grpc_load.call_once(address, body, grpc_load.method_of(kind))
    if kind == grpc_load.SELDON_KIND:
        return answer, grpc_load.rows_in_response(answer, kind)
    return answer, int(pb.ModelInferResponse.FromString(answer).outputs[0].shape[0])


@needs_h2load
@pytest.mark.parametrize("kind", ["v2", grpc_load.SELDON_KIND])
def test_h2load_loads_a_real_server(tmp_path: Path, kind: str) -> None:
    """h2load sends framed gRPC calls (V2 and Seldon protocol) that a real server answers: calls
    are counted, and a real gRPC client gets the right answer before and after."""
    body = iris_request(kind)
    request = tmp_path / "request.pb"
    request.write_bytes(body)
    request.with_suffix(".grpc").write_bytes(grpc_load.grpc_frame(body))
    method = grpc_load.method_of(kind)
    with iris_server(tmp_path) as address:
        grpc_load.warm_up(address, body, method, 3)  # the first Seldon answer has more metrics
        answer, rows = answered_rows(address, body, kind)
        assert rows == 1
        result = grpc_load.run_load(address, request, 1, 2, 1, method, len(answer))
        assert answered_rows(address, body, kind)[1] == 1
    assert result.requests_per_s > 0 and result.errors == 0, result
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    calls = (tmp_path / "request.h2load.log").read_text().splitlines()
    assert len(calls) == result.requests  # one log line per call, all with HTTP 200
    assert {line.split("\t")[1] for line in calls} == {"200"}


@needs_h2load
def test_h2load_counts_grpc_errors_as_errors(tmp_path: Path) -> None:
    """A gRPC error is HTTP 200 with ``grpc-status`` in trailers and no body: h2load calls it
    a success, the bench must not. Calls for a model the server does not have all fail."""
    wrong = tmp_path / "wrong.pb"
    wrong.with_suffix(".grpc").write_bytes(
        grpc_load.grpc_frame(iris_request("v2", model="no-such-model"))
    )
    with iris_server(tmp_path) as address:
        answer, _ = answered_rows(address, iris_request("v2"), "v2")
        result = grpc_load.run_load(address, wrong, 1, 2, 1, grpc_load.METHOD, len(answer))
    assert result.requests == 0
    assert result.errors > 0


def test_failed_calls_are_counted_as_errors(tmp_path: Path) -> None:
    """The Python fallback client: a request for a model the server does not have, so every
    call fails and none is counted."""
    request = pb.ModelInferRequest(
        model_name="no-such-model",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[1, 4])],
        raw_input_contents=[np.zeros(4).tobytes()],
    )
    body = tmp_path / "request.pb"
    body.write_bytes(request.SerializeToString())
    with iris_server(tmp_path) as address:
        result = grpc_load.run_grpc_load(address, body, 1, 2, 1)
    assert result.requests == 0
    assert result.errors > 0


def test_seldon_grpc_and_kserve_grpc_rows(tmp_path: Path) -> None:
    """Our Seldon protocol over gRPC (``Model/Predict``) and, where bench/peers/kserve exists,
    KServe's ModelServer over V2 gRPC: measured with the same generator, answers checked."""
    systems = "serve-sklearn-seldon-grpc-w1,kserve-sklearn-grpc-w1"
    peers = "1" if (Path(__file__).parents[2] / "bench/peers/kserve/bin/python").exists() else "0"
    done = run_bench(tmp_path, BENCH_SYSTEMS=systems, BENCH_PARTS="rest", BENCH_PEERS=peers)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    raw = json.loads((tmp_path / "results" / "latest.json").read_text())
    measured = raw["rest"]["runs"]
    names = ["serve-sklearn-seldon-grpc-w1"]
    if "kserve-sklearn-grpc-w1" not in (raw.get("unavailable") or {}):
        names.append("kserve-sklearn-grpc-w1")
    for name in names:
        (run,) = measured[name]
        assert "error" not in run, run.get("error")
        for load, rows in (("single", 1), ("batch", 50)):
            assert run[load]["requests"] > 0 and run[load]["errors"] == 0, run[load]
            assert run[load]["rows_per_request"] == rows
