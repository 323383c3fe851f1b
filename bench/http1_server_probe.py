"""modelshelf's HTTP/1.1 server against uvicorn under ``modelshelf serve``
(``MODELSHELF_HTTP_SERVER`` ``modelshelf`` vs ``uvicorn``), same classes, same wrk load, in one
run: req/s and the REST worker's CPU µs per request (its utime + stime over the load, from
/proc, divided by the requests wrk counted). CPU per request is the figure that survives a busy
shared machine; req/s does not.

``python -m bench.http1_server_probe [SECONDS] [ROUNDS]`` after ``make bench`` made
``bench/work`` (the iris model and the payloads). Rows: ``GET /health/ping`` (the server alone),
the identity model's Seldon predict (server + protocol), SKLearnServer's Seldon and V2 JSON
single-row predictions (the bench's rows). Servers of a row alternate within each round.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.config import BENCH, REPO, VENV_BIN
from bench.load import request_headers, run_wrk, write_script, wrk_path
from bench.procs import free_port

WORK = BENCH / "work" / "models"
SERVERS = ("modelshelf", "uvicorn")
#: (row, class, folder, parameters, path, payload file or None for a GET)
ROWS = (
    ("GET /health/ping", "IdentityModel", BENCH / "identity", [], "/health/ping", None),
    ("identity, Seldon", "IdentityModel", BENCH / "identity", [], "/api/v1.0/predictions",
     "seldon-1.json"),
    ("sklearn, Seldon", "SKLearnServer", REPO / "servers" / "sklearnserver",
     [{"name": "model_uri", "value": str(WORK / "sklearn"), "type": "STRING"}],
     "/api/v1.0/predictions", "seldon-1.json"),
    ("sklearn, V2 JSON", "SKLearnServer", REPO / "servers" / "sklearnserver",
     [{"name": "model_uri", "value": str(WORK / "sklearn"), "type": "STRING"}],
     "/v2/models/iris/infer", "v2-proba-1.json"),
)  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _worker(parent: int) -> int:
    found = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    if len(found) != 1:
        raise RuntimeError(f"expected one REST worker under {parent}, found {found}")
    return int(found[0])


def measure(kind: str, row: tuple, seconds: int, scripts: Path) -> tuple[float, float]:
    """(req/s, worker CPU µs per request) of one server on one row."""
    _, cls, folder, parameters, path, payload = row
    port = free_port()
    command = [
        str(VENV_BIN / "modelshelf"), "serve", cls, "--parameters", json.dumps(parameters),
        "--http-port", str(port), "--metrics-port", str(free_port()), "--grpc-workers", "0",
        "--model-name", "iris",
    ]  # fmt: skip
    env = {**os.environ, "MODELSHELF_HTTP_SERVER": kind}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}{path}"
            body = (WORK / "payloads" / payload).read_bytes() if payload else None
            deadline = time.monotonic() + 60
            while True:
                try:
                    if body is None:
                        answer = httpx.get(url)
                    else:
                        answer = httpx.post(url, content=body, headers=request_headers(body))
                    answer.raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(log.read().decode(errors="replace")[-3000:]) from None
                    time.sleep(0.2)
            worker = _worker(process.pid)
            script = write_script(WORK / "payloads" / payload, scripts) if payload else None
            get = [wrk_path(), "-t1", "-c4", f"-d{seconds}s", url]  # wrk's plain GET
            if script is None:
                subprocess.run([*get[:3], "-d1s", url], check=True, capture_output=True)
            else:
                run_wrk(url, script, 1, 4, 1)  # warm up
            before = _cpu_seconds(worker)
            if script is None:
                done = subprocess.run(get, capture_output=True, text=True, check=True)
                requests = int(done.stdout.split(" requests in ")[0].split()[-1])
                rate = requests / seconds
            else:
                result = run_wrk(url, script, seconds, 4, 1)
                requests = result.requests
                rate = result.requests_per_s
            used = _cpu_seconds(worker) - before
            return rate, used / max(requests, 1) * 1e6
        finally:
            process.terminate()
            process.wait(15)


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as scripts:
        for round_number in range(rounds):
            order = SERVERS if round_number % 2 == 0 else SERVERS[::-1]
            for row in ROWS:
                for kind in order:
                    found.setdefault((row[0], kind), []).append(
                        measure(kind, row, seconds, Path(scripts))
                    )
    print(
        "| request | modelshelf req/s | uvicorn req/s | modelshelf CPU µs/req "
        "| uvicorn CPU µs/req | CPU saved µs/req |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in ROWS:
        ours = found[(row[0], "modelshelf")]
        theirs = found[(row[0], "uvicorn")]
        rate_ours = statistics.median(r for r, _ in ours)
        rate_theirs = statistics.median(r for r, _ in theirs)
        cpu_ours = statistics.median(c for _, c in ours)
        cpu_theirs = statistics.median(c for _, c in theirs)
        print(
            f"| {row[0]} | {rate_ours:,.0f} | {rate_theirs:,.0f} | {cpu_ours:.0f} "
            f"| {cpu_theirs:.0f} | {cpu_theirs - cpu_ours:.0f} |"
        )


if __name__ == "__main__":
    main()
