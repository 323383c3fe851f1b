"""Run a real ``seldon-core-microservice`` (or any server command) on free loopback ports.

Tests use ``running_microservice(...)`` as a context manager: it starts the process in its own
process group, waits until ``/health/status`` answers 200 (the model is loaded), and on exit stops
the whole group -- SIGTERM, then SIGKILL -- so no test leaves a server behind. The other servers
the suite needs (S3, GCS, MLflow, Redis) start through ``running_process``: the same start, wait
and stop, with their own readiness check.

Ports come from ``modelshelf.graph.ports`` (the graph runner's picker): below the kernel's
ephemeral range and shared between processes, so no connection or other server takes a port
between its choice and the server binding it. A server whose log still says a port was taken
fails fast with ``PortInUseError``; ``running_microservice`` then starts it once more on new ports.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from modelshelf.graph.ports import free_port, free_ports

__all__ = ["free_port", "free_ports"]  # re-exported: the suite's tests pick ports here

REPO = Path(__file__).resolve().parents[1]
SERVERS = REPO / "servers"
BIN = Path(sys.executable).parent
#: What a server's log says when a port it was given is taken (gunicorn; Python; gRPC).
PORT_IN_USE_MARKERS = (b"Connection in use", b"Address already in use", b"Failed to bind")
#: Starts of ``running_microservice`` when its ports turn out to be taken.
START_ATTEMPTS = 2
#: Seconds a server gets to become healthy. A server that fails exits (or says a port was taken)
#: and is reported at once; this only bounds a slow start, which on a 2-core machine running
#: other suites and benchmarks (load average 10-19 seen) has taken 35 s for one model server.
READY_TIMEOUT = 120
#: Connections a suite's client keeps between requests. The servers close a keep-alive connection
#: idle for 2 s (gunicorn's and ``modelshelf serve``'s default); httpx keeps one for 5 s, so a
#: request sent just as the server closes it meets a reset (seen once in CI, after a fixture sat
#: waiting for a second server). Dropping idle connections sooner than the server does is what a
#: well-behaved client does.
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=1.0)


class PortInUseError(RuntimeError):
    """A server could not bind one of its ports; carries its command and its log's end."""

    def __init__(self, command: Sequence[str], log_tail: str) -> None:
        self.command = list(command)
        self.log_tail = log_tail
        super().__init__(f"a port was in use for {' '.join(self.command)[:300]}:\n{log_tail}")


def seldon_parameters(**values: object) -> str:
    """``--parameters`` JSON with Seldon's types inferred from the Python values."""
    typed = []
    for name, value in values.items():
        kind = {bool: "BOOL", int: "INT", float: "FLOAT"}.get(type(value), "STRING")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        typed.append({"name": name, "value": text, "type": kind})
    return json.dumps(typed)


def log_tail(path: Path, chars: int = 4000) -> str:
    """The end of a server's log (what a start-up failure shows)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - chars))
            return handle.read().decode(errors="replace")
    except OSError as error:
        return f"(no log: {error})"


@dataclass
class Microservice:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30, limits=CLIENT_LIMITS)

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


class _PortInUseWatch:
    """Reads what a log gained since the last look, to spot a taken port without re-reading
    the whole log every poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.carry = b""  # a marker may straddle two reads

    def seen(self) -> bool:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                new = handle.read()
        except OSError:
            return False
        self.offset += len(new)
        text, self.carry = self.carry + new, new[-64:]
        return any(marker in text for marker in PORT_IN_USE_MARKERS)


def wait_until_ready(
    process: subprocess.Popen,
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
) -> None:
    """Until ``ready()``; a start-up failure (exit, taken port, timeout) carries the log's end."""
    deadline = time.monotonic() + timeout
    watch = _PortInUseWatch(log_path)
    command = process.args if isinstance(process.args, list) else [str(process.args)]
    name = Path(command[0]).name
    while True:
        if process.poll() is not None:
            tail = log_tail(log_path)
            if watch.seen():
                raise PortInUseError(command, tail)
            raise RuntimeError(
                f"{name} exited with {process.returncode} before it was ready:\n{tail}"
            )
        if watch.seen():
            raise PortInUseError(command, log_tail(log_path))
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready after {timeout} s:\n{log_tail(log_path)}")
        time.sleep(interval)


