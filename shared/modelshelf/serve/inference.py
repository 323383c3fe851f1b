"""The protocol-neutral core every serving protocol adapter uses: typed tensors, codecs, one call.

An adapter (V2 REST, V2 gRPC, KServe V1, MLflow ``/invocations``) only turns its wire format into
these types and back; what the model is called with and what it answers is decided here, once:

* ``Tensor(name, datatype, shape, data, parameters)``: ``data`` is a numpy array already in
  ``shape`` (``BYTES``: an object array of ``bytes``). Build one with ``Tensor.from_values``
  (JSON ``data``, nested or flat), ``Tensor.from_bytes`` (binary: little-endian, row-major,
  ``BOOL`` one byte, ``BYTES`` as 4-byte little-endian length + bytes) or ``Tensor.from_array``;
  write one with ``json_data()`` (flat; an ndarray orjson writes, or a list of ``str`` for
  ``BYTES``) or ``to_bytes()``.
* ``InferenceRequest(inputs, outputs, id, parameters)`` → ``InferenceCore.infer`` →
  ``InferenceResponse(model_name, model_version, id, outputs, parameters)``.
* Errors are exceptions; ``status_of(exc)`` gives the HTTP status: 400 (``BadRequestError``,
  the input), 404 (``UnknownModelError``: another model or version), 503
  (``ModelNotReadyError``), 500 (anything else). gRPC maps them to INVALID_ARGUMENT, NOT_FOUND,
  UNAVAILABLE and INTERNAL.
* ``InferenceCore.check(name, version)`` before serving a model path; ``ready()``,
  ``model_metadata()``, ``server_metadata()`` for the rest.
* ``InferenceCore.call(X, names, method, params)``: the server's method on an already decoded
  input (KServe V1 rows, MLflow's DataFrames); returns ``Answer(data, output_names)``.

Codecs (``parameters.content_type`` on the request, else on the single input): ``np`` (default
for one input): the tensor as an array, ``BYTES`` as ``str``; ``pd`` (default for several
inputs): each input one DataFrame column named after it, each with its own dtype, ``BYTES`` as
``str``; ``str``: a ``BYTES`` tensor as a list of ``str``. Every codec reads ``BYTES`` as UTF-8
text: an element that is not is a 400 naming it. JSON booleans in a numeric tensor are refused
(Triton refuses them too), not read as 1 and 0.

Outputs: a requested output whose name is one of the server's methods (``predict``,
``predict_proba``, ``decision_function``, ``predict_log_proba``, ``transform``, XGBoost's
``predict_margin``, ``predict_contribs``, ``predict_leaf``) is that method's answer; without
requested outputs the configured ``method`` answers, in an output named after it. Where the
columns have names (classes, transform outputs) the output carries them as the parameter
``class_names`` (a list; adapters whose parameters are scalars, gRPC, send it as JSON text:
``parameter_value``), and a requested output named ``class_names`` is a ``BYTES`` tensor of them.
Which methods a server class offers, and how each is called, is ``server_methods``' business.
An MLflow model whose output signature names columns (``answer_columns``, read at load) answers
its DataFrame one tensor a column instead, as MLServer's pandas codec (``frame_tensors``);
outputs may name those columns.
"""

from __future__ import annotations

import array as std_array
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import orjson

from modelshelf.errors import BadRequestError, ModelNotReadyError, ServerFaultError
from modelshelf.input_refusals import framework_words
from modelshelf.inputs import QUOTED_WORDS_LIMIT, pandas_module, quoted, shortened
from modelshelf.serve import listeners
from modelshelf.serve.server_methods import (
    answer_columns,
    as_returned_caller,
    column_datatypes,
    configured_method,
    fitted_column_datatypes,
    input_datatype,
    known_output_names,
    method_callers,
    output_names_of,
    seldon_metadata,
    takes_params,
)

#: V2 datatypes and the numpy dtype each is held in (little-endian on the wire).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
#: Each datatype's dtype as the wire holds it (little-endian): the binary extension's and
#: gRPC's raw contents, read here and written by ``v2_grpc.wire``.
WIRE_DTYPES = {name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items()}
_DATATYPE_OF_KIND_SIZE = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items() if name != "BYTES"
}
CONTENT_TYPES = ("np", "pd", "str")
#: From this many values a float tensor's JSON data is read through ``array.array`` (``_floats``).
_FLOATS_MIN_VALUES = 64
#: The requested output that answers the names of the other output's columns.
CLASS_NAMES_OUTPUT = "class_names"


class UnknownModelError(Exception):
    """A request names a model (or version) this server does not serve: 404."""

    status_code = 404

    def __init__(self, name: str, version: str | None, served: str) -> None:
        what = f"model {name!r}" + (f" version {version!r}" if version else "")
        super().__init__(f"{what} is not served here; this server serves model {served!r}")


def status_of(exc: BaseException) -> int:
    """The HTTP status for an exception raised while serving (400/404/503/500)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return status
    return 500


def message_of(exc: BaseException) -> str:
    """What an error response says: the error's own message, never a traceback."""
    message = getattr(exc, "message", None)
    return str(message) if message else (str(exc) or type(exc).__name__)


def error_answer(exc: BaseException, what: str, logger: logging.Logger) -> tuple[int, str]:
    """The status and message an adapter answers ``exc`` raised serving ``what`` with; a 500
    is logged with its traceback (the other statuses are the client's, counted elsewhere)."""
    status = status_of(exc)
    if status == 500:
        logger.error("%s failed", what, exc_info=exc)
    return status, message_of(exc)


def is_flat_values(X: Any) -> bool:
    """Whether a decoded input is a flat list of numbers (1-D), which a model taking rows
    refuses (``InferenceCore.refuse_flat_row``)."""
    return type(X) is np.ndarray and X.ndim == 1 and X.dtype.kind != "O"


def datatype_of(dtype: Any) -> str:
    """The V2 datatype of a numpy dtype; strings, bytes and objects are ``BYTES``."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return "BOOL"
    return _DATATYPE_OF_KIND_SIZE.get((dt.kind, dt.itemsize), "BYTES")


def parameter_value(value: Any) -> Any:
    """A parameter as a scalar (bool, int, float, str): lists and objects as JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    return orjson.dumps(value).decode()


