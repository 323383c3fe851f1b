"""Adaptive batching of V2 gRPC on ``modelshelf serve``: single-row ``ModelInfer`` under h2load,
batching on against ``MODELSHELF_MAX_BATCH_SIZE=1``, both servers up at once (1 REST + 1 gRPC
worker each), rounds interleaved (which goes first alternates), at 16 and 1 connections; prints
each round, the medians (req/s, p99) and the ratio, and the batch-size metric's sum and count.
Needs h2load and the realistic bench's models (``bench/work/realistic/models``, or
``BENCH_MODELS``).

    PYTHONPATH=. .venv/bin/python bench/profiles/grpc_batching_probe.py \
        random_forest|xgboost_300x6 [ROUNDS=5] [SECONDS=8] [v2|seldon]

``seldon``: Seldon-protocol ``Predict`` calls (a ``tensor``) instead of V2 ``ModelInfer``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
from bench.grpc_load import (
    METHOD,
    SELDON_KIND,
    SELDON_METHOD,
    grpc_frame,
    h2load_command,
    h2load_result,
    request_bytes,
)

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("BENCH_MODELS", REPO / "bench/work/realistic/models"))
CLASSES = {
    "random_forest": ("SKLearnServer", "sklearnserver", "v2-proba"),
    "xgboost_300x6": ("XGBoostServer", "xgboostserver", "v2"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, env_extra: dict, log: Path) -> tuple[subprocess.Popen, str, int]:
    cls, folder, _ = CLASSES[model]
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    params = [{"name": "model_uri", "value": str(MODELS / model), "type": "STRING"}]
    command = [
        str(REPO / ".venv/bin/modelshelf"), "serve", cls, "--service-type", "MODEL",
        "--parameters", json.dumps(params), "--http-port", str(http), "--grpc-port",
        str(grpc_port), "--metrics-port", str(metrics), "--workers", "1", "--grpc-workers", "1",
        "--model-name", "m",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=REPO / "servers" / folder,
        env=os.environ | env_extra,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, f"127.0.0.1:{grpc_port}", metrics


def wait_ready(address: str, body: bytes, method: str) -> bytes:
    """The answer after warm-up (a Seldon answer's first carries one-time metrics)."""
    deadline = time.monotonic() + 120
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary(method)
        while time.monotonic() < deadline:
            try:
                infer(body, timeout=10)
                for _ in range(50):
                    infer(body, timeout=10)
                return infer(body, timeout=10)
            except grpc.RpcError:
                time.sleep(0.1)
    raise TimeoutError(address)


def main() -> None:
    model = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    seldon = len(sys.argv) > 4 and sys.argv[4] == "seldon"
    kind = SELDON_KIND if seldon else CLASSES[model][2]
    method = SELDON_METHOD if seldon else METHOD
    work = Path(tempfile.mkdtemp(prefix="grpcb-"))
    row = np.random.default_rng(0).normal(size=(1, 30)).round(6).tolist()
    body = request_bytes("m", kind, row)
    frame = work / "req.grpc"
    frame.write_bytes(grpc_frame(body))
    configs = {"on": {}, "off": {"MODELSHELF_MAX_BATCH_SIZE": "1"}}
    servers = {}
    try:
        for name, env in configs.items():
            servers[name] = start(model, env, work / f"{name}.log")
        answers = {n: wait_ready(s[1], body, method) for n, s in servers.items()}
        if not seldon:  # a Seldon answer's meta.metrics come by time
            assert answers["on"] == answers["off"], "answers differ"
        results: dict = {(n, c): [] for n in configs for c in (16, 1)}
        for r in range(rounds):
            for conns in (16, 1):
                order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
                for name in order:
                    log = work / f"h2-{name}-{conns}.log"
                    log.unlink(missing_ok=True)
                    cmd = h2load_command(servers[name][1], frame, seconds, conns, method, log)
                    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    res = h2load_result(done.stdout, log.read_text(), 1, len(answers[name]))
                    results[(name, conns)].append(res)
                    print(
                        f"round {r} {name:3} c={conns:2}: {res.requests_per_s:8.0f} req/s "
                        f"p50 {res.p50_ms:.3f} p99 {res.p99_ms:.3f} ms errors {res.errors}",
                        flush=True,
                    )
        for conns in (16, 1):
            on = [x.requests_per_s for x in results[("on", conns)]]
            off = [x.requests_per_s for x in results[("off", conns)]]
            p99on = [x.p99_ms for x in results[("on", conns)]]
            p99off = [x.p99_ms for x in results[("off", conns)]]
            ratios = [a / b for a, b in zip(on, off, strict=True)]
            print(
                f"{model} c={conns}: on {statistics.median(on):.0f} req/s p99 "
                f"{statistics.median(p99on):.3f} ms | off {statistics.median(off):.0f} req/s p99 "
                f"{statistics.median(p99off):.3f} ms | ratio of medians "
                f"{statistics.median(on) / statistics.median(off):.3f}, median of per-round ratios "
                f"{statistics.median(ratios):.3f} ({', '.join(f'{x:.2f}' for x in ratios)})"
            )
        address = f"http://127.0.0.1:{servers['on'][2]}/metrics"
        with urllib.request.urlopen(address, timeout=10) as answer:
            metrics = answer.read().decode()
        print(
            "\n".join(
                line
                for line in metrics.splitlines()
                if line.startswith(("modelshelf_batch_size_sum", "modelshelf_batch_size_count"))
            )
        )
    finally:
        for process, _, _ in servers.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process, _, _ in servers.values():
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
