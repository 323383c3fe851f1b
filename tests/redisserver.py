"""A real Redis on loopback: ``redis-server`` (Debian package), a free port, nothing on disk."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from microservice import free_port, running_process


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
        command = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir, "--logfile", "",
        ]  # fmt: skip

        def answers_ping() -> bool:
            with (
                contextlib.suppress(redis.ConnectionError),
                redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client,
            ):
                return bool(client.ping())
            return False

        with running_process(command, answers_ping, timeout=timeout) as process:
            yield RedisServer(port, process)
