"""``s3://bucket/key`` (and rclone ``s3:bucket/key``) with boto3.

Settings come from the variables users already have in their secrets:

* endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``S3_ENDPOINT`` (host only, with
  ``S3_USE_HTTPS`` / ``USE_SSL`` choosing the scheme), or rclone's ``RCLONE_CONFIG_<R>_ENDPOINT``;
* TLS: ``S3_VERIFY_SSL=0`` turns verification off, ``AWS_CA_BUNDLE`` names a CA bundle;
* credentials: rclone's ``_ACCESS_KEY_ID`` / ``_SECRET_ACCESS_KEY`` when given, else boto3's own
  chain (environment, profile, web identity, instance role); with none at all, or with
  ``awsAnonymousCredential=true``, requests go unsigned (public buckets).

Transfers: many files at once from a thread pool, big files (``PART_SIZE`` and up) in ranged
parts written at their offsets, with the sizes from the listing so no extra HEAD per file. Every
object and part is checked against the size it should have, a single-part object also against
its ETag (an MD5 unless KMS or customer keys encrypt it); a short or corrupt one is fetched again,
then refused with one line. Reads go through ``_transfer`` (low-speed limit, deadline).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import boto3
import botocore.exceptions as bex
from botocore import UNSIGNED
from botocore.config import Config

from modelshelf.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from modelshelf.storage._location import Location
from modelshelf.storage._sync import Job, Progress, RemoteObject, concurrency
from modelshelf.storage._transfer import (
    MAX_ATTEMPTS,
    AttemptBytes,
    Limits,
    chunk_reader,
    copy_verified,
    etag_md5,
    finish,
    mismatch_error,
    retried,
    stalled_error,
)

PART_SIZE = 8 * 1024 * 1024
_STREAM_ERRORS = (
    bex.ReadTimeoutError,
    bex.ResponseStreamingError,
    bex.IncompleteReadError,
    bex.ConnectionClosedError,
    TimeoutError,
    ConnectionError,
)


class _RequestFailedError(Exception):
    """A GET that failed after botocore's own retries: raised as it is, not retried again."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


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