# ------------------------------------------------------------------------------------- tensors


@dataclass(slots=True)
class Tensor:
    """One named, typed tensor; ``data`` is a numpy array of shape ``shape``."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)
    #: ``BYTES`` elements that were JSON strings (V2 JSON ``data``), not bytes as sent (the
    #: binary extension, gRPC): a model's binary column reads them as base64 (``decode_inputs``).
    json_text: bool = False

    @classmethod
    def from_values(
        cls,
        name: str,
        datatype: str,
        shape: Sequence[int],
        values: Any,
        parameters: dict[str, Any] | None = None,
        json_booleans: bool | Callable[[], bool] = True,
    ) -> Tensor:
        """From JSON ``data``: nested or flat, in row-major order. ``json_booleans``: whether
        ``values`` may hold JSON booleans (refused in a numeric tensor); gRPC's typed contents
        cannot, and skip the check. A callable is asked only when numpy read a 1 or a 0: V2
        REST's says whether the body holds ``true`` / ``false`` at all (~14 µs for 16 kB,
        where looking at the type of each of 4,000 values costs ~60 µs)."""
        dtype = _dtype_of(name, datatype)
        shape = _checked_shape(name, shape)
        if type(values) is not list:
            if values is None:  # else it reads as one value: "data has 1"
                raise BadRequestError(
                    f"input {name!r}: data is null; expected the {_size(shape)} values of "
                    f"shape {shape}, nested or flat"
                )
            values = [values]
        depth = 0
        while values and type(values[0]) is list:  # nested: flatten one level in C
            if depth + 1 >= len(shape):
                _refuse_nesting(name, f"nested deeper than its shape {shape}")
            if len(values) != _size(shape[: depth + 1]):
                _refuse_nesting(
                    name,
                    f"not nested as its shape {shape}: level {depth + 1} holds {len(values)} "
                    f"entries in all, the shape {_size(shape[: depth + 1])}",
                )
            try:
                values = list(chain.from_iterable(values))
            except TypeError:  # rows mixed with scalars
                raise BadRequestError(
                    f"input {name!r}: data must be nested lists of equal depth, or flat"
                ) from None
            depth += 1
        if depth and depth + 1 != len(shape):
            _refuse_nesting(
                name, f"nested {depth + 1} levels deep, its shape {shape} has {len(shape)}"
            )
        json_text = False
        if datatype == "BYTES":
            array = np.empty(len(values), dtype=object)
            if values and type(values[0]) is bytes:  # gRPC's bytes_contents: bytes only
                array[:] = values
            else:
                try:  # JSON: strings only; anything else has no encode
                    array[:] = [v.encode() for v in values]
                except AttributeError:
                    _refuse_bytes_element(name, shape, values)
                json_text = True
        elif dtype.kind in "iub":  # numpy's cast would truncate 5.9, wrap 300, read "false"
            array = _exact_values(name, datatype, dtype, values, shape, json_booleans)
        else:
            array = _floats(values, dtype) if len(values) >= _FLOATS_MIN_VALUES else None
            try:
                if array is None:
                    array = np.array(values, dtype=dtype)
            except (ValueError, TypeError, OverflowError) as exc:
                _refuse_unreadable_number(name, datatype, dtype, shape, values, exc)
            if array.ndim != 1:
                raise BadRequestError(f"input {name!r}: data must hold {datatype} values only")
            if json_booleans and _may_be_booleans(array) and _asked(json_booleans):
                _refuse_booleans(name, datatype, shape, values)
            if dtype.itemsize < 8 and np.count_nonzero(np.isinf(array)):  # did a cast overflow?
                _refuse_overflow(name, datatype, shape, values, array)
        return cls(name, datatype, shape, _shaped(name, array, shape), parameters or {}, json_text)

    @classmethod
    def from_bytes(
        cls,
        name: str,
        datatype: str,
        shape: Sequence[int],
        raw: bytes | memoryview,
        parameters: dict[str, Any] | None = None,
    ) -> Tensor:
        """From the binary tensor extension's bytes (or gRPC's ``raw_input_contents``)."""
        _dtype_of(name, datatype)
        shape = _checked_shape(name, shape)
        if datatype == "BYTES":
            array = _bytes_elements(name, raw)
        else:
            wire = WIRE_DTYPES[datatype]
            if len(raw) % wire.itemsize:
                raise BadRequestError(
                    f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype} values"
                )
            if datatype == "BOOL":
                _check_bool_bytes(name, raw)
            if wire.isnative:  # numpy's own dtype object: fast paths test it by identity
                array = np.frombuffer(raw, dtype=DATATYPES[datatype])
                if not array.flags.aligned:  # after a JSON header of any length: XGBoost
                    array = array.copy()  # (and others) refuse misaligned buffers
            else:
                array = np.frombuffer(raw, dtype=wire).astype(DATATYPES[datatype])
        return cls(name, datatype, shape, _shaped(name, array, shape), parameters or {})

    @classmethod
    def from_array(cls, name: str, array: Any, parameters: dict[str, Any] | None = None) -> Tensor:
        """From a model's answer: its dtype chooses the datatype (strings are ``BYTES``)."""
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        datatype = datatype_of(array.dtype)
        if datatype == "BYTES" and array.dtype.kind != "O":
            array = array.astype(object)
        return cls(name, datatype, list(array.shape), array, parameters or {})

    def json_data(self) -> Any:
        """Flat row-major values for JSON: an array orjson writes, or ``str`` for ``BYTES``."""
        data = self.data
        if self.datatype == "BYTES":
            return [_text(v) for v in data.ravel().tolist()]
        if self.datatype == "FP16":
            return data.ravel().astype(np.float32)  # orjson has no float16; same values
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return data.reshape(-1)

    def to_bytes(self) -> bytes:
        """Little-endian, row-major; ``BYTES`` elements as a 4-byte length and the bytes."""
        if self.datatype == "BYTES":
            parts = []
            for value in self.data.ravel().tolist():
                item = value if type(value) is bytes else str(value).encode()
                parts.append(len(item).to_bytes(4, "little"))
                parts.append(item)
            return b"".join(parts)
        return np.ascontiguousarray(self.data, dtype=WIRE_DTYPES[self.datatype]).tobytes()


