"""Model metadata in the shape seldon-core validates: name, versions, platform, inputs, outputs,
custom.

Metadata comes from ``metadata.yaml`` in the downloaded model folder when there is one; otherwise a
server derives it from the model itself. Either way it names the framework versions in the image,
so a user can tell which scikit-learn a pickle must match without reading our Dockerfiles.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelshelf.errors import ModelLoadError

METADATA_FILE = "metadata.yaml"

_NUMPY_TO_TENSOR_TYPE = {
    "b": "BOOL",
    "u1": "UINT8",
    "u2": "UINT16",
    "u4": "UINT32",
    "u8": "UINT64",
    "i1": "INT8",
    "i2": "INT16",
    "i4": "INT32",
    "i8": "INT64",
    "f2": "FP16",
    "f4": "FP32",
    "f8": "FP64",
}


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``packages`` (distribution names); absent ones are left out."""
    versions = {name: _installed_version(name) for name in packages}
    return {name: version for name, version in versions.items() if version is not None}


@functools.cache
def _installed_version(name: str) -> str | None:
    """Read once per process (a forked worker inherits it): each ``importlib.metadata`` lookup
    scans every installed distribution, 3-5 ms, and a cold start asked four times."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def read_metadata_file(model_dir: Path) -> dict[str, Any] | None:
    """The user's ``metadata.yaml`` beside the model, or ``None`` when there is none."""
    path = model_dir / METADATA_FILE if model_dir.is_dir() else None
    if path is None or not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ModelLoadError(str(path), f"metadata.yaml is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(
            str(path), "metadata.yaml must hold a mapping (name, inputs, outputs…)"
        )
    return data


def tensor_type(dtype: Any) -> str:
    """The V2 datatype name for a numpy dtype (strings and objects are ``BYTES``)."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.kind == "b":
        return "BOOL"
    return _NUMPY_TO_TENSOR_TYPE.get(f"{dt.kind}{dt.itemsize}", "BYTES")


def array_spec(names: Sequence[str] | None, width: int | None) -> dict[str, Any]:
    """A Seldon ``ndarray`` input/output description: column names and shape ``[-1, width]``."""
    schema: dict[str, Any] = {}
    if names:
        schema["names"] = [str(n) for n in names]
    if width is not None:
        schema["shape"] = [-1, int(width)]
    elif names:
        schema["shape"] = [-1, len(names)]
    spec: dict[str, Any] = {"messagetype": "ndarray"}
    if schema:
        spec["schema"] = schema
    return spec


def with_custom(metadata: dict[str, Any], custom: dict[str, str]) -> dict[str, Any]:
    """``metadata`` with ``custom`` entries added; the user's own entries win."""
    merged = dict(metadata)
    merged["custom"] = {**custom, **{k: str(v) for k, v in (metadata.get("custom") or {}).items()}}
    return merged
