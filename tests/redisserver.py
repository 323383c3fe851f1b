"""A real Redis on loopback: ``redis-server`` (Debian package), a free port, nothing on disk."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from microservice import free_port, stop


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """What a server process needs to reach this Redis (the names Kubernetes would set)."""
        return {"REDIS_SERVICE_HOST": "127.0.0.1", "REDIS_SERVICE_PORT": str(self.port)}

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)


@contextlib.contextmanager
def running_redis(timeout: float = 20) -> Iterator[RedisServer]:
    """Start ``redis-server`` (skip the test if it is not installed: ``make install`` adds it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="modelshelf-redis-") as workdir:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--logfile",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = RedisServer(port, process)
        try:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if server.client().ping():
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield server
        finally:
            stop(process)
