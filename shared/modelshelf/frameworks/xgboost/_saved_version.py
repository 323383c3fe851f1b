"""The XGBoost version a JSON or UBJSON model file records, read from its last bytes.

XGBoost writes the top-level ``version`` array last, so reading the file's tail finds it without
parsing a model that may be hundreds of megabytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import xgboost as xgb

_JSON_VERSION = re.compile(rb'"version"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')
_UBJ_INTS = {b"i": (1, True), b"U": (1, False), b"I": (2, True), b"l": (4, True), b"L": (8, True)}


def xgboost_version() -> tuple[int, ...]:
    """This process's XGBoost as ``(major, minor, patch)``."""
    return tuple(int(p) for p in re.findall(r"\d+", xgb.__version__)[:3])


def saved_version(path: Path) -> tuple[int, ...] | None:
    """The XGBoost version recorded in a JSON / UBJSON model file (its top-level ``version``,
    written last), or ``None`` when the file does not say."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 512))
        tail = f.read()
    found = _JSON_VERSION.findall(tail)
    if found:
        return tuple(int(v) for v in found[-1])
    at = tail.rfind(b"version")
    return _ubj_int_array(tail, at + len(b"version")) if at >= 0 else None


def _ubj_int_array(data: bytes, pos: int) -> tuple[int, ...] | None:
    """Read a small UBJSON array of integers (``[#L<n>i..`` or ``[$i#..``) at ``pos``."""
    try:
        if data[pos : pos + 1] != b"[":
            return None
        pos += 1
        fixed = None
        if data[pos : pos + 1] == b"$":
            fixed = data[pos + 1 : pos + 2]
            pos += 2
        if data[pos : pos + 1] != b"#":
            return None
        size, signed = _UBJ_INTS[data[pos + 1 : pos + 2]]
        count = int.from_bytes(data[pos + 2 : pos + 2 + size], "big", signed=signed)
        pos += 2 + size
        values = []
        for _ in range(min(count, 4)):
            marker = fixed or data[pos : pos + 1]
            pos += 0 if fixed else 1
            size, signed = _UBJ_INTS[marker]
            values.append(int.from_bytes(data[pos : pos + size], "big", signed=signed))
            pos += size
        return tuple(values)
    except (KeyError, IndexError, ValueError):
        return None
