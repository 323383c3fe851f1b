"""``s3://bucket/key`` (and rclone ``s3:bucket/key``) with boto3.

Settings come from the variables users already have in their secrets:

* endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``S3_ENDPOINT`` (host only, with
  ``S3_USE_HTTPS`` / ``USE_SSL`` choosing the scheme), or rclone's ``RCLONE_CONFIG_<R>_ENDPOINT``;
* TLS: ``S3_VERIFY_SSL=0`` turns verification off, ``AWS_CA_BUNDLE`` names a CA bundle;
* credentials: rclone's ``_ACCESS_KEY_ID`` / ``_SECRET_ACCESS_KEY`` when given, else boto3's own
  chain (environment, profile, web identity, instance role); with none at all, or with
  ``awsAnonymousCredential=true``, requests go unsigned (public buckets).

Transfers use s3transfer, the engine of the AWS CLI: many files at once, big files in ranged
parts straight to disk, with the sizes from the listing so no extra HEAD per file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import boto3
import botocore.exceptions as bex
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore import UNSIGNED
from botocore.config import Config
from s3transfer.subscribers import BaseSubscriber

from modelshelf.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from modelshelf.storage._location import Location
from modelshelf.storage._sync import Job, Progress, RemoteObject, concurrency

MAX_ATTEMPTS = 3
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
PART_SIZE = 8 * 1024 * 1024
STREAM_CHUNK = 1024 * 1024
_STREAM_ERRORS = (
    bex.ReadTimeoutError,
    bex.ResponseStreamingError,
    bex.IncompleteReadError,
    bex.ConnectionClosedError,
)

_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class S3Settings:
    endpoint: str | None
    region: str
    verify: bool | str
    path_style: bool
    anonymous: bool
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def describe(self, unsigned: bool) -> str:
        """The settings worth checking, without secrets."""
        where = self.endpoint or f"AWS S3 ({self.region})"
        how = "anonymous" if unsigned else "signed"
        return f"endpoint {where}, {how} requests"


def settings(location: Location) -> S3Settings:
    """The S3 settings that apply to ``location`` from env and rclone config."""
    env = os.environ
    rclone = location.rclone
    own = bool(location.rclone_remote)  # "remote:bucket/key": its rclone config wins

    def pick(aws_value: str | None, rclone_value: str | None) -> str | None:
        first, second = (rclone_value, aws_value) if own else (aws_value, rclone_value)
        return first or second or None

    https = _flag(env.get("S3_USE_HTTPS") or env.get("USE_SSL"))
    endpoint = pick(
        env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or env.get("S3_ENDPOINT"),
        rclone.get("endpoint"),
    )
    if endpoint and "://" not in endpoint:
        endpoint = ("http://" if https is False else "https://") + endpoint
    region = pick(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"), rclone.get("region"))
    verify: bool | str = True
    if _flag(env.get("S3_VERIFY_SSL")) is False:
        verify = False
    elif env.get("AWS_CA_BUNDLE"):
        verify = env["AWS_CA_BUNDLE"]
    path_style = bool(endpoint) and not _flag(env.get("S3_USER_VIRTUAL_BUCKET"))
    if _flag(rclone.get("force_path_style")) is False:
        path_style = False
    access_key = secret_key = token = None
    if rclone.get("access_key_id") and (own or not env.get("AWS_ACCESS_KEY_ID")):
        access_key = rclone["access_key_id"]
        secret_key = rclone.get("secret_access_key", "")
        token = rclone.get("session_token")
    anonymous = bool(_flag(env.get("awsAnonymousCredential")))
    if own and not access_key and _flag(rclone.get("env_auth")) is False:
        anonymous = True  # rclone: no keys and env_auth=false means anonymous access
    return S3Settings(
        endpoint=endpoint,
        region=region or "us-east-1",
        verify=verify,
        path_style=path_style,
        anonymous=anonymous,
        access_key=access_key,
        secret_key=secret_key,
        session_token=token,
    )


def make_client(config: S3Settings, pool_size: int) -> tuple[Any, bool]:
    """A boto3 S3 client, and whether it is unsigned (anonymous, or no credentials found)."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key,
        aws_session_token=config.session_token,
        region_name=config.region,
    )
    unsigned = config.anonymous or session.get_credentials() is None
    options: dict[str, Any] = {
        "region_name": config.region,
        "retries": {"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "max_pool_connections": pool_size,
        "s3": {"addressing_style": "path" if config.path_style else "auto"},
    }
    if unsigned:
        options["signature_version"] = UNSIGNED
    client = session.client(
        "s3", endpoint_url=config.endpoint, verify=config.verify, config=Config(**options)
    )
    return client, unsigned


class _Tracker(BaseSubscriber):
    """Feeds s3transfer the size we already know (no HEAD per file) and counts bytes."""

    def __init__(self, size: int, progress: Progress) -> None:
        self._size = size
        self._progress = progress

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._progress.add_bytes(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self._progress.file_done()


class S3Source:
    """Lists and fetches the objects an S3 location names."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.display = location.display
        self.settings = settings(location)
        self.workers = concurrency()
        self.client, self.unsigned = make_client(self.settings, 2 * self.workers + 4)

    def list(self) -> list[RemoteObject]:
        bucket, key = self.location.bucket, self.location.key
        folder = f"{key}/" if key else ""
        objects = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=folder
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"]
                    if name.endswith("/"):  # a "folder" marker some tools create
                        continue
                    tag = item.get("ETag", "").strip('"')
                    objects.append(RemoteObject(name[len(folder) :], item["Size"], tag, name))
            if objects:
                return objects
            if not key:
                raise StorageNotFoundError(self.display, f"bucket {bucket!r} holds no objects")
            head = self.client.head_object(Bucket=bucket, Key=key)
        except bex.ClientError as exc:
            if _code(exc) in _MISSING and key:
                raise StorageNotFoundError(
                    self.display,
                    f"no object {key!r} and no objects under {folder!r} in bucket {bucket!r} "
                    f"({self.settings.describe(self.unsigned)}): check the path",
                ) from None
            raise self._error(exc) from None
        except bex.BotoCoreError as exc:
            raise self._error(exc) from None
        name = PurePosixPath(key).name
        return [RemoteObject(name, head["ContentLength"], head.get("ETag", "").strip('"'), key)]

    def fetch(self, jobs: Sequence[Job], progress: Progress) -> None:
        """Small objects: one GET each from a thread pool (cheapest per file). Big ones:
        s3transfer's ranged parts, streamed to disk, at the same time."""
        small = [job for job in jobs if (job.obj.size or 0) < PART_SIZE]
        big = [job for job in jobs if (job.obj.size or 0) >= PART_SIZE]
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="modelshelf-s3")
        try:
            futures = [pool.submit(self._fetch_small, job, progress) for job in small]
            if big:
                self._fetch_big(big, progress)
            for future in futures:
                future.result()
        except (bex.ClientError, bex.BotoCoreError) as exc:
            raise self._error(exc) from None
        except Exception as exc:  # s3transfer wraps some failures (e.g. retries exhausted)
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, bex.ClientError | bex.BotoCoreError):
                raise self._error(cause) from None
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for job in jobs:
            job.tag, job.size = job.obj.tag, job.obj.size or 0

    def _fetch_small(self, job: Job, progress: Progress) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            written = 0
            try:
                response = self.client.get_object(Bucket=self.location.bucket, Key=job.obj.ref)
                with open(job.path, "wb") as out:
                    for chunk in response["Body"].iter_chunks(STREAM_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                progress.add_bytes(written)
                progress.file_done()
                return
            except _STREAM_ERRORS:  # the connection broke mid-body: botocore does not retry
                if attempt == MAX_ATTEMPTS:
                    raise

    def _fetch_big(self, jobs: Sequence[Job], progress: Progress) -> None:
        config = TransferConfig(
            max_concurrency=self.workers,
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            num_download_attempts=MAX_ATTEMPTS,
        )
        with create_transfer_manager(self.client, config) as manager:
            futures = [
                manager.download(
                    self.location.bucket,
                    job.obj.ref,
                    str(job.path),
                    subscribers=[_Tracker(job.obj.size or 0, progress)],
                )
                for job in jobs
            ]
            for future in futures:
                future.result()

    def _error(self, exc: Exception) -> StorageError:
        """A typed error that says what to check; never the credentials."""
        bucket = self.location.bucket
        where = self.settings.describe(self.unsigned)
        if isinstance(exc, bex.ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            if code == "NoSuchBucket":
                return StorageNotFoundError(
                    self.display, f"bucket {bucket!r} does not exist ({where}): check the name"
                )
            if code in _DENIED:
                return StorageAccessError(
                    self.display,
                    f"access denied ({code}, HTTP {status}; {where}): check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY (or RCLONE_CONFIG_*_ACCESS_KEY_ID), the role, and the "
                    "bucket policy",
                )
            if code in _MISSING:
                return StorageNotFoundError(
                    self.display, f"object not found ({where}): was it deleted while downloading?"
                )
            return StorageError(self.display, f"S3 answered {code} (HTTP {status}; {where})")
        if isinstance(exc, bex.SSLError):
            return StorageUnreachableError(
                self.display,
                f"TLS failed ({where}): check AWS_CA_BUNDLE, S3_VERIFY_SSL, or USE_SSL / "
                "S3_USE_HTTPS for a plain-HTTP endpoint",
            )
        if isinstance(
            exc,
            bex.EndpointConnectionError
            | bex.ConnectTimeoutError
            | bex.ReadTimeoutError
            | bex.ConnectionClosedError,
        ):
            return StorageUnreachableError(
                self.display,
                f"the endpoint did not answer after {MAX_ATTEMPTS} attempts ({where}): check "
                "AWS_ENDPOINT_URL (or S3_ENDPOINT), the network, and USE_SSL / S3_USE_HTTPS",
            )
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return StorageAccessError(
                self.display, f"incomplete credentials ({where}): check AWS_SECRET_ACCESS_KEY"
            )
        return StorageError(self.display, f"{type(exc).__name__} ({where})")


def _code(exc: bex.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
