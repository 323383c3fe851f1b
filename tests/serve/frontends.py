"""Start the same class under ``seldon-core-microservice`` and under ``modelshelf serve``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import subprocess
import tempfile
import termios
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from microservice import (
    BIN,
    SERVERS,
    Microservice,
    free_port,
    seldon_parameters,
    stop,
    wait_until_healthy,
)

COMPONENTS = Path(__file__).resolve().parent / "components"
SELDON = (str(BIN / "seldon-core-microservice"),)
MODELSHELF = (str(BIN / "modelshelf"), "serve")


@dataclass(frozen=True)
class Launch:
    """How to start one class: its name, folder, parameters, service type, gRPC or not."""

    name: str
    cwd: Path
    parameters: str = "[]"
    service_type: str = "MODEL"
    grpc: bool = False
    extra_args: tuple[str, ...] = ()

    def command(self, front_end: Sequence[str], ports: tuple[int, int, int]) -> list[str]:
        service_type = self.service_type
        if front_end == SELDON and service_type == "OUTPUT_TRANSFORMER":
            service_type = "TRANSFORMER"  # seldon-core-microservice's choices lack it
        http, grpc, metrics = ports
        return [
            *front_end,
            self.name,
            "--service-type",
            service_type,
            "--parameters",
            self.parameters,
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--grpc-workers",
            "1" if self.grpc else "0",
            *self.extra_args,
        ]


def sklearn_launch(model_dir: Path, model_name: str | None = None, **parameters: object) -> Launch:
    """SKLearnServer on ``model_dir`` (served as ``model_name`` when given; more parameters)."""
    return Launch(
        "SKLearnServer",
        SERVERS / "sklearnserver",
        seldon_parameters(model_uri=model_dir, **parameters),
        extra_args=("--model-name", model_name) if model_name else (),
    )


def start(
    launch: Launch, front_end: Sequence[str], env: dict[str, str] | None = None
) -> Microservice:
    """Start the server (own process group, log in a temp file); not yet waited for."""
    ports = (free_port(), free_port(), free_port())
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the server writes it until stopped
        prefix="modelshelf-serve-test-", suffix=".log", delete=False
    )
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update(env or {})
    process = subprocess.Popen(
        launch.command(front_end, ports),
        cwd=launch.cwd,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return Microservice(process, ports[0], ports[1] if launch.grpc else 0, ports[2], Path(log.name))


def finish(service: Microservice) -> int:
    service.client.close()
    code = stop(service.process)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(service.log_path)
    return code


@contextlib.contextmanager
def running(
    launch: Launch,
    front_ends: Sequence[Sequence[str]],
    env: dict[str, str] | None = None,
    timeout: float = 90,
) -> Iterator[list[Microservice]]:
    """All ``front_ends`` serving ``launch`` at once (started together, healthy, then stopped)."""
    services: list[Microservice] = []
    try:
        for front_end in front_ends:
            services.append(start(launch, front_end, env))
        for service in services:
            wait_until_healthy(service, timeout, "/health/ping")
        yield services
    finally:
        for service in services:
            finish(service)


def batch_sizes(service: Microservice) -> tuple[float, float]:
    """(sum, count) of ``modelshelf_batch_size`` over every worker: how many requests joined
    how many model calls (REST and gRPC batching tests)."""
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics").text
    total = sum(
        float(v) for v in re.findall(r"^modelshelf_batch_size_sum\{.*\} (\S+)$", text, re.M)
    )
    count = sum(
        float(v) for v in re.findall(r"^modelshelf_batch_size_count\{.*\} (\S+)$", text, re.M)
    )
    return total, count


def released_together(count: int, send: Callable[[int, threading.Barrier], object]) -> list:
    """``send(index, barrier)`` for every index in a thread of its own, each passing
    ``barrier`` just before its request so that all are sent at once: what each returned."""
    barrier = threading.Barrier(count)
    found: list = [None] * count

    def run(index: int) -> None:
        found[index] = send(index, barrier)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer is not None for answer in found), found
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (checked every 0.1 s)."""
    event = threading.Event()
    for _ in range(int(timeout * 10)):
        if condition():
            return True
        event.wait(0.1)
    return condition()


def read_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    """Whether the server took everything ``sock`` sent, within ``timeout`` seconds: the
    client's bytes all acknowledged (its send queue empty) and the server's end of the
    connection holding none unread (its receive queue in ``/proc/net/tcp``): what a test waits
    for before acting on a request the server has read (a prediction queued for its batch)."""
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]

    def taken() -> bool:
        unsent = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4))
        if int.from_bytes(unsent, "little"):
            return False
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server_port and (
                int(remote.split(":")[1], 16) == client_port
            ):
                return int(fields[4].split(":")[1], 16) == 0  # rx_queue
        return False

    return wait_for(taken, timeout)
