"""Where a `modelshelf serve` REST worker's time goes per request, under wrk load.

Starts ``modelshelf serve SKLearnServer`` (1 worker) on the bench's iris model, loads it with wrk
(4 connections, the bench's payloads), samples the REST worker with py-spy and sorts every
sample into a few stages of a request. Prints a markdown table per payload: share of samples,
and microseconds per request (share x the worker's CPU time per request, from /proc).

With two or more CPUs the server runs on the last CPU and wrk on the others (``taskset``), so
that wrk's wake-ups do not show up as time in the worker's socket writes.

    .venv/bin/python bench/profiles/profile_serve.py [--seconds 10] [--source DIR]

``--source`` puts another checkout's ``shared/`` first on ``PYTHONPATH`` (before/after runs).
Needs ``bench/work`` (run the bench once) and wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.load import request_headers

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "bench" / "work"
VENV_BIN = Path(sys.executable).parent
PATH = "/api/v1.0/predictions"
#: Payloads of the other protocols and where they go (the model is served as "iris").
PROTOCOL_PATHS = {
    "v2-proba": "/v2/models/iris/infer",
    "v2-binary-proba": "/v2/models/iris/infer",
    "kserve-v1": "/v1/models/iris:predict",
    "mlflow": "/invocations",
}
#: Modules whose orjson.loads / orjson.dumps lines are the decode / encode stages.
JSON_MODULES = ("rest.py", "v2_rest.py", "kserve_v1.py", "mlflow_scoring.py")
TICKS = os.sysconf("SC_CLK_TCK")

#: (stage, markers): a sample belongs to the stage of the innermost frame of its stack that holds
#: one of the markers (``function (file`` fragments as py-spy prints them); within a frame the
#: first stage listed wins. py-spy does not see into C, so a garbage collection counts for the
#: line that set it off.
DECODE = "request JSON decode (orjson.loads)"
ENCODE = "response -> JSON (encode_array / tolist, orjson.dumps)"
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "model: SKLearnServer.predict (input checks + predict_proba)",
        ("client_predict (seldon_core", "modelshelf/frameworks/"),
    ),
    ("ndarray -> numpy array", ("array_from_rows (", "extract_request_parts_json (")),
    (
        "V2 tensors: data <-> numpy, codecs (serve/inference.py)",
        ("from_values (", "from_bytes (", "json_data (", "to_bytes (", "decode_inputs ("),
    ),
    (
        "protocol adapter (V2 / KServe V1 / MLflow: request and response objects)",
        (
            "modelshelf/serve/v2_rest.py",
            "modelshelf/serve/kserve_v1.py",
            "modelshelf/serve/mlflow_scoring.py",
            "modelshelf/serve/inference.py",
            "modelshelf/serve/server_methods.py",
            "modelshelf/serve/protocols.py",
        ),
    ),
    # utils.py:415 is construct_response_json's tolist() in seldon-core 1.18.2
    (ENCODE, ("encode_array (", "seldon_core/utils.py:415)")),
    (
        "seldon-core protocol (metrics, tags, names, response dict)",
        ("seldon_core/", "modelshelf/serve/protocol.py"),
    ),
    ("HTTP: server + httptools (parse, send, socket writes)", ("uvicorn/", "serve/http1/")),
    ("event loop: uvloop/asyncio (epoll, reads, task switches)", ("asyncio/", "uvloop")),
    ("front end glue (SeldonRestApp: routing, checks, GC it sets off)", ("serve/rest.py",)),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus and shutil.which("taskset") else command


def rest_worker(server: subprocess.Popen, url: str, body: bytes) -> int:
    """The child that answers REST requests: the one whose CPU time grows under requests."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(server.pid)], capture_output=True, text=True
    ).stdout
    children = [int(line) for line in out.split()]
    before = {pid: cpu_seconds(pid) for pid in children}
    with httpx.Client() as client:
        headers = request_headers(body)
        for _ in range(200):
            client.post(url, content=body, headers=headers)
    return max(children, key=lambda pid: cpu_seconds(pid) - before[pid])


def loads_and_dumps_lines(source: Path) -> tuple[set[str], set[str]]:
    """``module.py:line`` of the orjson.loads / orjson.dumps calls in the front end's modules
    (py-spy sees no C frames)."""
    loads, dumps = set(), set()
    for module in JSON_MODULES:
        path = source / "modelshelf" / "serve" / module
        if not path.exists():
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "orjson.loads(" in line:
                loads.add(f"{module}:{i}")
            if "orjson.dumps(" in line:
                dumps.add(f"{module}:{i}")
    return loads, dumps