def _refuse_nesting(name: str, problem: str) -> None:
    """The protocol's tensor data is flat, or nested as its shape (one level a dimension)."""
    raise BadRequestError(
        f"input {name!r}: data is {problem}; send it flat (row-major) or nested as the shape"
    )


def _floats(values: list, dtype: np.dtype) -> np.ndarray | None:
    """A flat list of JSON numbers as float64 (then ``dtype``) through ``array.array``: 20-30 %
    cheaper than ``np.array(values, dtype)`` on 4,000 values, and the same values (each number
    converted to a double by ``float()``'s rules, as numpy does, then cast). ``None`` when a
    value is not a number (a string numpy may parse, null, a list): ``np.array`` decides."""
    try:
        doubles = np.frombuffer(std_array.array("d", values), dtype=np.float64)
    except (TypeError, OverflowError):
        return None
    return doubles if dtype.itemsize == 8 else doubles.astype(dtype)


def _exact_values(
    name: str,
    datatype: str,
    dtype: np.dtype,
    values: list,
    shape: list[int],
    json_booleans: bool | Callable[[], bool] = True,
) -> np.ndarray:
    """JSON values of an integer or ``BOOL`` tensor, refused unless each one is exactly a
    value of the datatype (JSON integers in range; ``true`` / ``false`` for ``BOOL``)."""
    try:  # a list among the values: numpy's "inhomogeneous shape" ValueError
        found = np.array(values) if values else np.empty(0, dtype=dtype)
    except ValueError:
        found = None
    if found is None or found.ndim != 1:
        raise BadRequestError(f"input {name!r}: data must hold {datatype} values only")
    wanted = "b" if datatype == "BOOL" else "iu"
    may_be_booleans = json_booleans and wanted == "iu" and found.size
    if may_be_booleans and _may_be_booleans(found) and _asked(json_booleans):
        _refuse_booleans(name, datatype, shape, values)
    if found.size and found.dtype.kind not in wanted:
        kind = bool if wanted == "b" else int
        at = next((i for i, v in enumerate(values) if type(v) is not kind), None)
        if at is None:  # integers all, but beyond 64 bits
            limits = np.iinfo(dtype)
            at = next(i for i, v in enumerate(values) if not limits.min <= v <= limits.max)
            _refuse_out_of_range(name, datatype, shape, at, values[at], limits)
        expected = "true or false" if wanted == "b" else f"integers in {datatype}'s range"
        raise BadRequestError(
            f"input {name!r}: {datatype} data must be {expected}, got {quoted(values[at])} at "
            f"element {element_at(at, shape)}"
        )
    if wanted == "iu" and found.size:
        limits = np.iinfo(dtype)
        low, high = found.min(), found.max()
        if low < limits.min or high > limits.max:
            at = int(np.argmax((found < limits.min) | (found > limits.max)))
            _refuse_out_of_range(name, datatype, shape, at, values[at], limits)
    return found.astype(dtype, copy=False)


def element_at(index: int, shape: list[int]) -> str:
    """A flat (row-major) element index as the request's position: ``[row, column]``; flat
    when the data holds more values than its shape (refused for that after the values)."""
    if len(shape) < 2 or not index < _size(shape):
        return f"[{index}]"
    position = []
    for dim in reversed(shape):
        index, at = divmod(index, dim)
        position.append(at)
    return str(position[::-1])


def _refuse_out_of_range(
    name: str, datatype: str, shape: list[int], at: int, value: Any, limits: Any
) -> None:
    raise BadRequestError(
        f"input {name!r}: element {element_at(at, shape)} is {value}, out of {datatype}'s range "
        f"[{limits.min}, {limits.max}]; send a datatype that holds it"
    )


def _refuse_overflow(
    name: str, datatype: str, shape: list[int], values: list, array: np.ndarray
) -> None:
    """A 400 when converting a float tensor's values to ``datatype`` made any infinite that
    were not (numpy's cast gives ``inf`` for 1e300 as FP32, which a model would then take or
    refuse as if the client had sent it); infinities the client sent stand. Called only
    when the tensor holds an infinity: finite tensors pay one ``isinf`` pass (~0.5 µs for one
    row of 4, ~1 µs for 1,000 rows; ``count_nonzero`` is half of ``any``'s cost there)."""
    with np.errstate(over="ignore", invalid="ignore"):
        sent = np.array(values, dtype=np.float64)
    overflowed = np.flatnonzero(np.isinf(array) & np.isfinite(sent))
    if overflowed.size:
        at = int(overflowed[0])
        largest = float(np.finfo(array.dtype).max)
        raise BadRequestError(
            f"input {name!r}: element {element_at(at, shape)} is {values[at]!r}, out of "
            f"{datatype}'s range [{-largest:g}, {largest:g}]; send a datatype that holds it "
            "(FP64)"
        )


def _may_be_booleans(array: np.ndarray) -> bool:
    """Whether a numeric tensor read from JSON may hold ``true`` / ``false``: numpy reads
    them as 1 and 0 (and a tensor of booleans only as ``bool``). For a long tensor a pass
    over the array (~3 µs for 4,000 values) spares the look at every value's type (~60 µs
    for 4,000, paid when numpy read a 1 or 0 and the body may hold booleans); a short one is
    looked at (~0.2 µs for 4 values, where numpy's calls cost ~3 µs)."""
    if array.size < _FLOATS_MIN_VALUES or array.dtype.kind == "b":
        return True
    return bool(np.count_nonzero(array == 1) or np.count_nonzero(array == 0))


def _asked(json_booleans: bool | Callable[[], bool]) -> bool:
    return json_booleans is True or (callable(json_booleans) and json_booleans())


