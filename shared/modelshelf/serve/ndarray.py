"""The ``ndarray`` payload both ways, without the per-number Python work seldon-core does.

seldon-core turns a request's ``ndarray`` into an array with ``np.array(rows)`` and a numeric
answer back into lists with ``.tolist()``. For a 1,000-row request both cost more than the model
(measured: 350 µs for ``np.array`` on 1,000 x 4 floats, 110 µs for ``tolist`` of 1,000 x 3, then
orjson walks those lists again). Here:

* ``array_from_rows`` gives exactly what ``np.array(rows)`` gives -- same dtype, shape and
  values -- flattening a rectangular list of rows in C first (dtype discovery on a flat list is
  about 2.5 times cheaper than on nested lists); anything else (ragged rows, nested deeper,
  strings, objects) goes to ``np.array(rows)`` itself, so its errors are seldon-core's.
* ``encode_array`` writes a numeric array as JSON straight from its memory (orjson's numpy
  support) for the types whose JSON equals that of ``tolist()``: float64 (same shortest
  round-trip digits as a Python float), integers and booleans. float32 is excluded: its shortest
  repr (``0.1``) is not the value ``tolist()`` gives (``0.10000000149011612``).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import orjson

#: Below this many rows ``np.array`` is as quick as the checks that would let us skip it.
MIN_ROWS = 8
#: dtype kinds whose orjson numpy output is the JSON of ``tolist()``.
_SAME_AS_TOLIST = {"b", "i", "u"}


def array_from_rows(rows: Any, where: str = "data.ndarray") -> np.ndarray:
    """``np.array(rows)``, cheaper for a rectangular list of rows of numbers. For ragged rows,
    numpy's ``ValueError`` as it is (seldon-core answers a user class with its text), with a
    note naming the first uneven row as the request's field ``where`` (``instances``,
    ``inputs``…): ``rows_error_text`` gives it to the answers modelshelf writes itself."""
    try:  # costs nothing until it catches (Python 3.11)
        if type(rows) is not list or len(rows) < MIN_ROWS:
            return np.array(rows)
        first = rows[0]
        if type(first) is not list or not first:
            return np.array(rows)
        width = len(first)
        # Every row a list (a string row would flatten into characters) of the same length.
        if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
            return np.array(rows)
        try:
            flat = np.array(list(chain.from_iterable(rows)))
        except Exception:  # a list among the numbers: np.array(rows) says what it says
            return np.array(rows)
        # A 1-D numeric array means every value was a scalar number (a nested list makes it 2-D
        # or an object array) and numpy found the dtype np.array(rows) finds: the same values.
        if flat.ndim != 1 or flat.dtype.kind not in "biuf":
            return np.array(rows)
        flat.resize((len(rows), width))  # in place: it owns its data, as np.array's result does
        return flat
    except ValueError as exc:
        _note_uneven_rows(rows, exc, where)
        raise


def _note_uneven_rows(rows: Any, exc: ValueError, where: str) -> None:
    from modelshelf.seldon_payload import unequal_rows  # only once a request has failed

    try:
        found = unequal_rows(rows, where)
    except RecursionError:
        found = None
    if found is not None:
        exc.add_note(found)


def rows_error_text(exc: BaseException) -> str:
    """What to say of rows ``array_from_rows`` refused: the uneven row, else numpy's text."""
    notes = getattr(exc, "__notes__", None)
    return str(notes[-1]) if notes else str(exc)


def encodes_as_tolist(array: Any) -> bool:
    """Whether ``encode_array(array)`` is the JSON of ``array.tolist()``."""
    if type(array) is not np.ndarray or array.ndim == 0:
        return False
    dtype = array.dtype
    if not dtype.isnative:
        return False
    return dtype.kind in _SAME_AS_TOLIST or (dtype.kind == "f" and dtype.itemsize == 8)


def encode_array(array: np.ndarray) -> bytes | None:
    """The JSON of ``array.tolist()`` (``encodes_as_tolist`` must hold); ``None`` when the array
    holds NaN or an infinity (orjson writes ``null``; the caller lets Flask write the constants
    seldon-core writes)."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    encoded = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)
    # Numbers never hold a "u": one memchr instead of a substring search for null.
    return None if array.dtype.kind == "f" and b"u" in encoded else encoded
