"""``http://`` / ``https://`` single files (signed URLs included), with the standard library.

A repeat download sends ``If-None-Match`` / ``If-Modified-Since`` with the validators of the
last one, so an unchanged file answers 304 and nothing is transferred. The body streams to disk
and is checked against ``Content-Length`` and, where the server states one, the content's MD5
(``Content-MD5``, ``x-goog-hash``, an S3 single-part ETag): a short or altered body is fetched
again, then refused. Connections time out after ``MODELSHELF_DOWNLOAD_CONNECT_TIMEOUT``; reads
after the low-speed window. The query string (where signed URLs keep their signature) and any
user info never reach a log line or an error message.
"""

from __future__ import annotations

import base64
import functools
import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from email.utils import formatdate
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from modelshelf.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from modelshelf.storage._location import Location
from modelshelf.storage._sync import Job, Progress, RemoteObject
from modelshelf.storage._transfer import (
    MAX_ATTEMPTS,
    AttemptBytes,
    Limits,
    RetryableError,
    chunk_reader,
    copy_verified,
    etag_md5,
    retried,
)

_NETWORK_ERRORS = (
    urllib.error.URLError,
    TimeoutError,
    ConnectionError,
    http.client.HTTPException,
    socket.timeout,
)


class _ReadTimeout:
    """Connects within the connect timeout, then reads with the low-speed window as timeout
    (mixed into http.client's connection classes)."""

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]


class _TimedConnection(_ReadTimeout, http.client.HTTPConnection):
    pass


class _TimedTLSConnection(_ReadTimeout, http.client.HTTPSConnection):
    pass


class _TimedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(
            functools.partial(_TimedConnection, read_timeout=self.read_timeout), req
        )


class _TimedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(
            functools.partial(_TimedTLSConnection, read_timeout=self.read_timeout),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


class HTTPSource:
    """One file behind a URL."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.display = location.display
        parts = urlsplit(location.url)
        self.headers: dict[str, str] = {"User-Agent": "modelshelf"}
        #: Sent to this URL's host only: a redirect elsewhere (a CDN, a signed URL) never
        #: gets the user's password.
        self.authorization = ""
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
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
        budget = progress.budget
        limits = budget.limits if budget is not None else Limits()
        opener = urllib.request.build_opener(
            _TimedHTTPHandler(limits.speed_window), _TimedHTTPSHandler(limits.speed_window)
        )

        def attempt(taken: AttemptBytes) -> None:
            request = urllib.request.Request(self.url, headers=headers)
            if self.authorization:
                request.add_unredirected_header("Authorization", self.authorization)
            try:
                with opener.open(request, timeout=limits.connect_timeout) as response:
                    if response.headers.get_content_type() == "text/html":
                        raise self._web_page_error()
                    with open(job.path, "wb") as out:
                        copy_verified(
                            chunk_reader(response),
                            out,
                            taken.count,
                            _announced_size(response.headers),
                            _announced_md5(response.headers),
                        )
                    job.size = job.path.stat().st_size
                    job.tag = _validator(response.headers)
            except urllib.error.HTTPError as exc:
                if exc.code == 304:
                    job.not_modified = True
                    return
                if exc.code >= 500:
                    raise RetryableError(self._status_error(exc.code)) from None
                raise self._status_error(exc.code) from None

        retried(
            progress,
            attempt,
            _NETWORK_ERRORS,
            lambda exc: StorageError(
                self.display,
                f"{exc}, in each of {MAX_ATTEMPTS} attempts: the server or a proxy cuts or "
                "alters the transfer; check the server and its logs",
            ),
            lambda exc, taken: self._network_error(exc, limits, bool(taken.written)),
        )

    def _network_error(
        self, exc: Exception, limits: Limits, started: bool
    ) -> StorageUnreachableError:
        reason = getattr(exc, "reason", exc)
        if started and isinstance(reason, TimeoutError | socket.timeout):
            return StorageUnreachableError(
                self.display,
                f"no data for {limits.speed_window:g} s (MODELSHELF_DOWNLOAD_SPEED_WINDOW) in "
                f"each of {MAX_ATTEMPTS} attempts: check the network, a proxy, and the server",
            )
        return StorageUnreachableError(
            self.display,
            f"no answer after {MAX_ATTEMPTS} attempts ({type(reason).__name__}; connect timeout "
            f"{limits.connect_timeout:g} s, read timeout {limits.speed_window:g} s): check the "
            "host name, the network, and for https the certificate (SSL_CERT_FILE)",
        )

    def _web_page_error(self) -> StorageError:
        """A URL naming a folder answers its listing as a web page; saved, it would fail later
        as "no model file", which hides what was wrong."""
        return StorageError(
            self.display,
            "the URL answers a web page (Content-Type: text/html), not a file; a folder "
            "listing? An http(s) model_uri names one file (…/model.joblib, …/model.tar.gz); "
            "for a folder use an s3:// or gs:// URI, or a tarball",
        )

    def _status_error(self, code: int) -> StorageError:
        if code == 404:
            return StorageNotFoundError(self.display, "HTTP 404: check the URL")
        if code in (401, 403):
            return StorageAccessError(
                self.display,
                f"HTTP {code}: check the URL's credentials or signature (has it expired?)",
            )
        return StorageError(self.display, f"HTTP {code}")


def _announced_size(headers: Any) -> int | None:
    """The body's size, when the server gave one that applies to the bytes we read."""
    if headers.get("Content-Encoding") or "chunked" in (headers.get("Transfer-Encoding") or ""):
        return None
    try:
        return int(headers.get("Content-Length", ""))
    except ValueError:
        return None


def _announced_md5(headers: Any) -> str | None:
    """The content's MD5 (hex) where the server states it: ``Content-MD5``, Google's
    ``x-goog-hash: md5=…``, or an S3 ETag of a single-part object stored without KMS or
    customer keys (the only ETags that are an MD5)."""
    if headers.get("Content-Encoding"):
        return None
    values = [headers.get("Content-MD5") or ""]
    values += [
        part.strip()[4:]
        for part in (headers.get("x-goog-hash") or "").split(",")
        if part.strip().startswith("md5=")
    ]
    for value in values:
        if value:
            try:
                return base64.b64decode(value, validate=True).hex()
            except ValueError:
                continue
    if (
        headers.get("x-amz-request-id")
        and headers.get("x-amz-server-side-encryption", "AES256") == "AES256"
        and not headers.get("x-amz-server-side-encryption-customer-algorithm")
    ):
        return etag_md5(headers.get("ETag"))
    return None


def _validator(headers: Any) -> str:
    """What to send next time to ask "changed since?": the ETag, else Last-Modified."""
    etag = headers.get("ETag")
    if etag:
        return f"etag:{etag}"
    modified = headers.get("Last-Modified")
    if modified:
        return f"modified:{modified}"
    return f"fetched:{formatdate(usegmt=True)}"  # no validator: next time downloads again
