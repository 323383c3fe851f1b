"""Local paths and ``file://`` URIs."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelshelf.errors import StorageError


def local_path(uri: str) -> Path:
    """The filesystem path a local URI names (``file:///a/b``, ``file://a/b`` or ``/a/b``)."""
    if uri.lower().startswith("file://"):
        parsed = urlparse(uri)
        return Path(unquote(parsed.netloc + parsed.path))
    return Path(uri)


def download(uri: str, dest: Path | None) -> Path:
    source = local_path(uri)
    if not source.exists():
        raise StorageError(uri, f"no such file or folder: {source}")
    if dest is None:
        return source
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
        return dest
    target = dest / source.name
    shutil.copy2(source, target)
    return dest
