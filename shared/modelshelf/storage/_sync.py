"""Bring a local folder up to date with what a remote source lists: atomic, incremental, locked.

Every remote backend (S3, GCS, HTTP) only lists objects and fetches files; this module decides
what to transfer and how the folder changes:

* One download of a target at a time, across processes: an exclusive ``flock`` on a lock file.
  (seldon-core-microservice's gRPC child is forked before the parent downloads, so both may ask
  for the same URI at once; the second waits, then finds everything up to date.)
* Incremental: a manifest records each object's size and tag (ETag, generation, HTTP validator);
  objects whose tag and size are unchanged, and whose files are still there, are not transferred.
* Atomic: files are fetched into a temporary folder first. A new target is that folder renamed;
  an existing one gets each finished file by ``os.replace``. A killed download leaves no half file
  under a final name, and its leftovers are removed by the next run.
* Verified: backends compare what arrived with the store's size and checksum (``_transfer``);
  only then is a file moved into place and given a manifest entry.
* Bounded: the whole download, waiting for the lock included, runs under a ``Budget`` (deadline,
  low-speed limit). A failure is recorded beside the lock, so a process that waited for the
  failed download reports that failure at once instead of trying again (seldon-core-microservice
  starts several processes that each ask for the model).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from modelshelf import errors
from modelshelf.errors import StorageError
from modelshelf.number_settings import whole_env_number
from modelshelf.storage import _archive
from modelshelf.storage._transfer import Budget, Limits

logger = logging.getLogger("modelshelf.storage")

MANIFEST_VERSION = 1
PROGRESS_EVERY_SECONDS = 5.0
IN_PLACE_PARTIAL = ".modelshelf-partial-"
ARCHIVES = ".modelshelf-archives"  # inside the staging folder: archives before unpacking


@dataclass(frozen=True)
class RemoteObject:
    """One object a source lists: where it goes under the target, and how to tell it changed."""

    relpath: str
    size: int | None
    #: ETag / generation; ``None`` means "ask the server" (an HTTP conditional request).
    tag: str | None
    #: Whatever the backend needs to fetch it (a key, a blob, a URL).
    ref: Any = None


@dataclass
class Job:
    """One file to fetch into ``path``; the backend fills in ``tag`` or ``not_modified``."""

    obj: RemoteObject
    path: Path
    previous_tag: str | None = None
    tag: str | None = None
    size: int = 0
    not_modified: bool = False


class Source(Protocol):
    display: str

    def list(self) -> list[RemoteObject]: ...

    def fetch(self, jobs: Sequence[Job], progress: Progress) -> None: ...


@dataclass
class Progress:
    """Files and bytes done so far; logged every few seconds while a download runs."""

    display: str
    files: int
    total_bytes: int
    done_files: int = 0
    done_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    budget: Budget | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_bytes(self, count: int) -> None:
        """Count ``count`` bytes; raises the one-line error when the budget is exhausted."""
        with self._lock:
            self.done_bytes += count
        if self.budget is not None and count > 0:
            self.budget.observe(count)

    def file_done(self) -> None:
        with self._lock:
            self.done_files += 1

    def rate(self) -> float:
        return self.done_bytes / max(time.monotonic() - self.started, 1e-6)

    def line(self) -> str:
        total = f" of {_size(self.total_bytes)}" if self.total_bytes else ""
        return (
            f"{self.display}: {self.done_files}/{self.files} files, "
            f"{_size(self.done_bytes)}{total} at {_size(self.rate())}/s"
        )

    @contextlib.contextmanager
    def reporting(self) -> Iterator[Progress]:
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(PROGRESS_EVERY_SECONDS):
                logger.info("downloading %s", self.line())

        thread = threading.Thread(target=report, name="modelshelf-progress", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


def concurrency() -> int:
    """How many files (or parts of a big file) download at once."""
    return whole_env_number(
        "MODELSHELF_DOWNLOAD_CONCURRENCY", 10, "a whole number of downloads at once > 0"
    )


def safe_relpath(display: str, relpath: str) -> str:
    """``relpath`` if it stays inside the target folder; an error otherwise."""
    path = PurePosixPath(relpath)
    if not relpath or path.is_absolute() or ".." in path.parts or "\\" in relpath:
        raise StorageError(
            display, f"object name {relpath!r} would land outside the destination folder"
        )
    return path.as_posix()


@contextlib.contextmanager
def exclusive(lock_path: Path, display: str) -> Iterator[float | None]:
    """Hold an exclusive lock on ``lock_path`` (released by the kernel if the process dies).

    Yields ``None`` if the lock was free, else the time (``time.time()``) this process started
    waiting for another one's download. The lock file is removed on release, after a failure
    as after a success, so no ``.lock`` stays beside (or inside) the model folder. A process
    that waited on a file its holder removed reads what the holder recorded in it (a failure
    it then raises) and locks the path afresh, so two processes never hold the same path.
    """
    waited_since = None
    while True:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held past this block, closed below
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waited_since = waited_since or time.time()
                logger.info("waiting for another process downloading %s", display)
                fcntl.flock(handle, fcntl.LOCK_EX)
            if _is_at(handle, lock_path):
                break
            handle.seek(0)  # removed by its holder: what it recorded was for the waiters
            _raise_recorded_failure(handle.read().decode("utf-8", "replace"), waited_since)
        except BaseException:
            handle.close()
            raise
        handle.close()
    try:
        yield waited_since
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()  # before the unlock: a waiter then sees it removed
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _is_at(handle: Any, path: Path) -> bool:
    """Whether the open file ``handle`` is still the file at ``path``."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def synchronise(
    source: Source,
    target: Path,
    manifest_path: Path,
    lock_path: Path,
    unpack: bool,
) -> Path:
    """Make ``target`` hold what ``source`` lists, transferring only what changed.

    ``unpack``: the URI names an archive; if the source lists that one object, unpack it.
    """
    budget = Budget(source.display, Limits.from_environ())
    lock_path.parent.mkdir(parents=True, exist_ok=True)

    # The lock file also holds the last failure (it has no file of its own).
    def locked() -> Path:
        with exclusive(lock_path, source.display) as waited_since:
            if waited_since is not None:
                with contextlib.suppress(OSError):
                    _raise_recorded_failure(lock_path.read_text(), waited_since)
            try:
                _synchronise(source, target, manifest_path, unpack, budget)
            except StorageError as exc:
                _record_failure(lock_path, exc)
                raise
            except OSError as exc:
                error = _os_error(source.display, target, exc)
                _record_failure(lock_path, error)
                raise error from None
            _record_failure(lock_path, None)
        return target

    try:
        return budget.run(locked)
    except StorageError as exc:
        if budget.cancelled:
            _record_failure(lock_path, exc)
        raise


