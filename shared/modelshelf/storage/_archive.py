"""Unpack ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` model archives, refusing unsafe entries.

An entry may only be a regular file or a folder whose path stays inside the destination: absolute
paths, ``..`` components, symbolic and hard links, and device files are rejected before anything
is written, so a malicious archive cannot touch files outside the model folder.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from modelshelf.errors import StorageError, UnsafeArchiveError

SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
COPY_BUFFER = 1 << 20


def is_archive(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def extract(display: str, archive: Path, destination: Path) -> list[str]:
    """Unpack ``archive`` into ``destination``; the relative paths of the files written."""
    try:
        if archive.name.lower().endswith(".zip"):
            return _extract_zip(display, archive, destination)
        return _extract_tar(display, archive, destination)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise StorageError(
            display, f"{archive.name} is not a readable archive: {type(exc).__name__}: {exc}"
        ) from exc


def _checked(display: str, name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or name.startswith("/"):
        raise UnsafeArchiveError(
            display, f"archive entry {name!r} would land outside the destination folder"
        )
    return path.as_posix()


def _extract_tar(display: str, archive: Path, destination: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _checked(display, member.name)
            if not (member.isfile() or member.isdir()):
                kind = "link" if member.issym() or member.islnk() else "special file"
                raise UnsafeArchiveError(
                    display, f"archive entry {member.name!r} is a {kind}: only files and folders"
                )
        files = []
        for member in members:
            relpath = _checked(display, member.name)
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
                shutil.copyfileobj(source, out, COPY_BUFFER)
            files.append(relpath)
    return files


def _extract_zip(display: str, archive: Path, destination: Path) -> list[str]:
    with zipfile.ZipFile(archive) as bundle:
        infos = bundle.infolist()
        for info in infos:
            _checked(display, info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip has no Unix mode
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(
                    display, f"archive entry {info.filename!r} is a link or special file"
                )
        files = []
        for info in infos:
            relpath = _checked(display, info.filename).rstrip("/")
            if not relpath or relpath == ".":
                continue
            target = destination / relpath
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, COPY_BUFFER)
            files.append(relpath)
    return files
