"""Fetch a model from wherever it lives into a local folder: ``download(uri, dest=None) -> Path``.

One public function; one private module per storage. Local paths and ``file://`` are used in place
(no copy) unless ``dest`` is given. Remote URIs (``s3://``, ``gs://``, ``http(s)://``, rclone-style
``s3:bucket/key``) download into ``dest``, or, without one, into a cache folder keyed by the URI
(``MODELSHELF_MODEL_CACHE``), so every process that asks for the same URI -- the MLflow
``before-run`` step, the REST workers, the gRPC child -- shares one download, and asking again
transfers only objects that changed. A URI naming one ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip``
object is unpacked. ``invalidate(uri)`` forgets a cached download whose model failed to load, so
the next start fetches it again instead of failing on the same files forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from modelshelf.errors import StorageError
from modelshelf.storage import _local
from modelshelf.storage._archive import SUFFIXES as ARCHIVE_SUFFIXES
from modelshelf.storage._archive import is_archive
from modelshelf.storage._location import Location, parse, redact
from modelshelf.storage._sync import Source, exclusive, synchronise

__all__ = ["cache_root", "download", "folder_name", "invalidate", "redact"]

logger = logging.getLogger("modelshelf.storage")

#: Inside an explicit ``dest``: what the last download wrote (for incremental updates).
DEST_MANIFEST = ".modelshelf-manifest.json"
DEST_LOCK = ".modelshelf.lock"


def download(uri: str, dest: str | Path | None = None) -> Path:
    """Return a local path holding the model named by ``uri`` (a folder, or a single file)."""
    location = parse(uri)
    if location.kind == "local":
        return _local.download(location.uri, Path(dest) if dest is not None else None)
    source = _source(location)
    unpack = is_archive(location.name)
    if dest is not None:
        target = Path(dest)
        created = _first_missing(target)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                location.display, f"cannot create the destination {target}: {exc.strerror}"
            ) from exc
        try:
            return synchronise(
                source, target, target / DEST_MANIFEST, target / DEST_LOCK, unpack=unpack
            )
        except BaseException:
            if created is not None:
                _remove_if_unused(target, created)
            raise
    root = cache_root()
    name = _cache_name(location)
    return synchronise(
        source, root / name, root / f"{name}.manifest.json", root / f"{name}.lock", unpack=unpack
    )


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _remove_if_unused(target: Path, created: Path) -> None:
    """Remove the folders this download created (``target`` up to ``created``) when a failure
    left them holding nothing but its own lock: an empty folder would look like a model that
    is there. Never raises."""
    try:
        if {p.name for p in target.iterdir()} - {DEST_LOCK, DEST_MANIFEST}:
            return
    except FileNotFoundError:  # another process's failed download removed it already
        return
    except OSError as exc:
        logger.warning("could not remove %s after a failed download: %s", target, exc)
        return
    shutil.rmtree(target, ignore_errors=True)
    folder = target
    while folder != created and folder.parent != folder:
        folder = folder.parent
        try:
            folder.rmdir()  # this download made it; still empty unless used meanwhile
        except OSError:
            return


def folder_name(uri: str, local: Path) -> str:
    """The name of the folder ``uri`` names, as a local path's folder would give it: a remote
    model's local copy is a cache folder (``<name>-<hash>``), which is no name for a model.
    The URI's last segment, or the one before it when that names the single file (or archive)
    that was downloaded (``https://host/iris/model.joblib`` -> ``iris``)."""
    location = parse(uri)
    if location.kind == "local":
        return local.name
    path = urlsplit(location.url).path if location.kind == "http" else location.key
    segments = [location.bucket, *(part for part in path.split("/") if part)]
    segments = [part for part in segments if part]
    if not segments:
        return "model"
    last = segments[-1]
    if is_archive(last):  # unpacked into the folder: the archive is the folder
        return last[: -len(next(s for s in ARCHIVE_SUFFIXES if last.lower().endswith(s)))]
    if location.kind == "http" or (local / last).is_file():  # the single file downloaded
        return segments[-2] if len(segments) > 1 else last.split(".", 1)[0] or "model"
    return last


def invalidate(uri: str) -> None:
    """Forget the cached download of ``uri`` (its folder and manifest): a model that fails to
    load from it is fetched anew by the next ``download(uri)``. Local URIs are left alone.
    Never raises: it runs while another error is being reported."""
    try:
        location = parse(uri)
        if location.kind == "local":
            return
        root = cache_root()
        name = _cache_name(location)
        folder = root / name
        if not folder.exists():
            return
        with exclusive(root / f"{name}.lock", location.display):
            with contextlib.suppress(FileNotFoundError):
                (root / f"{name}.manifest.json").unlink()
            shutil.rmtree(folder, ignore_errors=True)
        logger.warning(
            "removed the cached download of %s: its model did not load; the next start "
            "downloads it again",
            location.display,
        )
    except (OSError, StorageError) as exc:
        logger.warning("could not remove the cached download of %s: %s", redact(uri), exc)


def cache_root() -> Path:
    """Where remote models download when no ``dest`` is given.

    ``MODELSHELF_MODEL_CACHE`` if set; else ``$XDG_CACHE_HOME/modelshelf/models`` (or
    ``~/.cache/…``) if writable; else a per-user folder under the system temporary directory
    (containers often run as a user without a home).
    """
    configured = os.environ.get("MODELSHELF_MODEL_CACHE")
    if configured:
        root = Path(configured)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from modelshelf.errors import ConfigurationError

            raise ConfigurationError(
                "MODELSHELF_MODEL_CACHE",
                configured,
                f"a writable folder ({exc.strerror})",
                source="environment variable",
            ) from exc
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for root in (
        Path(base) / "modelshelf" / "models",
        Path(tempfile.gettempdir()) / f"modelshelf-{os.getuid()}" / "models",
    ):
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK | os.X_OK):
            return root
    raise StorageError(
        "<cache>", "no writable cache folder: set MODELSHELF_MODEL_CACHE to a writable folder"
    )


def _cache_name(location: Location) -> str:
    """``<readable name>-<hash of the full URI>``: stable per URI, never the URI's secrets."""
    digest = hashlib.sha256(location.uri.encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", location.name)[:48].strip("._") or "model"
    return f"{readable}-{digest}"


def _source(location: Location) -> Source:
    extra = {"s3": "s3", "gs": "gcs"}.get(location.kind, "")
    try:
        if location.kind == "s3":
            from modelshelf.storage._s3 import S3Source

            return S3Source(location)
        if location.kind == "gs":
            _ignore_google_python_version_notice()
            from modelshelf.storage._gcs import GCSSource

            return GCSSource(location)
    except ImportError as exc:
        raise StorageError(
            location.display,
            f"{exc.name} is not installed: install modelshelf[{extra}] for {location.kind} URIs",
        ) from exc
    if location.kind == "http":
        from modelshelf.storage._http import HTTPSource

        return HTTPSource(location)
    raise StorageError(location.display, f"unsupported storage {location.kind!r}")


def _ignore_google_python_version_notice() -> None:
    """google-api-core warns on import (a FutureWarning) that Google's next releases will drop
    this Python version. modelshelf is held to Python 3.11 by seldon-core 1.18.2, so nobody who
    reads the notice can act on it, and every gs:// download and init container printed it. Only
    that notice is ignored: that category, from that one module, with that text."""
    warnings.filterwarnings(
        "ignore",
        message=r"You are using a .*Python version",
        category=FutureWarning,
        module=r"google\.api_core\._python_version_support",
    )
