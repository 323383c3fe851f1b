"""Unpack ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` model archives, refusing unsafe ones.

An entry may only be a regular file or a folder whose path stays inside the destination: absolute
paths, ``..`` components, symbolic and hard links, and device files are refused. So are bombs:
the unpacked size is capped (``MODELSHELF_ARCHIVE_MAX_BYTES``, and ``MODELSHELF_ARCHIVE_MAX_RATIO``
times the archive's own size beyond ``RATIO_FREE_BYTES``), and so is the number of entries
(``MODELSHELF_ARCHIVE_MAX_FILES``). The caps are checked while unpacking, before each write: an
entry whose declared size would pass a cap is refused before any of it is written, and bytes are
counted as they are written (a zip can understate its sizes), so nothing past a cap reaches the
disk. Entries land in the download's staging folder, removed on any failure.
"""

from __future__ import annotations

import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from modelshelf.errors import StorageError, UnsafeArchiveError
from modelshelf.number_settings import env_number, whole_env_number

SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
COPY_BUFFER = 1 << 20

DEFAULT_MAX_BYTES = 64 * 1024**3
DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_RATIO = 100
#: Below this unpacked size the ratio is not checked: a small, very compressible model (a
#: JSON of zeros) is no threat to a disk.
RATIO_FREE_BYTES = 128 * 1024**2


def is_archive(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may unpack to: bytes, entries, and bytes per archive byte."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_ratio: float = DEFAULT_MAX_RATIO

    @classmethod
    def from_environ(cls) -> ArchiveLimits:
        return cls(
            max_bytes=whole_env_number(
                "MODELSHELF_ARCHIVE_MAX_BYTES", DEFAULT_MAX_BYTES, "a whole number of bytes > 0"
            ),
            max_files=whole_env_number(
                "MODELSHELF_ARCHIVE_MAX_FILES", DEFAULT_MAX_FILES, "a whole number of entries > 0"
            ),
            max_ratio=env_number(
                "MODELSHELF_ARCHIVE_MAX_RATIO",
                DEFAULT_MAX_RATIO,
                "a number of bytes unpacked per archive byte > 0",
            ),
        )

    def byte_cap(self, archive_size: int) -> tuple[int, str]:
        """The unpacked-size cap for an archive of ``archive_size`` bytes, and its setting."""
        by_ratio = max(int(self.max_ratio * archive_size), RATIO_FREE_BYTES)
        if by_ratio < self.max_bytes:
            return by_ratio, (
                f"{self.max_ratio:g} x the archive's {archive_size} bytes "
                "(MODELSHELF_ARCHIVE_MAX_RATIO)"
            )
        return self.max_bytes, "MODELSHELF_ARCHIVE_MAX_BYTES"


class _Tally:
    """Entries and bytes unpacked so far, against the caps."""

    def __init__(self, display: str, archive: Path, limits: ArchiveLimits) -> None:
        self.display = display
        self.limits = limits
        self.cap, self.cap_setting = limits.byte_cap(archive.stat().st_size)
        self.entries = 0
        self.bytes = 0

    def entry(self, name: str, declared_size: int) -> None:
        self.entries += 1
        self.check_count(self.entries)
        self.reserve(name, declared_size)

    def check_count(self, entries: int) -> None:
        if entries > self.limits.max_files:
            raise UnsafeArchiveError(
                self.display,
                f"the archive has more than {self.limits.max_files} entries "
                "(MODELSHELF_ARCHIVE_MAX_FILES): refused while unpacking",
            )

    def reserve(self, name: str, size: int) -> None:
        """Refuse before writing when ``size`` more bytes would pass the cap."""
        if self.bytes + size > self.cap:
            raise UnsafeArchiveError(
                self.display,
                f"the archive unpacks to more than {self.cap} bytes ({self.cap_setting}; "
                f"{self.bytes} written before entry {name!r}): refused while unpacking",
            )

    def copy(self, name: str, source: IO[bytes], out: IO[bytes]) -> None:
        while chunk := source.read(COPY_BUFFER):
            self.reserve(name, len(chunk))
            out.write(chunk)
            self.bytes += len(chunk)


def extract(display: str, archive: Path, destination: Path) -> list[str]:
    """Unpack ``archive`` into ``destination``; the relative paths of the files written."""
    tally = _Tally(display, archive, ArchiveLimits.from_environ())
    try:
        if archive.name.lower().endswith(".zip"):
            return _extract_zip(display, archive, destination, tally)
        return _extract_tar(display, archive, destination, tally)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise  # the local disk (full, read-only): reported as such by the caller
        raise StorageError(
            display, f"{archive.name} is not a readable archive: {type(exc).__name__}: {exc}"
        ) from None


def _checked(display: str, name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or name.startswith("/"):
        raise UnsafeArchiveError(
            display, f"archive entry {name!r} would land outside the destination folder"
        )
    return path.as_posix()


def _extract_tar(display: str, archive: Path, destination: Path, tally: _Tally) -> list[str]:
    files = []
    # Streaming mode ("r|*"): one pass, entry by entry; nothing is listed or decompressed
    # ahead of the checks, so a bomb costs no more than the cap.
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            relpath = _checked(display, member.name)
            if not (member.isfile() or member.isdir()):
                kind = "link" if member.issym() or member.islnk() else "special file"
                raise UnsafeArchiveError(
                    display, f"archive entry {member.name!r} is a {kind}: only files and folders"
                )
            tally.entry(member.name, member.size if member.isfile() else 0)
            if relpath in ("", "."):
                continue
            target = destination / relpath
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # regular files always have a payload
            with source, open(target, "wb") as out:
                tally.copy(member.name, source, out)
            files.append(relpath)
    return files


def _declared_zip_entries(archive: Path) -> int | None:
    """The entry count a zip's end record declares, read before its directory is parsed (a
    directory of 200,000 entries takes seconds to parse); ``None`` if it cannot be read."""
    with open(archive, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - (1 << 16) - 22))
        tail = handle.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + 22:
        return None
    (count,) = struct.unpack_from("<H", tail, end + 10)
    locator = tail.rfind(b"PK\x06\x07", 0, end)
    if count == 0xFFFF and locator >= 0:  # zip64: the count is in the zip64 end record
        (offset,) = struct.unpack_from("<Q", tail, locator + 8)
        with open(archive, "rb") as handle:
            handle.seek(offset)
            record = handle.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            (count,) = struct.unpack_from("<Q", record, 32)
    return count


def _extract_zip(display: str, archive: Path, destination: Path, tally: _Tally) -> list[str]:
    declared = _declared_zip_entries(archive)
    if declared is not None:
        tally.check_count(declared)
    with zipfile.ZipFile(archive) as bundle:
        infos = bundle.infolist()
        tally.check_count(len(infos))  # the central directory lists them all: refuse at once
        for info in infos:
            _checked(display, info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip has no Unix mode
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(
                    display, f"archive entry {info.filename!r} is a link or special file"
                )
        tally.reserve(infos[0].filename if infos else "", sum(i.file_size for i in infos))
        files = []
        for info in infos:
            relpath = _checked(display, info.filename).rstrip("/")
            tally.entry(info.filename, 0 if info.is_dir() else info.file_size)
            if not relpath or relpath == ".":
                continue
            target = destination / relpath
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(info) as source, open(target, "wb") as out:
                tally.copy(info.filename, source, out)
            files.append(relpath)
    return files
