"""Fetch a model from wherever it lives into a local folder: ``download(uri, dest=None) -> Path``.

One public function; one private module per scheme. Local paths and ``file://`` are used in place
(no copy) unless ``dest`` is given.
"""

from __future__ import annotations

from pathlib import Path

from modelshelf.errors import StorageError
from modelshelf.storage import _local

__all__ = ["download"]


def download(uri: str, dest: str | Path | None = None) -> Path:
    """Return a local path holding the model named by ``uri`` (a folder, or a single file)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("", "file"):
        return _local.download(uri, Path(dest) if dest is not None else None)
    raise StorageError(uri, f"unsupported scheme {scheme!r}: expected a local path or file://")