def _refuse_booleans(name: str, datatype: str, shape: list[int], values: list) -> None:
    """JSON ``true`` / ``false`` in a numeric tensor: Python and numpy read them as 1 and 0,
    which the client did not write (Triton refuses them too); booleans are a ``BOOL`` tensor.
    Returns when ``values`` hold none (a 1 or 0 was a number)."""
    if bool not in set(map(type, values)):
        return
    at, value = next((i, v) for i, v in enumerate(values) if type(v) is bool)
    raise BadRequestError(
        f"input {name!r}: {datatype} data must be numbers, but element {element_at(at, shape)} is "
        f"{'true' if value else 'false'} (a boolean); send it as 1 or 0, or booleans as a BOOL "
        "tensor"
    )


def _refuse_unreadable_number(
    name: str, datatype: str, dtype: np.dtype, shape: list[int], values: list, exc: Exception
) -> None:
    """A 400 naming the first element of a float tensor's JSON data that numpy cannot read as
    ``datatype`` (text that is no number, an array, a number beyond any float), as the integer
    datatypes' refusals do; numpy's own words when no single element is to blame."""
    for at, value in enumerate(values):
        try:
            if isinstance(value, list | dict):  # numpy reads [1.0] alone as a row
                raise TypeError
            np.array([value], dtype=dtype)
        except OverflowError:  # an integer beyond any double
            largest = float(np.finfo(dtype).max)
            raise BadRequestError(
                f"input {name!r}: element {element_at(at, shape)} is {quoted(value)}, out of "
                f"{datatype}'s range [{-largest:g}, {largest:g}]"
            ) from None
        except (ValueError, TypeError):
            raise BadRequestError(
                f"input {name!r}: {datatype} data must be numbers, but element "
                f"{element_at(at, shape)} is {quoted(value)}, not a number"
            ) from None
    raise BadRequestError(
        f"input {name!r}: data cannot be read as {datatype}: {framework_words(exc)}"
    ) from None


def _refuse_bytes_element(name: str, shape: list[int], values: list) -> None:
    """BYTES elements are strings in JSON (bytes in gRPC's ``bytes_contents``); a number is
    refused rather than read as its text (Triton refuses it too: ``Unable to parse JSON bytes
    array``), so that a client's mistyped tensor does not reach the model as text."""
    at, value = next((i, v) for i, v in enumerate(values) if type(v) is not str)
    from modelshelf.seldon_payload import describe

    example = (
        f' (e.g. "{orjson.dumps(value).decode()}")' if type(value) in (int, float, bool) else ""
    )
    raise BadRequestError(
        f"input {name!r}: BYTES data must be strings, but element {element_at(at, shape)} is "
        f"{describe(value)}; send each element as a JSON string{example}, or numbers with a "
        "numeric datatype (FP64, INT64, …)"
    )


def _dtype_of(name: str, datatype: str) -> np.dtype:
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise BadRequestError(
            f"input {name!r}: datatype {datatype!r} is not a V2 datatype; expected one of "
            + ", ".join(DATATYPES)
        )
    return dtype


#: numpy 1.x's most dimensions an array may have (numpy 2: 64); a longer shape is the client's
#: mistake, refused here rather than by ``reshape``'s ValueError (a 500)
MAX_DIMENSIONS = 32


def _checked_shape(name: str, shape: Any) -> list[int]:
    if type(shape) is list:
        for dim in shape:  # a loop: cheaper than all() on a generator for 1-3 dimensions
            if type(dim) is not int or dim < 0:
                break
        else:
            if len(shape) <= MAX_DIMENSIONS:
                return shape
            raise BadRequestError(
                f"input {name!r}: shape has {len(shape)} dimensions; at most "
                f"{MAX_DIMENSIONS} are supported"
            )
    if type(shape) is list:
        at, dim = next((i, d) for i, d in enumerate(shape) if type(d) is not int or d < 0)
        raise BadRequestError(
            f"input {name!r}: shape must be a list of non-negative integers, but shape[{at}] "
            f"is {quoted(dim)}"
        )
    raise BadRequestError(
        f"input {name!r}: shape must be a list of non-negative integers, got {quoted(shape)}"
    )


def _size(shape: list[int]) -> int:
    expected = 1
    for dim in shape:
        expected *= dim
    return expected


def _shaped(name: str, array: np.ndarray, shape: list[int]) -> np.ndarray:
    expected = _size(shape)
    if array.size != expected:
        raise BadRequestError(
            f"input {name!r}: shape {shape} holds {expected} values, data has {array.size}"
        )
    return array.reshape(shape)


def _bytes_elements(name: str, raw: bytes | memoryview) -> np.ndarray:
    view = memoryview(raw)
    found = []
    at, end = 0, len(view)
    while at < end:
        if at + 4 > end:
            raise BadRequestError(f"input {name!r}: BYTES data ends inside an element's length")
        size = int.from_bytes(view[at : at + 4], "little")
        at += 4
        if at + size > end:
            raise BadRequestError(f"input {name!r}: a BYTES element runs past the data's end")
        found.append(bytes(view[at : at + size]))
        at += size
    array = np.empty(len(found), dtype=object)
    array[:] = found
    return array


def _text(value: Any) -> str:
    if type(value) is bytes:
        return value.decode("utf-8", errors="replace")
    return value if type(value) is str else str(value)


def _as_str(tensor: Tensor, array: np.ndarray | None = None) -> np.ndarray:
    """A ``BYTES`` tensor's elements (or ``array``, its data reshaped) as ``str``: an object
    array of the same shape. The codecs hand ``BYTES`` to models as text, so an element that
    is not UTF-8 is a 400 naming it: decoded with replacement characters, a category the
    client never sent would reach the model."""
    data = tensor.data if array is None else array
    found = np.empty(data.shape, dtype=object)
    elements = data.ravel().tolist()
    try:
        found.ravel()[:] = [v.decode() if type(v) is bytes else _text(v) for v in elements]
    except UnicodeDecodeError as exc:
        at = next(i for i, v in enumerate(elements) if type(v) is bytes and not _is_utf8(v))
        raise BadRequestError(
            f"input {tensor.name!r}: element {element_at(at, tensor.shape)} is not UTF-8 text "
            f"({exc.reason} at byte {exc.start}: {quoted(elements[at])}); BYTES given to this "
            "model are read as text: send UTF-8"
        ) from None
    return found


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str | None
    id: str | None
    outputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Answer:
    """What a server's method answered, and the names of its columns where known."""

    data: Any
    output_names: list[str] | None


