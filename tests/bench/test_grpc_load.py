"""The bench's V2 gRPC rows end to end: ``modelshelf serve`` started by the harness and loaded
by ``bench.grpc_load`` (a process of its own), figures in the raw results and the report. No
figure is held to a threshold; only that real calls were made, counted and answered right."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bench.grpc_load import run_grpc_load
from tritonclient.grpc import service_pb2 as pb

import models
from benchrun import run_bench
from microservice import BIN, SERVERS, free_ports, running_command, seldon_parameters

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make test and make bench install it)"
)


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
    report = (tmp_path / "results" / "latest.md").read_text()
    assert "V2 gRPC**, 1 worker `serve-sklearn-grpc-w1`" in report


def test_failed_calls_are_counted_as_errors(tmp_path: Path) -> None:
    """A request for a model the server does not have: every call fails, none is counted."""
    request = pb.ModelInferRequest(
        model_name="no-such-model",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[1, 4])],
        raw_input_contents=[np.zeros(4).tobytes()],
    )
    body = tmp_path / "request.pb"
    body.write_bytes(request.SerializeToString())
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
        result = run_grpc_load(f"127.0.0.1:{grpc}", body, 1, 2, 1)
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