def make_client(
    config: S3Settings, pool_size: int, limits: Limits | None = None
) -> tuple[Any, bool]:
    """A boto3 S3 client, and whether it is unsigned (anonymous, or no credentials found)."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key,
        aws_session_token=config.session_token,
        region_name=config.region,
    )
    unsigned = config.anonymous or session.get_credentials() is None
    limits = limits or Limits()
    options: dict[str, Any] = {
        "region_name": config.region,
        "retries": {"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        "connect_timeout": limits.connect_timeout,
        "read_timeout": limits.speed_window,
        "max_pool_connections": pool_size,
        "s3": {"addressing_style": "path" if config.path_style else "auto"},
    }
    if unsigned:
        options["signature_version"] = UNSIGNED
    client = session.client(
        "s3", endpoint_url=config.endpoint, verify=config.verify, config=Config(**options)
    )
    return client, unsigned


class S3Source:
    """Lists and fetches the objects an S3 location names."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.display = location.display
        self.settings = settings(location)
        self.workers = concurrency()
        self.limits = Limits.from_environ()
        #: Big objects whose ETag is not an MD5 (their parts said KMS or customer keys).
        self._etag_not_md5: set[str] = set()
        self.client, self.unsigned = make_client(self.settings, 2 * self.workers + 4, self.limits)

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
        """Small objects: one GET each; big ones: ranged parts at their offsets. All from one
        thread pool, so a folder of small files and one big file both keep it busy."""
        tasks: list[Callable[[], None]] = []
        for job in jobs:
            size = job.obj.size or 0
            if size < PART_SIZE:
                tasks.append(lambda job=job: self._fetch_small(job, progress))
                continue
            with open(job.path, "wb") as out:
                out.truncate(size)
            for start in range(0, size, PART_SIZE):
                end = min(start + PART_SIZE, size) - 1
                tasks.append(lambda job=job, s=start, e=end: self._fetch_part(job, s, e, progress))
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="modelshelf-s3")
        try:
            for future in [pool.submit(task) for task in tasks]:
                future.result()
            for job in jobs:
                if (job.obj.size or 0) >= PART_SIZE:
                    self._check_whole(job)
                    progress.file_done()
        except (bex.ClientError, bex.BotoCoreError) as exc:
            raise self._error(exc) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for job in jobs:
            job.tag, job.size = job.obj.tag, job.obj.size or 0

    def _fetch_small(self, job: Job, progress: Progress) -> None:
        def get() -> Any:
            return self.client.get_object(Bucket=self.location.bucket, Key=job.obj.ref)

        def write(response: Any, count: Callable[[int], None]) -> None:
            with open(job.path, "wb") as out:
                copy_verified(
                    chunk_reader(response["Body"]),
                    out,
                    count,
                    job.obj.size,
                    _etag_md5(job.obj.tag, response),
                )

        self._attempts(job, get, write, progress)
        progress.file_done()

    def _fetch_part(self, job: Job, start: int, end: int, progress: Progress) -> None:
        def get() -> Any:
            return self.client.get_object(
                Bucket=self.location.bucket, Key=job.obj.ref, Range=f"bytes={start}-{end}"
            )

        def write(response: Any, count: Callable[[int], None]) -> None:
            if _etag_md5(job.obj.tag, response) is None:
                self._etag_not_md5.add(job.obj.relpath)
            with _OffsetWriter(job.path, start) as out:
                copy_verified(chunk_reader(response["Body"]), out, count, end - start + 1)

        self._attempts(job, get, write, progress)

    def _attempts(
        self,
        job: Job,
        get: Callable[[], Any],
        write: Callable[[Any, Callable[[int], None]], None],
        progress: Progress,
    ) -> None:
        """``get`` then ``write``, again when the body broke off or did not verify (the one
        retry policy, ``_transfer.retried``; botocore retries the requests themselves)."""

        def attempt(taken: AttemptBytes) -> None:
            try:
                response = get()
            except _STREAM_ERRORS as exc:  # botocore retried the request: not ours to retry
                raise _RequestFailedError(exc) from exc
            body = response["Body"]
            try:
                write(response, taken.count)
                finish(body)
            finally:
                body.close()  # a no-op once ``finish`` released the connection

        try:
            retried(
                progress,
                attempt,
                _STREAM_ERRORS,  # the connection broke mid-body: botocore does not retry
                lambda exc: mismatch_error(self.display, job.obj.relpath, exc),
                lambda exc, taken: stalled_error(
                    self.display, job.obj.relpath, self.limits.speed_window
                ),
            )
        except _RequestFailedError as failed:
            raise failed.error from None

    def _check_whole(self, job: Job) -> None:
        """A big object stored in one part has an MD5 ETag: compare the assembled file."""
        md5 = _etag_md5(job.obj.tag, None)
        if md5 is None or job.obj.relpath in self._etag_not_md5:
            return
        digest = hashlib.md5(usedforsecurity=False)
        with open(job.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != md5:
            raise StorageError(
                self.display,
                f"{job.obj.relpath}: the assembled file's MD5 is {digest.hexdigest()}, the "
                f"ETag says {md5}: was the object replaced while downloading? Try again",
            )

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


class _OffsetWriter:
    """Writes a part into an existing file at its offset (parts land in any order)."""

    def __init__(self, path: Any, offset: int) -> None:
        self._fd = os.open(path, os.O_WRONLY)
        self._offset = offset

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            done = os.pwrite(self._fd, view, self._offset)
            self._offset += done
            view = view[done:]
        return len(data)

    def __enter__(self) -> _OffsetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def _etag_md5(etag: str | None, response: dict | None) -> str | None:
    """The object's MD5 if its ETag is one: a single-part upload (no ``-N`` suffix), not
    encrypted with KMS or a customer key (their ETags are not MD5s)."""
    if response is not None and (
        response.get("ServerSideEncryption", "AES256") != "AES256"
        or response.get("SSECustomerAlgorithm")
    ):
        return None
    return etag_md5(etag)


def _code(exc: bex.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
