"""Load for the Open Inference Protocol's gRPC service: what wrk is to the REST systems.

``python -m bench.grpc_load ADDRESS REQUEST_FILE SECONDS CONNECTIONS [METHOD]`` sends one
serialized ``ModelInferRequest`` (or, to ``METHOD``, any request) over and over for ``SECONDS``:
``CONNECTIONS`` channels, each its own HTTP/2 connection with one call in flight (as wrk keeps
one request per connection), on asyncio in a process of its own. It sends and receives bytes
(gRPC's generic API), so the same generator loads any V2 gRPC server, ours, MLServer's and
KServe's alike, and our Seldon-protocol gRPC, and costs no protobuf work per call. When done it
prints wrk's line (``bench.load.MARKER`` + JSON), which ``run_grpc_load`` reads into the same
``LoadResult``. The harness itself builds the requests and checks answers with our stubs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.load import MARKER, LoadResult, load_result
from bench.procs import Server

METHOD = "/inference.GRPCInferenceService/ModelInfer"
#: Payload kind of the Seldon protocol's gRPC (``seldon.protos.Model/Predict``, a SeldonMessage
#: whose ``data.tensor`` holds the rows): our own Seldon path, beside V2 gRPC on the same server.
SELDON_KIND = "seldon-grpc"
SELDON_METHOD = "/seldon.protos.Model/Predict"
#: A channel of its own per connection: gRPC otherwise shares one subchannel between channels.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
CALL_TIMEOUT_S = 10
#: While waiting for a starting server: retry a refused connection within 20-50 ms. gRPC's
#: default reconnect backoff (1 s, growing) counted up to ~1.5 s of the client's waiting as the
#: server's cold start, for every gRPC system alike.
STARTING_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 50),
]


def method_of(kind: str) -> str:
    return SELDON_METHOD if kind == SELDON_KIND else METHOD


def request_bytes(model_name: str, kind: str, rows: list[list[float]]) -> bytes:
    """A ``ModelInferRequest`` for ``rows`` as one FP64 input in ``raw_input_contents`` (what
    tritonclient sends); ``kind`` ``v2-proba`` asks for ``predict_proba`` as the REST bodies do;
    ``seldon-grpc``: a SeldonMessage with the rows as ``data.tensor``."""
    from modelshelf.serve.v2_grpc import open_inference_grpc_pb2 as pb

    array = np.asarray(rows, dtype="<f8")
    if kind == SELDON_KIND:
        from seldon_core.proto import prediction_pb2

        message = prediction_pb2.SeldonMessage()
        message.data.tensor.shape.extend(array.shape)
        message.data.tensor.values.extend(array.ravel().tolist())
        return message.SerializeToString()
    request = pb.ModelInferRequest(model_name=model_name)
    request.inputs.add(name="input-0", datatype="FP64", shape=list(array.shape))
    request.raw_input_contents.append(array.tobytes())
    if kind == "v2-proba":
        request.outputs.add(name="predict_proba")
    return request.SerializeToString()


def rows_in_response(answer: bytes, kind: str = "v2") -> int:
    if kind == SELDON_KIND:
        from seldon_core.proto import prediction_pb2

        return int(prediction_pb2.SeldonMessage.FromString(answer).data.tensor.shape[0])
    from modelshelf.serve.v2_grpc import open_inference_grpc_pb2 as pb

    response = pb.ModelInferResponse.FromString(answer)
    return int(response.outputs[0].shape[0])


def call_once(address: str, body: bytes, method: str, timeout: float = CALL_TIMEOUT_S) -> bytes:
    with grpc.insecure_channel(address) as channel:
        return channel.unary_unary(method)(body, timeout=timeout)


def first_prediction(
    server: Server, address: str, body: bytes, rows: int, kind: str, timeout: float = 180
) -> float:
    """Seconds from start until ``address`` answers ``body`` with ``rows`` rows (a wrong answer
    raises: a server answering fast but wrongly never counts as ready)."""
    deadline = server.started + timeout
    last = "no answer yet"
    with grpc.insecure_channel(address, options=STARTING_OPTIONS) as channel:
        infer = channel.unary_unary(method_of(kind))
        while time.monotonic() < deadline:
            server.raise_if_exited()
            try:
                answer = infer(body, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                last = f"{exc.code()}: {exc.details()}"  # type: ignore[attr-defined]
                time.sleep(0.02)
                continue
            elapsed = time.monotonic() - server.started
            found = rows_in_response(answer, kind)
            if found != rows:
                raise RuntimeError(f"wrong answer from {address}: {found} rows, expected {rows}")
            return elapsed
    raise TimeoutError(f"no prediction from {address} within {timeout} s ({last})")


def warm_up(address: str, body: bytes, method: str, requests: int = 30) -> None:
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary(method)
        for _ in range(requests):
            infer(body, timeout=CALL_TIMEOUT_S)


def measure_once(system: Any, models: Any, cfg: Any) -> dict:
    """``bench.run.measure_once`` for a gRPC system (``system.path`` is the model's name): start
    it, time its first prediction, warm it, read its memory, load it, stop it."""
    from bench import procs
    from bench.models import SINGLE_ROW, batch_rows
    from bench.systems import Ports

    ports = Ports(procs.free_port(), procs.free_port(), procs.free_port())
    address = f"127.0.0.1:{ports.grpc}"
    command = system.command(ports, models, cfg.work)
    requests = cfg.work / "grpc"
    requests.mkdir(parents=True, exist_ok=True)
    bodies = {}
    for load, rows in (("single", SINGLE_ROW), ("batch", batch_rows(cfg.batch_rows))):
        body = request_bytes(system.path, system.payload, rows)
        path = requests / f"{system.name}-{load}.pb"
        path.write_bytes(body)
        bodies[load] = (path, body, len(rows))
    server = procs.start(
        command, system.cwd, system.process_env(), cfg.work / "logs" / f"{system.name}.log"
    )
    try:
        kind, method = system.payload, method_of(system.payload)
        cold = first_prediction(server, address, bodies["single"][1], len(SINGLE_ROW), kind)
        warm_up(address, bodies["single"][1], method)
        warm_up(address, bodies["batch"][1], method, 10)
        found = rows_in_response(call_once(address, bodies["batch"][1], method), kind)
        if found != cfg.batch_rows:
            raise RuntimeError(f"batch answer wrong: {found} rows, expected {cfg.batch_rows}")
        results: dict[str, Any] = {
            "cold_start_s": round(cold, 3),
            "memory": procs.tree_memory(server.process.pid),
        }
        for load, (path, _, rows) in bodies.items():
            outcome = run_grpc_load(address, path, cfg.duration, cfg.connections, rows, method)
            results[load] = outcome.to_dict()
        results["command"] = command
        return results
    finally:
        procs.stop(server, timeout=1)


def run_grpc_load(
    address: str,
    request_file: Path,
    duration: int,
    connections: int,
    rows_per_request: int,
    method: str = METHOD,
) -> LoadResult:
    """Run the generator in its own process and read its result line."""
    command = [
        sys.executable, "-m", "bench.grpc_load",
        address, str(request_file), str(duration), str(connections), method,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    return load_result(done, "bench.grpc_load", ("errors",), rows_per_request)


async def _generate(
    address: str, body: bytes, seconds: float, connections: int, method: str
) -> dict:
    channels = [
        grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for _ in range(connections)
    ]
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter
    started = clock()
    end = started + seconds

    async def connection(channel: grpc.aio.Channel) -> None:
        nonlocal errors
        infer = channel.unary_unary(method)
        while (sent := clock()) < end:
            try:
                await infer(body, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(clock() - sent)

    try:
        await asyncio.gather(*(connection(channel) for channel in channels))
    finally:
        for channel in channels:
            await channel.close()
    elapsed = clock() - started
    found = np.array(latencies or [0.0]) * 1e6
    p50, p90, p99 = np.percentile(found, [50, 90, 99])
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "errors": errors,
        "p50_us": int(p50),
        "p90_us": int(p90),
        "p99_us": int(p99),
        "max_us": int(found.max()),
    }


def main(argv: list[str]) -> int:
    address, request_file, seconds, connections, *method = argv
    body = Path(request_file).read_bytes()
    result = asyncio.run(
        _generate(address, body, float(seconds), int(connections), (method or [METHOD])[0])
    )
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
