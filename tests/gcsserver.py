"""A real GCS endpoint on loopback: ``gcp-storage-emulator`` in its own process, one per session.

google-cloud-storage reaches it through ``STORAGE_EMULATOR_HOST`` (no credentials needed).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from microservice import BIN, free_port, stop


@dataclass(frozen=True)
class GCSServer:
    endpoint: str
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this endpoint instead of Google's."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="modelshelf-test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def upload(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Create ``bucket`` if needed and write ``{name: content}`` into it."""
        client = self.client()
        found = client.lookup_bucket(bucket) or client.create_bucket(bucket)
        for name, data in objects.items():
            found.blob(name).upload_from_string(data)

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> str:
        files = {
            f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        self.upload(bucket, files)
        return f"gs://{bucket}/{prefix}"


@contextlib.contextmanager
def running_gcs_server(timeout: float = 30) -> Iterator[GCSServer]:
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - the server writes it until stopped
    process = subprocess.Popen(
        [
            str(BIN / "gcp-storage-emulator"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--quiet",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}")
            try:
                httpx.get(f"{endpoint}/storage/v1/b", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"gcp-storage-emulator not answering on {endpoint}"
                    ) from None
                time.sleep(0.1)
        yield GCSServer(endpoint, process)
    finally:
        stop(process)
        log.close()
