"""Bounded, verified transfers: every backend streams through ``copy_verified`` under a ``Budget``.

* Time: a connect timeout, a low-speed limit (fewer than ``MIN_SPEED`` bytes/s over a window of
  ``SPEED_WINDOW`` seconds, a stall included, ends the download) and an overall deadline
  (``MODELSHELF_DOWNLOAD_TIMEOUT``). Per-read socket timeouts alone never fire on an endpoint
  that sends one byte every few seconds; so reads return after each chunk the network delivers
  (``chunk_reader``), and the budget is checked after every one.
* Content: the bytes received are compared with what the store said (Content-Length, the
  listing's size) and, where it gives one, its MD5. A mismatch (``TransferMismatchError``):
  the backend retries, then fails with one line; nothing unverified gets a manifest entry.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from modelshelf.errors import StorageError, StorageUnreachableError
from modelshelf.number_settings import env_number

#: Read size; a read returns earlier with whatever one receive delivered.
CHUNK = 1 << 20

DEFAULT_TIMEOUT = 3600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MIN_SPEED = 1024
DEFAULT_SPEED_WINDOW = 30.0
#: How often a backend tries one object (its body broke off or did not verify) before failing.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Limits:
    """The time limits of one download, from the environment."""

    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    min_speed: float = DEFAULT_MIN_SPEED  # bytes/s
    speed_window: float = DEFAULT_SPEED_WINDOW

    @classmethod
    def from_environ(cls) -> Limits:
        seconds = "a number of seconds > 0"
        return cls(
            timeout=env_number("MODELSHELF_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT, seconds),
            connect_timeout=env_number(
                "MODELSHELF_DOWNLOAD_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, seconds
            ),
            # A rate, not a count: 0.5 is a byte every 2 s (int() made it 0, the check off).
            min_speed=env_number(
                "MODELSHELF_DOWNLOAD_MIN_SPEED",
                DEFAULT_MIN_SPEED,
                "a number of bytes per second (fractions too), or 0 to turn the check off",
                zero=True,
            ),
            speed_window=env_number(
                "MODELSHELF_DOWNLOAD_SPEED_WINDOW", DEFAULT_SPEED_WINDOW, seconds
            ),
        )


class Budget:
    """The deadline and the low-speed window of one download, shared by its threads."""

    def __init__(self, display: str, limits: Limits) -> None:
        self.display = display
        self.limits = limits
        self.started = time.monotonic()
        self.deadline = self.started + limits.timeout
        self.cancelled = False
        self._lock = threading.Lock()
        self._bytes = 0
        self._window_start = self.started
        self._window_bytes = 0

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def check(self) -> None:
        """Raise the one-line error if the deadline passed or the download was abandoned."""
        if self.cancelled or time.monotonic() >= self.deadline:
            raise self.deadline_error()

    def observe(self, count: int) -> None:
        """``count`` more bytes arrived: check the deadline and the speed over the window."""
        now = time.monotonic()
        with self._lock:
            self._bytes += count
            elapsed = now - self._window_start
            if elapsed >= self.limits.speed_window:
                moved = self._bytes - self._window_bytes
                if moved < self.limits.min_speed * elapsed:
                    raise self.slow_error(moved, elapsed)
                self._window_start, self._window_bytes = now, self._bytes
        self.check()

    def deadline_error(self) -> StorageUnreachableError:
        return StorageUnreachableError(
            self.display,
            f"not finished within {self.limits.timeout:g} s (MODELSHELF_DOWNLOAD_TIMEOUT): "
            "check the network and the endpoint, or raise the limit for a very large model",
        )

    def slow_error(self, moved: int, seconds: float) -> StorageUnreachableError:
        return StorageUnreachableError(
            self.display,
            f"{moved} bytes in {seconds:.0f} s, below {self.limits.min_speed:.10g} bytes/s "
            "(MODELSHELF_DOWNLOAD_MIN_SPEED over MODELSHELF_DOWNLOAD_SPEED_WINDOW): check the "
            "network, a proxy, and the endpoint's load",
        )

    def run(self, work: Callable[[], Any]) -> Any:
        """``work()`` in a thread, given up at the deadline (a call we cannot interrupt, such as
        a listing a stalled endpoint never finishes, still ends on time). An abandoned thread
        stops at its next check; it may hold the download lock until then."""
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = work()
            except BaseException as exc:  # handed to the caller's thread as it is
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="modelshelf-download", daemon=True)
        thread.start()
        thread.join(self.remaining() + 1.0)
        if thread.is_alive():
            self.cancelled = True
            raise self.deadline_error()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")


def attempts(budget: Budget | None) -> Iterator[int]:
    """1 to ``MAX_ATTEMPTS``, the download's deadline checked before each attempt."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if budget is not None:
            budget.check()
        yield attempt


#: Seconds before attempt n + 1: ``RETRY_BACKOFF * n`` (every storage, every retried failure).
RETRY_BACKOFF = 0.5


