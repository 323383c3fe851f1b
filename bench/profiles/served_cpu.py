"""Server CPU per single-row request, two checkouts at once: ``modelshelf serve`` from each
``shared/`` (before / after) on the same model, both up together, rounds of N sequential
requests on one keep-alive connection, alternating which goes first; CPU = utime + stime of
the server's process tree from ``/proc`` over the round, ÷ N. Prints medians and ratios.

    .venv/bin/python bench/profiles/served_cpu.py SERVER_CLASS MODEL_FOLDER \
        --before /old/checkout --after . [--workers 1] [--requests 1000] [--rounds 5]

The request body is the realistic bench's first row (30 features); the V2 path names the
model folder. Any checkout's ``servers/<folder>`` is the working directory of its server.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.realistic import SERVER_FOLDERS, _numeric_bodies  # noqa: E402

HEADERS = {"content-type": "application/json"}


def bodies(model: Path) -> dict[str, tuple[str, bytes]]:
    """One row, as the realistic bench's single-row requests (its bodies, not a copy)."""
    made = _numeric_bodies(None)
    return {
        "seldon": ("/api/v1.0/predictions", json.dumps(made["seldon"](1)).encode()),
        "v2": (f"/v2/models/{model.name}/infer", json.dumps(made["v2"](1)).encode()),
    }


def tree_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> int:
    connection.request("POST", path, body, HEADERS)
    answer = connection.getresponse()
    answer.read()
    return answer.status


def start(
    checkout: Path, server: str, model: Path, workers: int, port: int, log: Path
) -> subprocess.Popen:
    parameters = json.dumps([{"name": "model_uri", "value": str(model), "type": "STRING"}])
    command = [
        str(REPO / ".venv" / "bin" / "modelshelf"), "serve", server, "--service-type", "MODEL",
        "--parameters", parameters, "--http-port", str(port), "--grpc-port", str(port + 1),
        "--metrics-port", str(port + 2), "--workers", str(workers), "--grpc-workers", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(checkout / "shared")}
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=checkout / "servers" / SERVER_FOLDERS[server],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(port: int, path: str, body: bytes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if post(http.client.HTTPConnection("127.0.0.1", port, timeout=5), path, body) == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"no answer on port {port} within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(SERVER_FOLDERS))
    parser.add_argument("model", type=Path)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=18810)
    parser.add_argument("--logs", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    payloads = bodies(args.model.resolve())
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    ports = {"before": args.port, "after": args.port + 10}
    servers: dict[str, subprocess.Popen] = {}
    try:
        for side, checkout in sides.items():
            log = args.logs / f"served_cpu-{side}.log"
            servers[side] = start(
                checkout, args.server, args.model.resolve(), args.workers, ports[side], log
            )
        for side in sides:
            wait_ready(ports[side], *payloads["seldon"])
        cpu = {(s, k): [] for s in sides for k in payloads}
        wall = {(s, k): [] for s in sides for k in payloads}
        for round_ in range(args.rounds):
            for kind, (path, body) in payloads.items():
                order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
                for side in order:
                    connection = http.client.HTTPConnection("127.0.0.1", ports[side])
                    for _ in range(50):  # warm: the connection, the worker, the caches
                        assert post(connection, path, body) == 200
                    used = tree_cpu(servers[side].pid)
                    started = time.perf_counter()
                    answered = [post(connection, path, body) for _ in range(args.requests)]
                    if answered.count(200) != len(answered):  # errors are not the figures
                        raise SystemExit(f"{side} ({kind}): statuses {sorted(set(answered))}")
                    wall[side, kind].append((time.perf_counter() - started) / args.requests)
                    cpu[side, kind].append((tree_cpu(servers[side].pid) - used) / args.requests)
                    connection.close()
        print(f"{args.server} {args.model.name}, {args.workers} worker(s), {args.rounds} rounds "
              f"x {args.requests} requests: µs per request, median")  # fmt: skip
        for kind in payloads:
            b, a = (statistics.median(cpu[s, kind]) * 1e6 for s in ("before", "after"))
            bw, aw = (statistics.median(wall[s, kind]) * 1e6 for s in ("before", "after"))
            print(f"  {kind}: server CPU before {b:.0f}, after {a:.0f} ({b / a:.2f}x); "
                  f"client wall before {bw:.0f}, after {aw:.0f} ({bw / aw:.2f}x)")  # fmt: skip
    finally:
        for process in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
