"""Our single-threaded HTTP/2 gRPC server (``modelshelf.serve.http2``) against grpcio's server
built as ``grpc_worker`` builds it, same handler, same h2load load, in one run (ratios only).

``python -m bench.grpc_transport_probe [SECONDS]``: for each handler -- fixed bytes, and V2
``ModelInfer`` on the bench's iris LogisticRegression (one row, ``predict_proba``; and 1,000
rows) -- each server runs in a process of its own and h2load (``-t1 -c4 -m1``) loads it, after a
real gRPC client checked that both answer the same bytes; the table gives calls/s and the server's
CPU µs per call. This decided the go of the server (one quiet run, 1 row: grpcio 1,773 calls/s at
640 µs CPU per call, ours 4,828 at 206). On a busy shared machine a single-threaded server gets
a smaller share of the cores than grpcio's threads, so compare runs made while it is quiet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.grpc_load import METHOD, call_once, grpc_frame, h2load_command, request_bytes
from bench.models import batch_rows
from bench.procs import free_port

SERVERS = ("grpcio", "http2")
FIXED_METHOD = "/probe.Probe/Fixed"


def serve(kind: str, handler: str, model_dir: str, port: int) -> None:
    """In a child process: serve ``handler`` with ``kind``'s server until killed."""
    import grpc

    from modelshelf.serve.grpc_worker import build_grpc_server

    if handler == "fixed":
        answer = b"\x08\x01" * 20
        generic = grpc.method_handlers_generic_handler(
            "probe.Probe", {"Fixed": grpc.unary_unary_rpc_method_handler(lambda r, c: answer)}
        )
        register = [generic]
    else:
        from modelshelf.frameworks.sklearn import SKLearnServer
        from modelshelf.serve.inference import InferenceCore

        model = SKLearnServer(model_uri=model_dir)
        model.load()
        core = InferenceCore(model, "sklearn")
        register = core
    if kind == "grpcio":
        server = build_grpc_server({}, 1)
        _register(server, register)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()
        return
    import asyncio

    import uvloop

    from modelshelf.serve.http2.grpc_server import GrpcServer

    async def main() -> None:
        server = GrpcServer(1)
        _register(server, register)
        await server.start("127.0.0.1", port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def _register(server: Any, register: Any) -> None:
    """``register``: grpcio generic handlers, or the ``InferenceCore`` to serve V2 for."""
    if isinstance(register, list):
        server.add_generic_rpc_handlers(register)
    else:
        from modelshelf.serve.grpc_v2 import add_inference_service

        add_inference_service(server, register)


def measure(
    kind: str, handler: str, model_dir: str, body: bytes, method: str, seconds: int
) -> tuple[float, float, bytes]:
    """``kind`` serving ``handler`` under h2load: calls/s, server CPU µs per call, the answer."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.grpc_transport_probe", "--serve", kind, handler, model_dir,
         str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} server did not start")
        answer = call_once(f"127.0.0.1:{port}", body, method)  # a real client's check
        with tempfile.TemporaryDirectory() as work:
            frame_file = Path(work) / "request.grpc"
            frame_file.write_bytes(grpc_frame(body))
            log = Path(work) / "h2load.log"
            warm = h2load_command(f"127.0.0.1:{port}", frame_file, 1, 4, method, log)
            subprocess.run(warm, capture_output=True, check=True)
            before = _cpu(child.pid)
            command = h2load_command(f"127.0.0.1:{port}", frame_file, seconds, 4, method, log)
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            cpu = _cpu(child.pid) - before
        found = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded",
                          done.stdout)  # fmt: skip
        calls = int(found.group(2))
        return calls / seconds, cpu / max(calls, 1) * 1e6, answer
    finally:
        child.kill()
        child.wait()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(seconds: int) -> None:
    from bench.models import make_models

    root = Path(tempfile.mkdtemp(prefix="grpc-probe-"))
    models = make_models(root, 100, frozenset({"sklearn"}))
    cases = [
        ("fixed", "fixed bytes", b"\x0a\x03abc", FIXED_METHOD),
        ("v2", "V2 ModelInfer, 1 row", request_bytes("sklearn", "v2-proba", batch_rows(1)),
         METHOD),
        ("v2", "V2 ModelInfer, 1,000 rows", request_bytes("sklearn", "v2-proba", batch_rows(1000)),
         METHOD),
    ]  # fmt: skip
    print(
        "| handler | grpcio calls/s | http2 calls/s | ratio "
        "| grpcio CPU µs/call | http2 CPU µs/call |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for handler, label, body, method in cases:
        found = {
            kind: measure(kind, handler, str(models.sklearn), body, method, seconds)
            for kind in SERVERS
        }
        (a_rate, a_cpu, a_answer), (b_rate, b_cpu, b_answer) = found["grpcio"], found["http2"]
        if a_answer != b_answer:
            raise RuntimeError(f"{label}: the servers' answers differ")
        print(f"| {label} | {a_rate:,.0f} | {b_rate:,.0f} | {b_rate / a_rate:.2f}x | "
              f"{a_cpu:,.0f} | {b_cpu:,.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