# ------------------------------------------------------------------------------------- codecs


def decode_inputs(
    request: InferenceRequest, bytes_inputs: frozenset[str] = frozenset()
) -> tuple[Any, list[str]]:
    """The request's inputs as the model takes them (``X``) and the feature names (``names``).
    ``BYTES`` inputs become text, except ``bytes_inputs`` (``_bytes_or_text``)."""
    inputs = request.inputs
    if not inputs:
        raise BadRequestError("the request has no inputs")
    if len(inputs) > 1:
        _check_unique_names(inputs)
    content_type = request.parameters.get("content_type") if request.parameters else None
    if content_type is None:
        content_type = (
            (inputs[0].parameters.get("content_type") or "np") if len(inputs) == 1 else "pd"
        )
    if content_type == "np":
        if len(inputs) != 1:
            raise BadRequestError(
                f"content_type np takes one input, got {len(inputs)}; use pd for named columns"
            )
        tensor = inputs[0]
        if tensor.datatype == "BYTES":
            return _bytes_or_text(tensor, bytes_inputs), []
        return tensor.data, []
    if content_type == "pd":
        return _frame(inputs, bytes_inputs), [t.name for t in inputs]
    if content_type == "str":
        if len(inputs) != 1 or inputs[0].datatype != "BYTES":
            raise BadRequestError("content_type str takes one BYTES input")
        return _as_str(inputs[0]).ravel().tolist(), []
    raise BadRequestError(
        f"content_type {content_type!r} is not known; expected one of {', '.join(CONTENT_TYPES)}"
    )


def _check_unique_names(inputs: list[Tensor]) -> None:
    seen: dict[str, int] = {}
    for index, tensor in enumerate(inputs):
        first = seen.setdefault(tensor.name, index)
        if first != index:
            raise BadRequestError(
                f"inputs[{index}]: name {tensor.name!r} is already the name of inputs[{first}]; "
                "each input needs a name of its own"
            )


def _bytes_or_text(
    tensor: Tensor, bytes_inputs: frozenset[str], array: np.ndarray | None = None
) -> np.ndarray:
    """A ``BYTES`` tensor's elements (or ``array``, its data reshaped) as text, or for one of
    ``bytes_inputs`` (an MLflow signature's ``binary`` columns) as the bytes sent: from the
    binary extension and gRPC as they are (a PNG is no UTF-8), from JSON as the text of its
    strings, base64 that the model's reader decodes (JSON holds no raw bytes; MLflow's scoring
    server and MLServer's MLflow runtime read a binary column's JSON as base64 too)."""
    if tensor.name in bytes_inputs and not tensor.json_text:
        return tensor.data if array is None else array
    return _as_str(tensor, array)


def _frame(inputs: list[Tensor], bytes_inputs: frozenset[str] = frozenset()) -> Any:
    pd = pandas_module()
    columns = {}
    rows = None
    for tensor in inputs:
        data = tensor.data
        if (data.ndim == 2 and data.shape[1] == 1) or data.ndim == 0:
            data = data.reshape(-1)
        if data.ndim != 1:
            raise BadRequestError(
                f"input {tensor.name!r}: content_type pd takes one column per input, shape [N] "
                f"or [N, 1]; got {tensor.shape}"
            )
        if rows is not None and len(data) != rows:
            raise BadRequestError(
                f"input {tensor.name!r} has {len(data)} rows, the inputs before it {rows}"
            )
        rows = len(data)
        if tensor.datatype == "BYTES":
            data = _bytes_or_text(tensor, bytes_inputs, data)
        columns[tensor.name] = data
    return pd.DataFrame(columns)


# --------------------------------------------------------------------------------- the core


@dataclass(slots=True)
class Plan:
    """A request decoded for the model: ``X``, feature ``names``, the ``methods`` its outputs
    name (in order) and the model's ``params``."""

    X: Any
    names: list[str]
    methods: list[str]
    params: dict[str, Any] | None


