"""Load from wrk, a separate process over loopback, bounded in time.

A Lua script POSTs one JSON body on every request and, when wrk is done, prints one line of JSON
(requests, duration, errors, latency percentiles) that ``run_wrk`` parses. A V2 binary body (a
JSON document, then tensor bytes) is sent with its ``Inference-Header-Content-Length``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

MARKER = "BENCHRESULT "

_SCRIPT = """\
wrk.method = "POST"
%(headers)slocal f = assert(io.open(%(body)s, "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,'
    .. '"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,'
    .. '"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int  # non-2xx/3xx answers plus socket errors (connect, read, write, timeout)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    rows_per_request: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "requests_per_s": round(self.requests_per_s, 1),
            "rows_per_s": round(self.rows_per_s, 1),
        }


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench does this)")
    return found


def write_script(body: Path, scripts: Path) -> Path:
    """The Lua script that POSTs ``body``; one per payload file."""
    scripts.mkdir(parents=True, exist_ok=True)
    script = scripts / f"{body.stem}.lua"
    headers = "".join(
        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n"
        for name, value in request_headers(body.read_bytes()).items()
    )
    script.write_text(
        _SCRIPT % {"body": json.dumps(str(body.resolve())), "marker": MARKER, "headers": headers}
    )
    return script


def request_headers(body: bytes) -> dict[str, str]:
    """The headers a body is sent with: JSON's content type, and for a V2 binary body (a JSON
    document followed by tensor bytes) the length of its JSON part."""
    headers = {"Content-Type": "application/json"}
    try:
        _, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    except ValueError:
        return headers
    if body[end:].strip():
        headers["Inference-Header-Content-Length"] = str(end)
    return headers


def read_answer(response: httpx.Response) -> dict:
    """A JSON answer, or the JSON part of a V2 binary answer (what the answer checks read)."""
    size = response.headers.get("inference-header-content-length")
    if size is None:
        return response.json()
    return json.loads(response.content[: int(size)])


def wrk_command(url: str, script: Path, duration: int, connections: int) -> list[str]:
    return [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]


def run_wrk(
    url: str, script: Path, duration: int, connections: int, rows_per_request: int
) -> LoadResult:
    """Run wrk against ``url`` for ``duration`` seconds and return what its done() hook says."""
    command = wrk_command(url, script, duration, connections)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    return load_result(
        done, "wrk", ("connect", "read", "write", "status", "timeout"), rows_per_request
    )


def load_result(
    done: subprocess.CompletedProcess,
    tool: str,
    error_keys: tuple[str, ...],
    rows_per_request: int,
) -> LoadResult:
    """The ``MARKER`` + JSON line a load generator (wrk's done() hook, ``bench.grpc_load``)
    printed, as a ``LoadResult``; errors are the sum of ``error_keys``."""
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(
            f"{tool} gave no result (exit {done.returncode}): "
            f"{done.stdout[-800:]} {done.stderr[-800:]}"
        )
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=sum(raw[key] for key in error_keys),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        rows_per_request=rows_per_request,
    )


def warm_up(url: str, body: bytes, requests: int = 30) -> None:
    """Send ``body`` ``requests`` times, so the figures after it are the server's steady state;
    a server that fails them fails the run here, not as an unexplained figure later."""
    with httpx.Client(timeout=30) as client:
        headers = request_headers(body)
        for _ in range(requests):
            answer = client.post(url, content=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(
                    f"warm-up request to {url}: HTTP {answer.status_code}: {answer.text[:300]}"
                )