def _synchronise(
    source: Source, target: Path, manifest_path: Path, unpack: bool, budget: Budget
) -> None:
    _remove_leftovers(target)
    manifest = _read_manifest(manifest_path) if target.exists() else {}
    objects = source.list()
    budget.check()
    for obj in objects:
        safe_relpath(source.display, obj.relpath)
    unpack = unpack and len(objects) == 1
    jobs, kept = _plan(objects, manifest, target)
    if not jobs and kept.keys() == manifest.keys() and target.exists():
        logger.info("%s is up to date in %s (%d files)", source.display, target, len(kept))
        return
    entries = _transfer(source, target, jobs, unpack, budget)
    entries.update(kept)
    _remove_stale(target, manifest, entries)
    _write_manifest(manifest_path, source.display, entries)


_LOCAL_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _os_error(display: str, target: Path, exc: OSError) -> StorageError:
    """The one line for an ``OSError`` no backend mapped: the local disk (full, read-only,
    permissions), or else a connection that failed in a way the backend did not expect."""
    if exc.filename is not None or exc.errno in _LOCAL_DISK_ERRORS:
        return StorageError(
            display,
            f"cannot write under {target.parent}: {exc.strerror or exc}: check its free space "
            "and permissions (MODELSHELF_MODEL_CACHE, or the destination folder)",
        )
    return errors.StorageUnreachableError(
        display, f"the transfer failed ({type(exc).__name__}): check the network and the endpoint"
    )


def _record_failure(path: Path, error: StorageError | None) -> None:
    """Leave ``error`` in the lock file, where processes waiting for this download read it;
    ``None`` clears it. Written in place: replacing the file would split the lock."""
    record = b""
    if error is not None:
        record = json.dumps(
            {
                "type": type(error).__name__,
                "uri": error.uri,
                "reason": error.reason,
                "at": time.time(),
                "pid": os.getpid(),
            }
        ).encode()
    with contextlib.suppress(OSError), open(path, "r+b") as handle:
        if record or handle.seek(0, os.SEEK_END):
            handle.seek(0)
            handle.truncate()
            handle.write(record)


def _raise_recorded_failure(text: str, waited_since: float | None) -> None:
    """Raise the failure of the download this process waited for (``text``: what its lock
    file holds), if it failed meanwhile."""
    if waited_since is None:
        return
    try:
        record = json.loads(text or "{}")
    except ValueError:
        return
    if not isinstance(record, dict) or float(record.get("at", 0)) < waited_since:
        return
    kind = getattr(errors, str(record.get("type")), StorageError)
    if not (isinstance(kind, type) and issubclass(kind, StorageError)):
        kind = StorageError
    raise kind(
        str(record.get("uri", "")),
        f"{record.get('reason', '')} (reported by process {record.get('pid')}, whose "
        "download this one waited for)",
    )


def _plan(
    objects: Sequence[RemoteObject], manifest: dict[str, dict], target: Path
) -> tuple[list[Job], dict[str, dict]]:
    jobs: list[Job] = []
    kept: dict[str, dict] = {}
    for obj in objects:
        entry = manifest.get(obj.relpath)
        present = entry is not None and _intact(target, obj.relpath, entry)
        if (
            present
            and obj.tag is not None
            and entry["tag"] == obj.tag
            and (obj.size is None or entry["size"] == obj.size)
        ):
            kept[obj.relpath] = entry
            continue
        previous = entry["tag"] if present and obj.tag is None else None
        jobs.append(Job(obj, Path(), previous_tag=previous))
    return jobs, kept


