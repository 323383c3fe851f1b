"""``http://`` / ``https://`` single files (signed URLs included), with the standard library.

A repeat download sends ``If-None-Match`` / ``If-Modified-Since`` with the validators of the
last one, so an unchanged file answers 304 and nothing is transferred. The body streams to disk
in fixed-size chunks. The query string (where signed URLs keep their signature) and any user
info never reach a log line or an error message.
"""

from __future__ import annotations

import base64
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from email.utils import formatdate
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from modelshelf.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from modelshelf.storage._location import Location
from modelshelf.storage._sync import Job, Progress, RemoteObject

MAX_ATTEMPTS = 3
TIMEOUT = 30
CHUNK = 1 << 20


class _Counting:
    """A response body that reports bytes read to the progress."""

    def __init__(self, response: object, progress: Progress) -> None:
        self._response = response
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._response.read(size)  # type: ignore[attr-defined]
        self._progress.add_bytes(len(data))
        return data


class HTTPSource:
    """One file behind a URL."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.display = location.display
        parts = urlsplit(location.url)
        self.headers: dict[str, str] = {"User-Agent": "modelshelf"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = (
                "Basic " + base64.b64encode(credentials.encode()).decode()
            )
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self.filename = unquote(PurePosixPath(parts.path).name)
        if not self.filename:
            raise StorageError(
                self.display, "the URL's path names no file: expected …/model.joblib or similar"
            )

    def list(self) -> list[RemoteObject]:
        return [RemoteObject(self.filename, None, None, self.url)]

    def fetch(self, jobs: Sequence[Job], progress: Progress) -> None:
        for job in jobs:
            self._fetch_one(job, progress)
            progress.file_done()

    def _fetch_one(self, job: Job, progress: Progress) -> None:
        headers = dict(self.headers)
        if job.previous_tag:
            kind, _, value = job.previous_tag.partition(":")
            headers["If-None-Match" if kind == "etag" else "If-Modified-Since"] = value
        for attempt in range(1, MAX_ATTEMPTS + 1):
            request = urllib.request.Request(self.url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    with open(job.path, "wb") as out:
                        shutil.copyfileobj(_Counting(response, progress), out, CHUNK)
                    job.size = job.path.stat().st_size
                    job.tag = _validator(response.headers)
                    return
            except urllib.error.HTTPError as exc:
                if exc.code == 304:
                    job.not_modified = True
                    return
                if exc.code >= 500 and attempt < MAX_ATTEMPTS:
                    time.sleep(0.5 * attempt)
                    continue
                raise self._status_error(exc.code) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt < MAX_ATTEMPTS:
                    time.sleep(0.5 * attempt)
                    continue
                reason = getattr(exc, "reason", exc)
                raise StorageUnreachableError(
                    self.display,
                    f"no answer after {MAX_ATTEMPTS} attempts ({type(reason).__name__}): check "
                    "the host name, the network, and for https the certificate (SSL_CERT_FILE)",
                ) from None

    def _status_error(self, code: int) -> StorageError:
        if code == 404:
            return StorageNotFoundError(self.display, "HTTP 404: check the URL")
        if code in (401, 403):
            return StorageAccessError(
                self.display,
                f"HTTP {code}: check the URL's credentials or signature (has it expired?)",
            )
        return StorageError(self.display, f"HTTP {code}")


def _validator(headers: object) -> str:
    """What to send next time to ask "changed since?": the ETag, else Last-Modified."""
    etag = headers.get("ETag")  # type: ignore[attr-defined]
    if etag:
        return f"etag:{etag}"
    modified = headers.get("Last-Modified")  # type: ignore[attr-defined]
    if modified:
        return f"modified:{modified}"
    return f"fetched:{formatdate(usegmt=True)}"  # no validator: next time downloads again
