"""A real GCS endpoint on loopback: ``gcp-storage-emulator`` in its own process, one per session.

google-cloud-storage reaches it through ``STORAGE_EMULATOR_HOST`` (no credentials needed).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from microservice import BIN, free_port, http_answers, running_process


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
    endpoint = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
        "--in-memory", "--quiet",
    ]  # fmt: skip
    ready = http_answers(f"{endpoint}/storage/v1/b")
    with running_process(command, ready, timeout=timeout) as process:
        yield GCSServer(endpoint, process)