def wait_for_text(read: Callable[[], str], text: str, timeout: float = 30) -> None:
    """Until ``read()`` (a log) contains ``text``: how a test knows a request is inside the model
    before it signals the server, where a fixed sleep loses the race on a loaded host."""
    deadline = time.monotonic() + timeout
    while text not in (found := read()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in the log after {timeout} s:\n{found[-3000:]}")
        time.sleep(0.05)


def wait_until_healthy(service: Microservice, timeout: float, path: str = "/health/status") -> None:
    """Until REST answers ``path`` with 200 and, if there is one, the gRPC port accepts
    connections (seldon's gRPC child loads its own model and only then listens)."""
    rest_ready = False

    def ready() -> bool:
        nonlocal rest_ready
        if not rest_ready:
            with contextlib.suppress(httpx.HTTPError):
                rest_ready = service.client.get(path, timeout=2).status_code == 200
        return rest_ready and (not service.grpc_port or _accepts(service.grpc_port))

    wait_until_ready(service.process, service.log_path, ready, timeout)


def http_answers(url: str, status: int | None = None) -> Callable[[], bool]:
    """A readiness check: ``url`` answers a GET (with ``status``, if given)."""

    def answers() -> bool:
        try:
            response = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return False
        return status is None or response.status_code == status

    return answers


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


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    """This environment, the venv's scripts first on ``PATH``, then ``env``."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update(env or {})
    return full_env


@contextlib.contextmanager
def started(
    command: Sequence[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    stop_timeout: float = 10,
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``command`` in its own process group, its output in ``log_path`` (by default a temporary
    file, removed afterwards); the group is stopped when the block ends."""
    if log_path is None:
        with tempfile.NamedTemporaryFile(
            prefix="modelshelf-server-", suffix=".log", delete=False
        ) as temporary:
            path, remove = Path(temporary.name), True
    else:
        path, remove = log_path, False
    with open(path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=_environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, path
    finally:
        stop(process, timeout=stop_timeout)
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@contextlib.contextmanager
def running_process(
    command: Sequence[str],
    ready: Callable[[], bool],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 30,
) -> Iterator[subprocess.Popen]:
    """A helper server (S3, GCS, MLflow, Redis...): started, yielded once ``ready()``, stopped."""
    with started(command, cwd, env, log_path) as (process, path):
        wait_until_ready(process, path, ready, timeout)
        yield process


_Entered = TypeVar("_Entered")


@contextlib.contextmanager
def entered_in_parallel(
    contexts: Mapping[str, contextlib.AbstractContextManager[_Entered]],
) -> Iterator[dict[str, _Entered]]:
    """Enter every context at once (servers load in parallel), name -> what each gave; exit
    them all at once too. If one fails to start, the others are still stopped, then its error
    is raised."""
    with ThreadPoolExecutor(len(contexts)) as pool:
        futures = {name: pool.submit(cm.__enter__) for name, cm in contexts.items()}
        entered, failures = {}, []
        for name, future in futures.items():
            try:
                entered[name] = future.result()
            except Exception as exc:  # the others still have to be stopped
                failures.append(exc)
        try:
            if failures:
                raise failures[0]
            yield entered
        finally:  # each exit checks that nothing is left behind
            stops = [pool.submit(contexts[name].__exit__, None, None, None) for name in entered]
            for stopped in stops:
                stopped.result()


@contextlib.contextmanager
def running_command(
    command: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    ready_timeout: float = READY_TIMEOUT,
    health_path: str = "/health/status",
) -> Iterator[Microservice]:
    """Start ``command`` (its ports already chosen) and yield it once healthy."""
    # Tests of graceful shutdown signal the server themselves; here we only clean up, and
    # gunicorn's sync workers take up to their 5 s timeout to notice SIGTERM.
    with started(command, cwd, env, stop_timeout=2) as (process, log_path):
        service = Microservice(process, http_port or 0, grpc_port or 0, metrics_port or 0, log_path)
        try:
            wait_until_healthy(service, ready_timeout, health_path)
            yield service
        finally:
            service.client.close()


@contextlib.contextmanager
def running_microservice(
    server: str,
    parameters: str = "[]",
    service_type: str = "MODEL",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    extra_args: Sequence[str] = (),
) -> Iterator[Microservice]:
    """``seldon-core-microservice SERVER`` from ``servers/<server lowercased>`` on free ports
    (new ones, once, if the first turn out to be taken)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        http_port, grpc_port, metrics_port = free_ports(3)
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
        running = running_command(
            command,
            cwd or SERVERS / server.lower(),
            env,
            http_port,
            grpc_port,
            metrics_port,
            ready_timeout,
        )
        try:
            service = running.__enter__()
        except PortInUseError:
            if attempt == START_ATTEMPTS:
                raise
            continue
        with contextlib.ExitStack() as stack:
            stack.push(running.__exit__)
            yield service
        return


def run_to_exit(
    command: Sequence[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a server command that is expected to stop by itself (e.g. on a load failure)."""
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=_environment(env),
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
