"""Fixtures for the storage tests: an S3 endpoint that checks signatures and logs every request.
The misbehaving servers (``faulty``) are importable from here."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from microservice import BIN, free_port, http_answers, running_process

sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass
class AuditedS3:
    """moto_server with authentication on (after the set-up calls) and its access log."""

    endpoint: str
    access_key: str
    secret_key: str
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def requests_since(self, offset: int) -> list[str]:
        """The request lines (``GET /bucket/key``) the server logged after byte ``offset``."""
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        return [line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2]


@pytest.fixture(scope="session")
def audited_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedS3]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("audited-s3") / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    with running_process(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        http_answers(f"{endpoint}/moto-api/"),
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"},  # create user, key, policy
        log_path=log_path,
    ):
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
        )
        iam.create_user(UserName="modelshelf")
        key = iam.create_access_key(UserName="modelshelf")["AccessKey"]
        iam.attach_user_policy(
            UserName="modelshelf", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
        )
        yield AuditedS3(endpoint, key["AccessKeyId"], key["SecretAccessKey"], log_path)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Set environment variables for in-process downloads; a fresh cache folder per test."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "RCLONE_CONFIG_", "S3_", "GOOGLE_", "STORAGE_EMULATOR")):
            monkeypatch.delenv(name)
    for name in ("USE_SSL", "awsAnonymousCredential"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELSHELF_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))

    def apply(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as ``{relative posix path: content}``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def tree():
    """``tree(folder)``: every file under it as ``{relative posix path: content}``."""
    return read_tree
