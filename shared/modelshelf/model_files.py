"""Which file in a model folder is the model.

Rules every server shares: an explicit ``model_file`` parameter wins; then the conventional names
in order (``model.joblib``…); then the single file with a known suffix. Zero or several candidates
is an error that lists what the folder holds, so the user can set ``model_file``.
"""

from __future__ import annotations

import gzip
import lzma
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelshelf.errors import ModelLoadError, ModelNotFoundError

#: Where KServe's storage initializer puts the model (an InferenceService's ``storageUri``).
MODEL_MOUNT = "/mnt/models"


def storage_uri_location(storage_uri: str | None, mount: Path = Path(MODEL_MOUNT)) -> str | None:
    """Where KServe's ``STORAGE_URI`` model is: the mount once the storage initializer filled
    it, else the URI itself (modelshelf's storage downloads it); ``None`` without a URI. The
    one rule for the launcher and the KServe model server."""
    if not storage_uri:
        return None
    if mount.is_dir() and any(mount.iterdir()):
        return str(mount)
    return storage_uri


def find_model_file(
    location: Path,
    preferred_names: Sequence[str],
    suffixes: Sequence[str],
    model_file: str = "",
    uri: str | None = None,
) -> Path:
    """The model file in ``location`` (a folder, or the file itself)."""
    uri = uri or str(location)
    if location.is_file():
        return location
    if model_file:
        chosen = location / model_file
        if not chosen.is_file():
            raise ModelNotFoundError(
                uri, f"model_file {model_file!r} not found; the folder holds {_listing(location)}"
            )
        return chosen
    for name in preferred_names:
        if (location / name).is_file():
            return location / name
    candidates = sorted(
        p for p in location.iterdir() if p.is_file() and p.name.lower().endswith(tuple(suffixes))
    )
    if len(candidates) == 1:
        return candidates[0]
    wanted = ", ".join(preferred_names)
    if not candidates:
        raise ModelNotFoundError(
            uri,
            f"no model file: expected {wanted} or one file ending {', '.join(suffixes)}; "
            f"the folder holds {_listing(location)}",
        )
    raise ModelNotFoundError(
        uri,
        f"several model files ({', '.join(p.name for p in candidates)}): "
        "set the parameter model_file to the one to serve",
    )


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return (
        "[" + ", ".join(names[:20]) + (", …]" if len(names) > 20 else "]") if names else "nothing"
    )


#: How a pickle (protocol 2 and later) or a joblib file compressed by one of joblib's
#: compressors (zlib, gzip, bz2, xz, lzma, lz4) begins.
PICKLE_STARTS = (b"\x80", b"x", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00", b"\x04\x22\x4d\x18")
#: What unpickling raises on bytes that are no pickle (a text file: ``KeyError: 60``).
NOT_A_PICKLE_ERRORS = (pickle.UnpicklingError, KeyError, EOFError, IndexError, ValueError)
#: What unpickling (and joblib's decompressors) raise on a pickle cut short or damaged: a
#: truncated header is ``struct.error: unpack requires a buffer of 8 bytes``, a truncated body
#: ``UnpicklingError: pickle exhausted before end of frame`` or a bare ``EOFError``.
CORRUPT_PICKLE_ERRORS = (
    *NOT_A_PICKLE_ERRORS,
    struct.error,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
)


def load_pickled(path: Path, uri: str | None = None) -> Any:
    """``joblib.load(path)``; a file that is no joblib or pickle file at all (a text file, an
    HTML error page saved under the model's name) is a ``ModelLoadError`` naming the file and
    how it begins, not unpickling's ``KeyError: 60``; a pickle that breaks off or is damaged
    (a partial copy) is one naming the file and saying so, not a bare ``EOFError``."""
    import joblib

    try:
        return joblib.load(path)
    except CORRUPT_PICKLE_ERRORS as exc:
        with open(path, "rb") as handle:
            head = handle.read(16)
        if head.startswith(PICKLE_STARTS):
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ModelLoadError(
                uri or str(path),
                f"{path.name} ({path.stat().st_size} bytes) looks truncated or corrupt ({reason}): "
                "expected a complete pickle or joblib file, written with the same library "
                "versions as this server's: copy it again, or save it again with those versions "
                "(an error raised while rebuilding the model, e.g. a ValueError, often means "
                "other versions)",
            ) from exc  # unpickling's error: at DEBUG with its traceback
        raise ModelLoadError(
            uri or str(path),
            f"{path.name} is not a joblib or pickle file (it begins {head!r}); save the model "
            "with joblib.dump or pickle.dump",
        ) from None  # unpickling's KeyError says nothing about the file