class InferenceCore:
    """One loaded server object (ours or a user's ``SeldonComponent``) behind every protocol.

    Built in the serving process after ``load()``. ``model_name``: ``--model-name`` /
    ``MODEL_NAME``, else ``PREDICTIVE_UNIT_ID`` (Seldon's unit; ``options.parse_args``), else
    the name the model's metadata gives, else the class's name.
    """

    def __init__(
        self,
        user_model: Any,
        model_name: str | None = None,
        model_version: str | None = None,
        seldon_metrics: Any = None,
    ) -> None:
        self.user_model = user_model
        self.seldon_metrics = seldon_metrics
        self._publish_metrics = _metrics_publisher(user_model, seldon_metrics)
        self.seldon_metadata = seldon_metadata(user_model)
        self.name = model_name or str(self.seldon_metadata.get("name") or type(user_model).__name__)
        versions = self.seldon_metadata.get("versions") or []
        self.version = model_version or (str(versions[0]) if versions else None)
        self.platform = str(self.seldon_metadata.get("platform") or "")
        self.default_method = configured_method(user_model)
        self._callers = method_callers(user_model, self.default_method)
        self.methods = tuple(self._callers)
        self.takes_params = takes_params(user_model)
        self._as_returned = as_returned_caller(user_model)
        #: An MLflow model's output signature's columns (name -> V2 datatype), decided at load:
        #: its ``predict`` answer stays a DataFrame (``frame_method``), one tensor a column.
        self.answer_columns = answer_columns(user_model)
        self.frame_method = (
            self.default_method if self.answer_columns and self._as_returned else None
        )
        #: The only input names the model takes, when it names them (an MLflow signature).
        declared = getattr(user_model, "signature_input_names", None)
        self._input_names = declared if isinstance(declared, frozenset) else None
        #: The inputs the model takes as bytes, not text (an MLflow signature's binary columns).
        raw = getattr(user_model, "bytes_inputs", None)
        self._bytes_inputs = raw if isinstance(raw, frozenset) else frozenset()
        self._metadata: dict[str, Any] | None = None
        self._row_inputs: list[dict[str, Any]] = []
        from modelshelf.metadata import package_versions

        # Read once: importlib.metadata scans the installed packages on every call.
        self.server_version = package_versions(("modelshelf",)).get("modelshelf", "0")

    # ------------------------------------------------------------------ state

    def model_ready(self) -> bool:
        """The model is loaded: requests may be served."""
        ready = getattr(self.user_model, "ready", True)
        return bool(ready) if not callable(ready) else bool(ready())

    def ready(self) -> bool:
        """The readiness answers' "ready": the model is loaded and every port the server serves
        accepts connections (``modelshelf.serve.listeners``: the gRPC port too)."""
        return self.model_ready() and listeners.all_listening()

    def check(self, name: str, version: str | None = None, ready: bool = True) -> None:
        """404 unless ``name`` is this model and ``version``, when given, its version (a model
        without one has no versions to ask for); with ``ready``, 503 until it is ready."""
        if name != self.name or (version is not None and version != self.version):
            raise UnknownModelError(name, version, self.name)
        if ready and not self.model_ready():
            raise ModelNotReadyError()

    def server_metadata(self, extensions: Sequence[str] = ()) -> dict[str, Any]:
        return {
            "name": "modelshelf",
            "version": self.server_version,
            "extensions": list(extensions),
        }

    def model_metadata(self) -> dict[str, Any]:
        """V2 model metadata: name, versions, platform, inputs and outputs (``-1``: any size),
        from the same description the Seldon ``/metadata`` endpoint gives."""
        if self._metadata is None:
            self._metadata = self._describe()
        return self._metadata

    # ------------------------------------------------------------------ calls

    def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Decode → the server's method(s) the requested outputs name → encode."""
        return self.run_plan(request, self.plan(request))

    def run_plan(self, request: InferenceRequest, plan: Plan) -> InferenceResponse:
        """``infer`` after ``plan``: the calls and the response (for a request the batcher
        planned and does not join, so that it is not decoded twice)."""
        try:
            # An MLflow DataFrame answer stays one (``respond`` sends its columns); without
            # such a method (``frame_method`` None) no method is called as returned.
            frame = self.frame_method
            answers = {
                m: self.call(plan.X, plan.names, m, plan.params, m == frame) for m in plan.methods
            }
        except BadRequestError as exc:  # a try costs nothing until it catches
            named = self.named_input_error(request, exc)
            if named is None:
                raise
            raise named from exc
        return self.respond(request, answers)

    def named_input_error(
        self, request: InferenceRequest, exc: BadRequestError
    ) -> BadRequestError | None:
        """A model's refusal of one unnamed input ("the input must hold numbers only") with
        the tensor's name, datatype and shape, and what the model takes, in front; ``None``
        when the request is not one input for a model of rows (``exc`` says it as it is)."""
        if len(request.inputs) != 1 or self.row_width is None:
            return None
        tensor = request.inputs[0]
        (spec,) = self.row_inputs
        return BadRequestError(
            f"input {tensor.name!r} ({tensor.datatype}, shape {tensor.shape}): {exc.message}; "
            f"this model takes {spec['datatype']} rows, shape {spec['shape']}"
        )

    def plan(self, request: InferenceRequest) -> Plan:
        """What ``infer`` calls: the decoded input and the methods the outputs ask for (the
        batcher joins requests between the two halves)."""
        X, names = decode_inputs(request, self._bytes_inputs)
        if not names and self._input_names is not None:
            self.refuse_unknown_input(request.inputs[0].name)
        if not names and request.inputs[0].name in self.column_inputs:
            self.refuse_missing_columns(request.inputs[0])
        if is_flat_values(X):
            self.refuse_flat_row(f"input {request.inputs[0].name!r}: shape {list(X.shape)}")
        wanted = [o.name for o in request.outputs] if request.outputs else []
        methods = [n for n in wanted if n != CLASS_NAMES_OUTPUT]
        if self.answer_columns:  # a column of the DataFrame answer: its method's call
            methods = [self.frame_method if n in self.answer_columns else n for n in methods]
        for name in methods:
            if name not in self._callers:
                raise BadRequestError(
                    f"output {name!r} is not one this model gives; expected one of "
                    + ", ".join([*self.methods, *self.answer_columns, CLASS_NAMES_OUTPUT])
                )
        if not methods:
            methods = [self.default_method]
        elif len(methods) > 1:
            methods = list(dict.fromkeys(methods))
        return Plan(X, names, methods, _model_params(request.parameters))

    def respond(self, request: InferenceRequest, answers: dict[str, Answer]) -> InferenceResponse:
        """The response to ``request`` from its methods' answers (in ``plan``'s order)."""
        wanted = [o.name for o in request.outputs] if request.outputs else []
        outputs: list[Tensor] = []
        class_names: list[str] | None = None
        columns = 0  # outputs that are columns of a DataFrame answer
        frame = self.frame_method
        for method, answer in answers.items():
            class_names = class_names or answer.output_names
            if frame is not None and method == frame and _is_frame(answer.data):
                found = self._columns_asked(method, answer.data, wanted)
                columns = len(found)
                outputs.extend(found)
            else:
                outputs.extend(_tensors(method, answer))
        if CLASS_NAMES_OUTPUT in wanted:
            if not class_names:
                raise BadRequestError(
                    f"{', '.join(answers)} gave no class names (per-class outputs such as "
                    "predict_proba have them, and transforms that name their columns)"
                )
            names_array = np.empty(len(class_names), dtype=object)
            names_array[:] = [n.encode() for n in class_names]
            outputs.append(Tensor(CLASS_NAMES_OUTPUT, "BYTES", [len(class_names)], names_array))
        if len(outputs) > 1:  # in the order they were asked for
            order = {name: i for i, name in enumerate(wanted)}
            outputs.sort(key=lambda t: order.get(t.name, len(order)))
        response = InferenceResponse(self.name, self.version, request.id, outputs)
        if columns and columns == len(outputs):  # MLServer's request codec of a DataFrame
            response.parameters = {"content_type": "pd"}
        return response

    def _columns_asked(self, method: str, frame: Any, wanted: list[str]) -> list[Tensor]:
        """The DataFrame answer's columns as tensors: those the request's outputs name, or all
        when it names none of them (or the method itself). A named column the answer lacks is
        the model's fault (its signature promised it): a 500 naming it."""
        asked = [n for n in wanted if n in self.answer_columns] if wanted else []
        if not asked or method in wanted:
            return frame_tensors(frame)
        answered = [str(c) for c in frame.columns]
        missing = [n for n in asked if n not in answered]
        if missing:
            raise ServerFaultError(
                f"{method} answered no column {missing[0]!r}, which its signature names; it "
                f"answered {', '.join(map(repr, answered)) or 'none'}"
            )
        return frame_tensors(frame, frozenset(asked))

    def call(
        self,
        X: Any,
        names: Sequence[str] | None = None,
        method: str | None = None,
        params: dict[str, Any] | None = None,
        as_returned: bool = False,
    ) -> Answer:
        """``method`` (default: the configured one) of the server on a decoded input;
        ``as_returned``: the model's own result (an MLflow model's DataFrame stays one)."""
        if not self.model_ready():  # served once loaded, whether or not gRPC listens yet
            raise ModelNotReadyError()
        caller = self._callers.get(method or self.default_method)
        if as_returned and method in (None, self.default_method) and self._as_returned:
            caller = self._as_returned
        if caller is None:
            raise BadRequestError(
                f"method {method!r} is not one this model has; expected one of "
                + ", ".join(self.methods)
            )
        names = list(names) if names is not None else []
        if params and self.takes_params:
            if caller is self._as_returned:  # /invocations: a DataFrame stays one (records)
                data = self._as_returned(X, names, params=params)
            else:
                data = self.user_model.predict(X, names, params=params)
            return Answer(data, output_names_of(self.user_model, data))
        data = caller(X, names)
        if self._publish_metrics is not None and hasattr(self.user_model, "metrics"):
            self._publish_metrics()
        return Answer(data, output_names_of(self.user_model, data))

    @functools.cached_property
    def row_width(self) -> int | None:
        """The values per row when the model takes one input of rows, ``[-1, n]`` in its
        metadata (read once); ``None`` when it declares no such input."""
        inputs = self.row_inputs
        shape = inputs[0]["shape"] if len(inputs) == 1 else []
        return shape[1] if len(shape) == 2 and shape[1] > 0 else None

    @property
    def row_inputs(self) -> list[dict[str, Any]]:
        """The metadata's inputs, except that a model fitted on a DataFrame has its one input
        of rows here (its metadata lists its columns, the inputs it also takes by name)."""
        self.model_metadata()
        return self._row_inputs

    @functools.cached_property
    def column_inputs(self) -> frozenset[str]:
        """The model's feature names when it knows several (``feature_names_in_``): the
        inputs a V2 request gives one per column (read once)."""
        names = getattr(self.user_model, "feature_names", None)
        if not isinstance(names, list | tuple) or len(names) < 2:
            return frozenset()
        return frozenset(str(n) for n in names)

    def refuse_missing_columns(self, tensor: Tensor) -> None:
        """A 400 for one input named after one of the model's several columns: the others
        are missing (read as a row of values it would be "expected 4 features per row, got
        1", naming none of them)."""
        columns = [str(n) for n in self.user_model.feature_names]
        every = shortened(", ".join(repr(c) for c in columns), QUOTED_WORDS_LIMIT)
        missing = ", ".join(repr(c) for c in columns if c != tensor.name)
        raise BadRequestError(
            f"input {tensor.name!r} is one of this model's {len(columns)} inputs, one per "
            f"column ({every}); missing {shortened(missing, QUOTED_WORDS_LIMIT)}: send each "
            "column as an input of its own (shape [N] or [N, 1])"
        )

    def refuse_unknown_input(self, name: str) -> None:
        """A 400 for one input whose name the model does not know (MLServer's MLflow runtime
        decodes inputs by name; reading it by position would guess)."""
        assert self._input_names is not None
        if name not in self._input_names:
            expected = ", ".join(repr(n) for n in self._input_names_in_order())
            raise BadRequestError(
                f"input {name!r} is not an input of this model: its signature names {expected} "
                "(one input each, as in the model's metadata)"
            )

    def _input_names_in_order(self) -> list[str]:
        declared = [i["name"] for i in self.model_metadata()["inputs"]]
        known = self._input_names or frozenset()
        return [n for n in declared if n in known] or sorted(known)

    def refuse_flat_row(self, what: str) -> None:
        """A 400 for a flat list of values given to a model that takes rows. KServe's and
        MLServer's servers hand such an input to the model as a 1-D array, which scikit-learn
        and XGBoost refuse (as a 500); reading it as one row would guess, so it is named."""
        width = self.row_width
        if width is not None:
            raise BadRequestError(
                f"{what} is a flat list of values, but this model takes rows of {width} values "
                f"(shape [-1, {width}]); send one row as [[…]], shape [1, {width}]"
            )

    # ------------------------------------------------------------------ metadata

    def _describe(self) -> dict[str, Any]:
        seldon = self.seldon_metadata
        datatype = input_datatype(self.user_model)
        inputs = []
        self._row_inputs = []
        for i, spec in enumerate(seldon.get("inputs") or []):
            named = _named_columns(spec)
            types = column_datatypes(self.user_model, datatype_of) if named else None
            if named is None or types is None:
                rows = _tensor_spec(spec, f"input-{i}", datatype)
                self._row_inputs.append(rows)
                # A model fitted on a DataFrame takes rows too, but its columns by name.
                types = fitted_column_datatypes(self.user_model, named, datatype_of)
                if types is None:
                    inputs.append(rows)
                    continue
            # A model taking its columns one by one: one input each, as the pd codec takes
            # them, of the type its encoders reveal (strings as BYTES).
            for name in named:
                column = {"name": name, "datatype": types.get(name, datatype), "shape": [-1, 1]}
                inputs.append(column)
        outputs = []
        described = seldon.get("outputs") or []
        probed = getattr(self.user_model, "probed_outputs", None) or {}
        for name in self.methods:
            if name == self.frame_method:  # one output a column, as the answer has them
                for column, datatype in self.answer_columns.items():
                    outputs.append({"name": column, "datatype": datatype, "shape": [-1, 1]})
                continue
            own = described and "datatype" in described[0]  # the user's metadata.yaml says
            if name in probed and not (name == self.default_method and own):
                datatype, shape = probed[name]
                spec = {"name": name, "datatype": datatype, "shape": list(shape)}
            elif name == self.default_method and described:
                spec = _tensor_spec(described[0], name, self._output_datatype(name))
                spec["name"] = name
            else:
                spec = {
                    "name": name,
                    "datatype": self._output_datatype(name),
                    "shape": self._output_shape(name),
                }
            outputs.append(spec)
        known = (known_output_names(self.user_model, m) for m in self.methods)
        names = next((found for found in known if found), None)
        if names:
            outputs.append({"name": CLASS_NAMES_OUTPUT, "datatype": "BYTES", "shape": [len(names)]})
        found: dict[str, Any] = {"name": self.name, "platform": self.platform}
        if self.version:
            found["versions"] = [self.version]
        found["inputs"] = inputs
        found["outputs"] = outputs
        return found

    def _output_datatype(self, method: str) -> str:
        model = getattr(self.user_model, "model", None)
        xgboost = type(self.user_model).__name__ == "XGBoostServer"
        if method == "predict":
            classes = getattr(model, "classes_", None)
            if classes is not None:
                return datatype_of(np.asarray(classes).dtype)
        return "FP32" if xgboost else "FP64"

    def _output_shape(self, method: str) -> list[int]:
        names = known_output_names(self.user_model, method)
        if names:
            return [-1, len(names)]
        return [-1] if method == "predict" else [-1, -1]


