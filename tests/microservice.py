"""Run a real ``seldon-core-microservice`` (or any server command) on free loopback ports.

Tests use ``running_microservice(...)`` as a context manager: it starts the process in its own
process group, waits until ``/health/status`` answers 200 (the model is loaded), and on exit stops
the whole group -- SIGTERM, then SIGKILL -- so no test leaves a server behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SERVERS = REPO / "servers"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seldon_parameters(**values: object) -> str:
    """``--parameters`` JSON with Seldon's types inferred from the Python values."""
    typed = []
    for name, value in values.items():
        kind = {bool: "BOOL", int: "INT", float: "FLOAT"}.get(type(value), "STRING")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        typed.append({"name": name, "value": text, "type": kind})
    return json.dumps(typed)


@dataclass
class Microservice:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, payload: object = None, **kwargs: object) -> httpx.Response:
        if payload is not None:
            kwargs["json"] = payload
        return self.client.post(path, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)


def wait_until_healthy(service: Microservice, timeout: float, path: str = "/health/status") -> None:
    """Until REST answers ``path`` with 200 and, if there is one, the gRPC port accepts
    connections (seldon's gRPC child loads its own model and only then listens)."""
    deadline = time.monotonic() + timeout
    rest_ready = False
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {service.process.returncode} before it was ready:\n"
                + service.log()[-4000:]
            )
        if not rest_ready:
            with contextlib.suppress(httpx.HTTPError):
                rest_ready = service.client.get(path, timeout=2).status_code == 200
        if rest_ready and (not service.grpc_port or _accepts(service.grpc_port)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"server not healthy after {timeout} s:\n{service.log()[-4000:]}")


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM the process group, SIGKILL what is left after ``timeout``; the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children the leader left behind
    return process.wait()


@contextlib.contextmanager
def running_command(
    command: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    ready_timeout: float = 60,
    health_path: str = "/health/status",
) -> Iterator[Microservice]:
    """Start ``command`` (its ports already chosen) and yield it once healthy."""
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - outlives this block: the server writes it
        prefix="modelshelf-server-", suffix=".log", delete=False
    )
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update(env or {})
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = Microservice(
        process, http_port or 0, grpc_port or 0, metrics_port or 0, Path(log_file.name)
    )
    try:
        wait_until_healthy(service, ready_timeout, health_path)
        yield service
    finally:
        service.client.close()
        # Tests of graceful shutdown signal the server themselves; here we only clean up, and
        # gunicorn's sync workers take up to their 5 s timeout to notice SIGTERM.
        stop(process, timeout=2)
        log_file.close()
        os.unlink(log_file.name)


@contextlib.contextmanager
def running_microservice(
    server: str,
    parameters: str = "[]",
    service_type: str = "MODEL",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
    extra_args: Sequence[str] = (),
) -> Iterator[Microservice]:
    """``seldon-core-microservice SERVER`` from ``servers/<server lowercased>`` on free ports."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    command = [
        str(BIN / "seldon-core-microservice"),
        server,
        "--service-type",
        service_type,
        "--parameters",
        parameters,
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(metrics_port),
        *extra_args,
    ]
    with running_command(
        command,
        cwd or SERVERS / server.lower(),
        env,
        http_port,
        grpc_port,
        metrics_port,
        ready_timeout,
    ) as service:
        yield service


def run_to_exit(
    command: Sequence[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a server command that is expected to stop by itself (e.g. on a load failure)."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update(env or {})
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        out, _ = process.communicate()
        raise AssertionError(f"still running after {timeout} s:\n{out[-4000:]}") from None
    finally:
        stop(process)
    return subprocess.CompletedProcess(command, process.returncode, out, "")