def stage_of(stack: str, loads: set[str], dumps: set[str]) -> str | None:
    frames = stack.split(";")
    if any("threading.py" in frame for frame in frames):
        return None  # the metrics queue's feeder thread, idle
    leaf = frames[-1]
    if "modelshelf/serve/" in leaf:
        where = leaf.rsplit("/", 1)[1].rstrip(")")
        if where in loads:
            return DECODE
        if where in dumps:
            return ENCODE
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    return "other"


def profile(
    payload: str, seconds: int, source: Path, keep: Path | None = None, work: Path = WORK
) -> dict:
    body = (work / "models" / "payloads" / f"{payload}.json").read_bytes()
    script = work / "lua" / f"{payload}.lua"
    cpus = os.cpu_count() or 1
    server_cpus = str(cpus - 1) if cpus > 1 else None
    wrk_cpus = f"0-{cpus - 2}" if cpus > 1 else None
    port = free_port()
    parameters = [
        {"name": "model_uri", "value": str(work / "models" / "sklearn"), "type": "STRING"}
    ]
    command = [
        str(VENV_BIN / "python"), "-m", "modelshelf.serve", "SKLearnServer",
        "--service-type", "MODEL", "--parameters", json.dumps(parameters),
        "--http-port", str(port), "--grpc-port", str(free_port()),
        "--metrics-port", str(free_port()), "--workers", "1", "--model-name", "iris",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)}
    server = subprocess.Popen(
        pinned(command, server_cpus),
        cwd=REPO / "servers" / "sklearnserver",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}{PROTOCOL_PATHS.get(payload.rsplit('-', 1)[0], PATH)}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/status").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        worker = rest_worker(server, url, body)
        wrk = [
            "wrk", "-t1", "-c4", f"-d{seconds + 3}s", "--timeout", "10s", "-s", str(script), url
        ]  # fmt: skip
        load = subprocess.Popen(pinned(wrk, wrk_cpus), stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
            cpu_before = cpu_seconds(worker)
            subprocess.run(
                [
                    str(VENV_BIN / "py-spy"), "record", "-p", str(worker), "-r", "500",
                    "-d", str(seconds), "-f", "raw", "-o", raw.name,
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
            cpu_used = cpu_seconds(worker) - cpu_before
            samples = Path(raw.name).read_text().splitlines()
            if keep:
                shutil.copy(raw.name, keep / f"{payload}.txt")
        out = load.communicate()[0]
        result = json.loads(out.split("BENCHRESULT ", 1)[1].splitlines()[0])
    finally:
        server.terminate()
        server.wait(20)
    requests_per_s = result["requests"] / (result["duration_us"] / 1e6)
    loads, dumps = loads_and_dumps_lines(source)
    counts: Counter[str] = Counter()
    for line in samples:
        stack, _, count = line.rpartition(" ")
        stage = stage_of(stack, loads, dumps)
        if stage:
            counts[stage] += int(count)
    return {
        "payload": payload,
        "requests_per_s": requests_per_s,
        "p99_ms": result["p99_us"] / 1000,
        "cpu_us_per_request": cpu_used / (requests_per_s * seconds) * 1e6,
        "stages": counts,
    }


def markdown(found: dict) -> str:
    total = sum(found["stages"].values()) or 1
    cpu = found["cpu_us_per_request"]
    lines = [
        f"**{found['payload']}**: {found['requests_per_s']:,.0f} req/s, p99 "
        f"{found['p99_ms']:.1f} ms, worker CPU {cpu:,.0f} µs/request",
        "",
        "| stage | share of samples | ≈ µs/request |",
        "|---|---:|---:|",
    ]
    for stage, count in found["stages"].most_common():
        share = count / total
        lines.append(f"| {stage} | {share:.0%} | {share * cpu:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--source", type=Path, default=REPO / "shared")
    parser.add_argument("--keep", type=Path, help="a folder for py-spy's raw samples")
    parser.add_argument("--work", type=Path, default=WORK, help="a bench run's work folder")
    parser.add_argument("payloads", nargs="*", default=["seldon-1", "seldon-1000"])
    args = parser.parse_args()
    for payload in args.payloads:
        found = profile(payload, args.seconds, args.source.resolve(), args.keep, args.work)
        print(markdown(found), "\n", flush=True)


if __name__ == "__main__":
    main()
