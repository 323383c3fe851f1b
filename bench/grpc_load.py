"""Load for the gRPC rows (V2 and our Seldon protocol): what wrk is to the REST systems.

The load generator is ``h2load`` (nghttp2's HTTP/2 benchmark, in C), so the client costs little
CPU beside the server on the same cores, as wrk does for REST; a Python gRPC client costs about as
much per call as the servers do and compressed every ratio. gRPC is HTTP/2: every call is a POST
to ``/<service>/<method>`` with ``content-type: application/grpc`` and ``te: trailers`` whose body
is one gRPC frame (flag 0, 4-byte big-endian length, the serialized request). h2load counts HTTP
statuses and cannot read ``grpc-status`` in the trailers, so a call counts as answered only if its
body bytes add up to a full answer (the answer of a real client call made before the load: a
trailers-only error has no body), and a real client checks the answer again before and after.

Without h2load, ``python -m bench.grpc_load ADDRESS REQUEST_FILE SECONDS CONNECTIONS [METHOD]``
(gRPC's generic API on asyncio, a process of its own) sends the same bytes; results record which
client measured. Both keep ``CONNECTIONS`` HTTP/2 connections with one call in flight each, as
wrk keeps one request per connection, and both print or yield the same ``LoadResult``. The
harness builds the requests and checks answers with our stubs.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
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
    array = np.asarray(rows, dtype="<f8")
    if kind == SELDON_KIND:
        from seldon_core.proto import prediction_pb2

        message = prediction_pb2.SeldonMessage()
        message.data.tensor.shape.extend(array.shape)
        message.data.tensor.values.extend(array.ravel().tolist())
        return message.SerializeToString()
    from modelshelf.serve.v2_grpc import open_inference_grpc_pb2 as pb

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


def checked_answer(address: str, body: bytes, method: str, kind: str, rows: int) -> bytes:
    """One call from a real gRPC client, whose answer must hold ``rows`` rows (a wrong answer
    raises): the check h2load cannot make, as it never reads ``grpc-status``."""
    answer = call_once(address, body, method)
    found = rows_in_response(answer, kind)
    if found != rows:
        raise RuntimeError(f"wrong answer from {address}: {found} rows, expected {rows}")
    return answer


def measure_once(system: Any, models: Any, cfg: Any) -> dict:
    """``bench.run.measure_once`` for a gRPC system (``system.path`` is the model's name): start
    it, time its first prediction, warm it, read its memory, check an answer, load it, check an
    answer again, stop it."""
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
        path.with_suffix(".grpc").write_bytes(grpc_frame(body))
        bodies[load] = (path, body, len(rows))
    server = procs.start(
        command, system.cwd, system.process_env(), cfg.work / "logs" / f"{system.name}.log"
    )
    try:
        kind, method = system.payload, method_of(system.payload)
        cold = first_prediction(server, address, bodies["single"][1], len(SINGLE_ROW), kind)
        warm_up(address, bodies["single"][1], method)
        warm_up(address, bodies["batch"][1], method, 10)
        answers = {
            load: checked_answer(address, body, method, kind, rows)
            for load, (_, body, rows) in bodies.items()
        }
        results: dict[str, Any] = {
            "cold_start_s": round(cold, 3),
            "memory": procs.tree_memory(server.process.pid),
            "load_client": load_client(),
        }
        for load, (path, body, rows) in bodies.items():
            outcome = run_load(
                address, path, cfg.duration, cfg.connections, rows, method, len(answers[load])
            )
            checked_answer(address, body, method, kind, rows)
            results[load] = outcome.to_dict()
        results["answer_checked"] = "a real gRPC call before and after each load"
        results["command"] = command
        return results
    finally:
        procs.stop(server, timeout=1)


# ----------------------------------------------------------------------------- h2load

#: A gRPC call as h2load sends it (the body file holds the framed request).
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
#: gRPC's frame header before each message: compressed flag, 4-byte big-endian length.
FRAME_HEADER_BYTES = 5


def h2load_path() -> str | None:
    return shutil.which("h2load")


def load_client() -> str:
    """Which client loads the gRPC rows here: h2load, or the Python fallback without it."""
    return "h2load" if h2load_path() else "bench.grpc_load"


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_command(
    address: str, frame_file: Path, duration: int, connections: int, method: str, log_file: Path
) -> list[str]:
    """``connections`` HTTP/2 connections, one call in flight on each (``-m1``), as wrk and the
    Python client keep one request per connection."""
    command = [h2load_path() or "h2load", "-t1", f"-c{connections}", "-m1", f"-D{duration}"]
    for header in GRPC_HEADERS:
        command += ["-H", header]
    return [
        *command,
        "-d",
        str(frame_file),
        "--log-file",
        str(log_file),
        f"http://{address}{method}",
    ]


def run_load(
    address: str,
    request_file: Path,
    duration: int,
    connections: int,
    rows_per_request: int,
    method: str,
    answer_bytes: int,
) -> LoadResult:
    """Load with h2load when installed (``request_file`` with suffix ``.grpc`` holds the framed
    request), else with the Python client. ``answer_bytes``: the size of a right answer after
    warm-up (a server's first answer may differ: our Seldon gRPC's carries one-time metrics)."""
    if h2load_path() is None:
        return run_grpc_load(address, request_file, duration, connections, rows_per_request, method)
    return run_h2load(
        address,
        request_file.with_suffix(".grpc"),
        duration,
        connections,
        rows_per_request,
        method,
        answer_bytes,
    )


def run_h2load(
    address: str,
    frame_file: Path,
    duration: int,
    connections: int,
    rows_per_request: int,
    method: str,
    answer_bytes: int,
) -> LoadResult:
    """Run h2load against ``address`` for ``duration`` seconds and read its summary and log."""
    log_file = frame_file.with_suffix(".h2load.log")
    log_file.unlink(missing_ok=True)
    command = h2load_command(address, frame_file, duration, connections, method, log_file)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0 or not log_file.exists():
        raise RuntimeError(
            f"h2load failed (exit {done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}"
        )
    return h2load_result(done.stdout, log_file.read_text(), rows_per_request, answer_bytes)


_DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def h2load_result(summary: str, log: str, rows_per_request: int, answer_bytes: int) -> LoadResult:
    """``summary``: h2load's output; ``log``: its ``--log-file`` (start, status, µs per call).

    A call counts as answered when it has HTTP status 200 and its share of the body bytes
    received (h2load's ``data`` traffic) is a full answer of ``answer_bytes``: a gRPC error
    comes as status 200 with ``grpc-status`` in trailers and no body. Every other call
    (other statuses, streams that failed: status -1) is an error."""
    received = re.search(r"^traffic: .*\((\d+)\) data$", summary, re.MULTILINE)
    finished = re.search(r"^finished in ([\d.]+)(s|ms|us),", summary, re.MULTILINE)
    if received is None or finished is None:
        raise RuntimeError(f"h2load gave no summary: {summary[-800:]}")
    calls = [line.split("\t") for line in log.splitlines() if line.strip()]
    latencies = [int(call[2]) for call in calls if call[1] == "200"]
    with_body = round(int(received.group(1)) / (answer_bytes + FRAME_HEADER_BYTES))
    answered = min(len(latencies), with_body)
    found = np.array(latencies or [0]) / 1000
    p50, p90, p99 = np.percentile(found, [50, 90, 99])
    return LoadResult(
        requests=answered,
        seconds=float(finished.group(1)) * _DURATION_UNITS[finished.group(2)],
        errors=len(calls) - answered,
        p50_ms=round(float(p50), 3),
        p90_ms=round(float(p90), 3),
        p99_ms=round(float(p99), 3),
        max_ms=round(float(found.max()), 3),
        rows_per_request=rows_per_request,
    )


# ----------------------------------------------------------------------------- Python client


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