def _metrics_publisher(user_model: Any, seldon_metrics: Any) -> Callable[[], Any] | None:
    """Hands the class's custom metrics to seldon-core after a call, as its predict does
    (imported here, once: seldon-core is loaded in every serving process anyway)."""
    if seldon_metrics is None:
        return None
    from seldon_core.metrics import PREDICT_METRIC_METHOD_TAG
    from seldon_core.user_model import client_custom_metrics

    def publish() -> Any:
        return client_custom_metrics(user_model, seldon_metrics, PREDICT_METRIC_METHOD_TAG)

    return publish


def _model_params(parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """A V2 request's parameters for the model (MLflow ``params``): all but the codec's."""
    if not parameters:
        return None
    found = {k: v for k, v in parameters.items() if k not in ("content_type", "headers")}
    return found or None


def _named_columns(spec: Any) -> list[str] | None:
    """The column names of a Seldon ``ndarray`` input description (``schema.names``)."""
    if not isinstance(spec, dict) or "datatype" in spec:
        return None
    names = (spec.get("schema") or {}).get("names")
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _tensor_spec(spec: Any, name: str, datatype: str) -> dict[str, Any]:
    """A Seldon metadata input/output (V2 style, or ``messagetype`` with a schema) as V2's."""
    if not isinstance(spec, dict):
        return {"name": name, "datatype": datatype, "shape": [-1]}
    if "datatype" in spec:
        return {
            "name": str(spec.get("name") or name),
            "datatype": str(spec["datatype"]),
            "shape": [int(d) for d in spec.get("shape") or [-1]],
        }
    schema = spec.get("schema") or {}
    shape = schema.get("shape") or ([-1, len(schema["names"])] if schema.get("names") else [-1, -1])
    return {"name": name, "datatype": datatype, "shape": [int(d) for d in shape]}


def _is_frame(data: Any) -> bool:
    pd = sys.modules.get("pandas")  # a DataFrame answer means pandas is imported
    return pd is not None and isinstance(data, pd.DataFrame)


def frame_tensors(frame: Any, columns: frozenset[str] | None = None) -> list[Tensor]:
    """An MLflow model's DataFrame answer as V2 outputs, as MLServer's pandas codec writes one:
    a tensor per column (of ``columns``, when given), named after it, shape ``[N, 1]``, typed by
    the column's dtype (pandas' nullable ``Int64`` / ``boolean`` without missing values as
    their numpy type; datetimes and other non-numpy types as their text); a column of text is
    ``BYTES`` with the parameter ``content_type: str``, as MLServer marks it."""
    found = []
    rows = len(frame)
    for at, name in enumerate(frame.columns):
        if columns is not None and str(name) not in columns:
            continue
        values = _column_values(frame.iloc[:, at])
        tensor = Tensor.from_array(str(name), values.reshape(rows, 1))
        if tensor.datatype == "BYTES" and all(type(v) is str for v in values.tolist()):
            tensor.parameters["content_type"] = "str"
        found.append(tensor)
    return found


def _column_values(series: Any) -> np.ndarray:
    values = series.to_numpy()
    if values.dtype.kind in "biuf":
        return values
    numpy_dtype = getattr(series.dtype, "numpy_dtype", None)  # pandas' masked dtypes
    if numpy_dtype is not None and np.dtype(numpy_dtype).kind in "biuf" and not series.hasnans:
        return series.to_numpy(dtype=numpy_dtype)
    if values.dtype.kind == "O":
        return values
    return series.astype(str).to_numpy(dtype=object)


def _tensors(method: str, answer: Answer) -> list[Tensor]:
    """The model's answer as output tensors named after the method (a DataFrame: one a column)."""
    data = answer.data
    parameters = {"class_names": answer.output_names} if answer.output_names else {}
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        return [Tensor.from_array(str(c), data[c].to_numpy()) for c in data.columns]
    if pd is not None and isinstance(data, pd.Series):
        data = data.to_numpy()
    if isinstance(data, dict):
        raise ServerFaultError(f"{method} answered a mapping, which is not a tensor")
    return [Tensor.from_array(method, data, parameters)]


def _check_bool_bytes(name: str, raw: bytes | memoryview) -> None:
    """A ``BOOL`` is one byte, 0 or 1 (as JSON's ``true`` / ``false`` are refused otherwise):
    numpy would read any other byte as a boolean that is neither."""
    octets = np.frombuffer(raw, np.uint8)
    wrong = np.flatnonzero(octets > 1)
    if wrong.size:
        at = int(wrong[0])
        raise BadRequestError(
            f"input {name!r}: BOOL bytes must be 0 or 1, got {int(octets[at])} at element {at}"
        )
