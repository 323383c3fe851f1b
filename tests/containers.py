"""Run modelshelf's images as real containers (podman) for tests/images: start, wait until the
model is loaded, talk to it over HTTP from the host, stop it the way a cluster does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx

from microservice import CLIENT_LIMITS

PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/modelshelf")
TAG = os.environ.get("IMAGE_TAG", "dev")
ENGINE = os.environ.get("CONTAINER_ENGINE", "podman")


def image(name: str) -> str:
    return f"{PREFIX}/{name}:{TAG}"


def engine(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """One ``podman`` command; its output as text."""
    return subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def image_exists(name: str) -> bool:
    return (
        shutil.which(ENGINE) is not None
        and engine("image", "exists", image(name), check=False).returncode == 0
    )


def parameters(**values: str) -> str:
    return json.dumps([{"name": k, "value": v, "type": "STRING"} for k, v in values.items()])


@dataclass
class Container:
    name: str
    http_port: int
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}", timeout=30, limits=CLIENT_LIMITS
        )

    def logs(self) -> str:
        result = engine("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def state(self) -> dict:
        out = engine("inspect", "--format", "{{json .State}}", self.name).stdout
        return json.loads(out)

    def post(self, path: str, payload: object) -> httpx.Response:
        return self.client.post(path, json=payload)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def stop(self, timeout: int = 10) -> tuple[int, float]:
        """``podman stop -t timeout`` (SIGTERM, then SIGKILL after ``timeout``): the exit code
        and the seconds from the stop request to the container's end (from its finish time, so
        the podman command's own start-up on a busy machine is not counted)."""
        requested = time.time_ns()
        engine("stop", "-t", str(timeout), self.name, timeout=timeout + 60)
        finished = engine("inspect", "--format", "{{.State.FinishedAt.UnixNano}}", self.name)
        return int(self.state()["ExitCode"]), (int(finished.stdout) - requested) / 1e9


@contextlib.contextmanager
def running_container(
    name: str,
    http_port: int,
    run_args: Sequence[str] = (),
    command: Sequence[str] = (),
    ready_timeout: float = 120,
) -> Iterator[Container]:
    """``podman run -d`` image ``name``; yields once ``/health/status`` answers 200 on
    ``http_port`` of the host. ``run_args`` say how the port gets there (``-p`` or host network).
    The container is removed afterwards, whatever happened."""
    container = Container(f"modelshelf-test-{name}-{uuid.uuid4().hex[:8]}", http_port)
    engine("run", "-d", "--name", container.name, *run_args, image(name), *command)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if container.get("/health/status").status_code == 200:
                    break
            if not container.state()["Running"]:
                raise RuntimeError(f"{name} exited before it was ready:\n{container.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {ready_timeout} s:\n{container.logs()}")
            time.sleep(0.25)
        yield container
    finally:
        container.client.close()
        engine("rm", "-f", "-t", "0", container.name, check=False, timeout=60)