class RetryableError(Exception):
    """An attempt's failure worth another attempt (an HTTP 5xx): ``error`` is what the last
    attempt raises."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


def retried(
    progress: Any,
    attempt: Callable[[AttemptBytes], None],
    broken: tuple[type[BaseException], ...],
    mismatch: Callable[[TransferMismatchError], StorageError],
    stalled: Callable[[BaseException, AttemptBytes], StorageError],
) -> None:
    """``attempt`` until it returns: the one retry policy of every storage. At most
    ``MAX_ATTEMPTS`` attempts, the download's deadline checked before each, ``RETRY_BACKOFF``
    times the attempt's number in seconds between them. Retried: a body short, long or corrupt
    (``TransferMismatchError``; after the last, ``mismatch(exc)`` is raised), a connection that
    broke or stalled (the backend's ``broken`` exceptions; then ``stalled(exc, bytes)``), and
    ``RetryableError``. A failed attempt's bytes are taken back from the progress; any other
    exception is raised at once."""
    for number in attempts(progress.budget):
        taken = AttemptBytes(progress.add_bytes)
        try:
            attempt(taken)
            return
        except RetryableError as exc:
            final: StorageError = exc.error
        except TransferMismatchError as exc:
            final = mismatch(exc)
        except broken as exc:
            final = stalled(exc, taken)
        taken.take_back()
        if number == MAX_ATTEMPTS:
            raise final from None
        time.sleep(RETRY_BACKOFF * number)


class AttemptBytes:
    """The bytes one attempt reported to the progress; a failed attempt takes them back, so the
    next one does not count them twice."""

    def __init__(self, add_bytes: Callable[[int], None]) -> None:
        self.written = 0
        self._add_bytes = add_bytes

    def count(self, n: int) -> None:
        self.written += n
        self._add_bytes(n)

    def take_back(self) -> None:
        self._add_bytes(-self.written)


def etag_md5(etag: str | None) -> str | None:
    """``etag`` as an MD5 (hex, lower case) when it has an MD5's form: 32 hex digits, without
    the ``-N`` of a multipart upload. Whether the store's ETags are MD5s is the caller's check."""
    tag = (etag or "").strip('"')
    if len(tag) != 32 or any(c not in "0123456789abcdefABCDEF" for c in tag):
        return None
    return tag.lower()


class TransferMismatchError(Exception):
    """What arrived is not what the store described (short, long, or a wrong checksum)."""


def mismatch_error(display: str, relpath: str, detail: object, where: str = "") -> StorageError:
    """The one line when every attempt's body was short, long or corrupt; ``where`` (such as
    `` (endpoint, signed requests)``) says which endpoint answered."""
    return StorageError(
        display,
        f"{relpath}: {detail}, in each of {MAX_ATTEMPTS} attempts: check the endpoint and any "
        f"proxy in front of it{where}",
    )


def stalled_error(
    display: str, relpath: str, speed_window: float, where: str = ""
) -> StorageUnreachableError:
    """The one line when every attempt's connection broke or stalled mid-body."""
    return StorageUnreachableError(
        display,
        f"{relpath}: the connection broke or stalled (no data for {speed_window:g} s, "
        f"MODELSHELF_DOWNLOAD_SPEED_WINDOW) in each of {MAX_ATTEMPTS} attempts{where}: check "
        "the network and the endpoint",
    )


def chunk_reader(body: Any) -> Callable[[int], bytes]:
    """A ``read(n)`` on ``body`` that returns as soon as one receive delivered data.

    ``read(n)`` of http.client and urllib3 waits until ``n`` bytes arrived; an endpoint sending
    a byte every few seconds would hold it for hours, out of reach of any check. http.client's
    ``read1`` returns after one receive. ``body`` is an http.client response (urllib), or a
    botocore ``StreamingBody`` / urllib3 response whose http.client response is used directly
    when the body is not content-encoded.
    """
    if hasattr(body, "read1") and hasattr(body, "getheader"):
        return body.read1  # http.client.HTTPResponse
    raw = getattr(body, "_raw_stream", body)
    fp = getattr(raw, "_fp", None)
    headers = getattr(raw, "headers", {}) or {}
    if fp is not None and hasattr(fp, "read1") and not headers.get("content-encoding"):
        return fp.read1
    return body.read


def finish(body: Any) -> None:
    """After a complete read through ``chunk_reader``: hand the connection back to its pool.

    http.client's ``read1`` does not mark a response finished when its last byte is read (its
    ``read`` does); without this the pooled connection could not be reused and every object
    would open a new one."""
    raw = getattr(body, "_raw_stream", body)
    fp = getattr(raw, "_fp", None)
    if fp is not None and hasattr(fp, "isclosed") and not fp.isclosed():
        fp.read()  # nothing left: marks the response complete
    release = getattr(raw, "release_conn", None)
    if release is not None:
        release()


def copy_verified(
    read: Callable[[int], bytes],
    out: IO[bytes],
    on_bytes: Callable[[int], None],
    expected_size: int | None,
    md5_hex: str | None = None,
) -> int:
    """Copy ``read`` into ``out`` until it ends; the byte count. ``TransferMismatchError`` if
    the count is not ``expected_size`` or the content's MD5 is not ``md5_hex`` (when given)."""
    digest = hashlib.md5(usedforsecurity=False) if md5_hex else None
    written = 0
    while True:
        chunk = read(CHUNK)
        if not chunk:
            break
        out.write(chunk)
        written += len(chunk)
        if digest is not None:
            digest.update(chunk)
        on_bytes(len(chunk))
        if expected_size is not None and written > expected_size:
            raise TransferMismatchError(f"received more than the {expected_size} bytes announced")
    if expected_size is not None and written != expected_size:
        raise TransferMismatchError(
            f"received {written} of {expected_size} bytes (the transfer was cut)"
        )
    if digest is not None and md5_hex and digest.hexdigest() != md5_hex.lower():
        raise TransferMismatchError(
            f"the content's MD5 is {digest.hexdigest()}, the store says {md5_hex}"
        )
    return written
