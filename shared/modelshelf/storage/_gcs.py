"""``gs://bucket/key`` (and rclone ``gs:bucket/key``) with google-cloud-storage.

Credentials: rclone's ``RCLONE_CONFIG_<R>_SERVICE_ACCOUNT_FILE`` / ``_SERVICE_ACCOUNT_CREDENTIALS``
/ ``_ANONYMOUS`` when the URI names that remote; otherwise the library's own resolution
(``GOOGLE_APPLICATION_CREDENTIALS``, workload identity, ``STORAGE_EMULATOR_HOST``); with no
credentials anywhere, anonymous requests (public buckets). Retries are bounded in time.
Files stream from each object's media URL on the client's session through ``_transfer``
(low-speed limit, deadline), checked against the listing's size and MD5; a short or corrupt one
is fetched again, then refused with one line.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

import google.api_core.exceptions as gex
import google.auth.exceptions as gauth
import requests
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

try:
    from google.cloud.storage.exceptions import DataCorruption
except ImportError:  # pragma: no cover - google-cloud-storage < 3
    from google.resumable_media.common import DataCorruption

from modelshelf.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from modelshelf.storage._location import Location
from modelshelf.storage._sync import Job, Progress, RemoteObject, concurrency
from modelshelf.storage._transfer import (
    AttemptBytes,
    Limits,
    RetryableError,
    TransferMismatchError,
    chunk_reader,
    copy_verified,
    finish,
    mismatch_error,
    retried,
    stalled_error,
)

RETRY_SECONDS = 20.0
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, gex.RetryError)


def _retry() -> Any:
    if hasattr(DEFAULT_RETRY, "with_timeout"):
        return DEFAULT_RETRY.with_timeout(RETRY_SECONDS)
    return DEFAULT_RETRY.with_deadline(RETRY_SECONDS)  # pragma: no cover - older api-core


def make_client(location: Location) -> tuple[Any, bool]:
    """A storage client, and whether it is anonymous."""
    rclone = location.rclone if location.rclone_remote else {}
    if str(rclone.get("anonymous", "")).lower() in ("1", "true"):
        return storage.Client.create_anonymous_client(), True
    if rclone.get("service_account_file"):
        return storage.Client.from_service_account_json(rclone["service_account_file"]), False
    if rclone.get("service_account_credentials"):
        info = json.loads(rclone["service_account_credentials"])
        return storage.Client.from_service_account_info(info), False
    try:
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
    except gauth.DefaultCredentialsError:
        return storage.Client.create_anonymous_client(), True
    return client, False


class GCSSource:
    """Lists and fetches the objects a GCS location names."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.display = location.display
        self.workers = concurrency()
        self.client, self.anonymous = make_client(location)
        self.retry = _retry()
        limits = Limits.from_environ()
        self.timeout = (limits.connect_timeout, limits.speed_window)
        #: The client's authorised requests session (private in google-cloud-storage; without
        #: it, downloads go through the library).
        self._session: Any = getattr(self.client, "_http", None)
        #: Where the listing went (``STORAGE_EMULATOR_HOST`` or a custom endpoint included):
        #: media downloads go there too, as the library builds them without a media link.
        self._endpoint: str = getattr(self.client, "api_endpoint", "") or ""

    def list(self) -> list[RemoteObject]:
        bucket_name, key = self.location.bucket, self.location.key
        folder = f"{key}/" if key else ""
        try:
            blobs = self.client.list_blobs(
                bucket_name, prefix=folder or None, retry=self.retry, timeout=self.timeout
            )
            objects = [
                RemoteObject(blob.name[len(folder) :], blob.size, str(blob.generation), blob)
                for blob in blobs
                if not blob.name.endswith("/")
            ]
            if objects:
                return objects
            if not key:
                raise StorageNotFoundError(self.display, f"bucket {bucket_name!r} holds no objects")
            blob = self.client.bucket(bucket_name).get_blob(
                key, retry=self.retry, timeout=self.timeout
            )
        except gex.NotFound as exc:
            raise StorageNotFoundError(
                self.display,
                f"bucket {bucket_name!r} does not exist ({self._where()}): check the name",
            ) from exc
        except (gex.GoogleAPICallError, *_UNREACHABLE) as exc:
            raise self._error(exc) from None
        if blob is None:
            raise StorageNotFoundError(
                self.display,
                f"no object {key!r} and no objects under {folder!r} in bucket {bucket_name!r} "
                f"({self._where()}): check the path",
            )
        return [RemoteObject(PurePosixPath(key).name, blob.size, str(blob.generation), blob)]

    def fetch(self, jobs: Sequence[Job], progress: Progress) -> None:
        def fetch_one(job: Job) -> None:
            if self._session is not None and self._endpoint:
                self._fetch_streamed(job, progress)
            else:
                self._fetch_with_library(job, progress)
            job.tag, job.size = job.obj.tag, job.path.stat().st_size
            progress.file_done()

        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="modelshelf-gcs") as pool:
                for future in [pool.submit(fetch_one, job) for job in jobs]:
                    future.result()
        except gex.NotFound as exc:
            raise StorageNotFoundError(
                self.display, f"object not found ({self._where()}): was it deleted meanwhile?"
            ) from exc
        except (gex.GoogleAPICallError, *_UNREACHABLE) as exc:
            raise self._error(exc) from None

    def _fetch_streamed(self, job: Job, progress: Progress) -> None:
        """GET the object's media URL on the client's (authorised) session, read through
        ``_transfer`` (low-speed limit, deadline) and checked against the size and MD5 the
        listing gave. An object stored gzip-encoded is served decompressed: only its own
        check (none) applies then."""
        blob = job.obj.ref
        md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None

        def attempt(taken: AttemptBytes) -> None:
            with self._session.get(
                f"{self._endpoint}/download/storage/v1{blob.path}",
                params={"alt": "media", "generation": blob.generation},
                stream=True,
                timeout=self.timeout,
                headers={"Accept-Encoding": "identity"},
            ) as response:
                if response.status_code != 200:
                    error = self._status_error(response.status_code)
                    raise RetryableError(error) if response.status_code >= 500 else error
                transcoded = bool(response.headers.get("x-goog-stored-content-encoding"))
                with open(job.path, "wb") as out:
                    copy_verified(
                        chunk_reader(response.raw),
                        out,
                        taken.count,
                        None if transcoded else job.obj.size,
                        None if transcoded else md5,
                    )
                finish(response.raw)

        retried(
            progress,
            attempt,
            (requests.exceptions.RequestException, TimeoutError, ConnectionError),
            lambda exc: mismatch_error(self.display, job.obj.relpath, exc, f" ({self._where()})"),
            lambda exc, taken: stalled_error(
                self.display, job.obj.relpath, self.timeout[1], f" ({self._where()})"
            ),
        )

    def _fetch_with_library(self, job: Job, progress: Progress) -> None:
        """Without a session or endpoint: the library's download (it checks CRC32C / MD5)."""

        def attempt(taken: AttemptBytes) -> None:
            try:
                job.obj.ref.download_to_filename(
                    str(job.path), retry=self.retry, timeout=self.timeout
                )
            except DataCorruption as exc:
                detail = exc.args[1] if len(exc.args) > 1 else "checksum mismatch"
                raise TransferMismatchError(detail) from None
            size = job.path.stat().st_size
            if job.obj.size is not None and size != job.obj.size:
                raise TransferMismatchError(
                    f"received {size} of {job.obj.size} bytes (the transfer was cut)"
                )
            taken.count(size)

        retried(
            progress,
            attempt,
            (),  # the library retries requests itself (self.retry)
            lambda exc: mismatch_error(self.display, job.obj.relpath, exc, f" ({self._where()})"),
            lambda exc, taken: stalled_error(self.display, job.obj.relpath, self.timeout[1]),
        )

    def _status_error(self, code: int) -> StorageError:
        if code == 404:
            return StorageNotFoundError(
                self.display, f"object not found ({self._where()}): was it deleted meanwhile?"
            )
        if code in (401, 403):
            return self._error(gex.from_http_status(code, "denied"))
        return StorageError(self.display, f"GCS answered HTTP {code} ({self._where()})")

    def _where(self) -> str:
        endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "Google Cloud Storage"
        return f"{endpoint}, {'anonymous' if self.anonymous else 'signed'} requests"

    def _error(self, exc: Exception) -> StorageError:
        if isinstance(exc, gex.Forbidden | gex.Unauthorized):
            return StorageAccessError(
                self.display,
                f"access denied (HTTP {exc.code}; {self._where()}): check "
                "GOOGLE_APPLICATION_CREDENTIALS (or RCLONE_CONFIG_*_SERVICE_ACCOUNT_FILE), the "
                "service account's roles, and the bucket's permissions",
            )
        if isinstance(exc, _UNREACHABLE):
            return StorageUnreachableError(
                self.display,
                f"the endpoint did not answer within {RETRY_SECONDS:.0f} s of retries "
                f"({self._where()}): check the network (or STORAGE_EMULATOR_HOST)",
            )
        code = getattr(exc, "code", "?")
        return StorageError(self.display, f"GCS answered HTTP {code} ({self._where()})")