def _intact(target: Path, relpath: str, entry: dict) -> bool:
    """Whether the files of a manifest entry are all there, and a downloaded file (not an
    unpacked archive) still has the size it was verified with."""
    paths = [target / f for f in entry["files"]]
    if not all(path.is_file() for path in paths):
        return False
    if entry["files"] == [relpath]:
        return paths[0].stat().st_size == entry.get("size")
    return True


def _transfer(
    source: Source, target: Path, jobs: list[Job], unpack: bool, budget: Budget
) -> dict[str, dict]:
    """Fetch ``jobs`` into a temporary folder and move the results into ``target``."""
    in_place = target.exists()
    staging = (
        target / f"{IN_PLACE_PARTIAL}{os.getpid()}"
        if in_place
        else target.parent / f".{target.name}.partial-{os.getpid()}"
    )
    staging.mkdir(parents=True)
    try:
        folders: set[Path] = {staging}
        for job in jobs:
            if unpack:  # the archive itself goes aside; its entries land in staging
                job.path = staging / ARCHIVES / PurePosixPath(job.obj.relpath).name
            else:
                job.path = staging / job.obj.relpath
            _make_folder(job.path.parent, folders)
        progress = Progress(
            source.display, len(jobs), sum(job.obj.size or 0 for job in jobs), budget=budget
        )
        with progress.reporting():
            source.fetch(jobs, progress)
        budget.check()
        entries = _entries(source.display, staging, jobs, unpack)
        budget.check()  # an abandoned download moves nothing into place
        transferred = sum(1 for job in jobs if not job.not_modified)
        logger.info(
            "downloaded %s: %d files, %s in %.2f s (%s/s)%s",
            source.display,
            transferred,
            _size(progress.done_bytes),
            time.monotonic() - progress.started,
            _size(progress.rate()),
            f", {len(jobs) - transferred} unchanged" if len(jobs) != transferred else "",
        )
        if unpack:
            shutil.rmtree(staging / ARCHIVES)
        if in_place:
            made: set[Path] = {target}
            for entry in entries.values():
                for relpath in entry.get("new", ()):
                    destination = target / relpath
                    _make_folder(destination.parent, made)
                    os.replace(staging / relpath, destination)
        else:
            os.rename(staging, target)
        for entry in entries.values():
            entry.pop("new", None)
        return entries
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_folder(folder: Path, made: set[Path]) -> None:
    if folder not in made:
        folder.mkdir(parents=True, exist_ok=True)
        made.add(folder)


def _entries(display: str, staging: Path, jobs: list[Job], unpack: bool) -> dict[str, dict]:
    """Manifest entries for what was fetched, unpacking the archive if the URI named one."""
    entries: dict[str, dict] = {}
    for job in jobs:
        relpath = job.obj.relpath
        if job.not_modified:  # an HTTP 304: the files we have are current
            entries[relpath] = {"tag": job.previous_tag, "size": job.obj.size or 0}
        elif unpack:
            files = _archive.extract(display, job.path, staging)
            entries[relpath] = {"tag": job.tag, "size": job.size, "files": files, "new": files}
        else:
            entries[relpath] = {
                "tag": job.tag,
                "size": job.size,
                "files": [relpath],
                "new": [relpath],
            }
    return entries


def _remove_stale(target: Path, old: dict[str, dict], new: dict[str, dict]) -> None:
    """Delete files an earlier download wrote that the source no longer lists."""
    for relpath, entry in list(new.items()):
        if "files" not in entry:  # not modified: keep the old entry's file list and size
            entry["files"] = old[relpath]["files"]
            entry["size"] = old[relpath].get("size", entry["size"])
    current = {f for entry in new.values() for f in entry["files"]}
    for entry in old.values():
        for relpath in entry["files"]:
            if relpath not in current:
                with contextlib.suppress(FileNotFoundError):
                    (target / relpath).unlink()
                _prune_empty_parents(target, target / relpath)


def _prune_empty_parents(root: Path, path: Path) -> None:
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _remove_leftovers(target: Path) -> None:
    """Temporary folders of downloads that died (we hold the lock: nobody else is writing)."""
    leftovers = (
        list(target.parent.glob(f".{target.name}.partial-*")) if target.parent.exists() else []
    )
    if target.is_dir():
        leftovers += target.glob(f"{IN_PLACE_PARTIAL}*")
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _read_manifest(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    return data.get("objects", {})


def _write_manifest(path: Path, display: str, entries: dict[str, dict]) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(
        json.dumps({"version": MANIFEST_VERSION, "uri": display, "objects": entries}, indent=1)
    )
    os.replace(temporary, path)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"  # pragma: no cover
