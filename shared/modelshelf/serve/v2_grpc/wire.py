"""``ModelInferRequest`` / ``ModelInferResponse`` read and written directly in protobuf's wire
format, for the common case, without the generated classes.

seldon-core pins protobuf 3.20, which has no C++ build for Python 3.11: its pure-Python messages
cost ~200 µs to parse one single-row request and build and serialize its answer, more than the
model's own call. Here a request whose inputs are all in ``raw_input_contents`` (what
tritonclient, MLServer's and KServe's clients send) is read in a few µs, and every answer is
written so. Typed ``contents`` are read too: packed floats with ``np.frombuffer``, packed
varints decoded by numpy (~4-6 ms less than protobuf's parser for 1,000 rows of 4), bytes.
``read_request`` returns ``None`` for anything else -- unpacked repeated numbers, a malformed
message -- and the caller parses that with the generated classes, so behaviour and error
messages do not depend on which path read a request (tests fuzz both with the same bytes).
Unknown fields are skipped, as protobuf does. Nothing here imports the generated stubs (tests
load it beside tritonclient's).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelshelf.serve import inference
from modelshelf.serve.inference import InferenceResponse

# Wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5
_UINT64 = 1 << 64
_UINT64_MASK = _UINT64 - 1
_INT64_MAX = (1 << 63) - 1


class _MalformedError(Exception):
    """Not a message this reader takes: the generated classes parse it instead."""


@dataclass(slots=True)
class InputHeader:
    """An input tensor's fields, and its typed ``contents`` if it has any.

    ``contents``: the ``InferTensorContents`` fields sent, by name, in field order (what
    protobuf's ``ListFields`` gives); ``None`` when the input has no typed contents (or only
    empty ones, which protobuf cannot tell from none)."""

    name: str = ""
    datatype: str = ""
    shape: list[int] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    contents: dict[str, Any] | None = None


@dataclass(slots=True)
class RawInferRequest:
    """A ``ModelInferRequest`` whose inputs are raw (``raw_input_contents``) or typed in packed
    ``contents`` (and ``bytes_contents``)."""

    model_name: str = ""
    model_version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputHeader] = field(default_factory=list)
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Slices of the request's bytes (``np.frombuffer`` reads them in place).
    raw_input_contents: list[memoryview] = field(default_factory=list)


# ---------------------------------------------------------------------------------- reading


def read_request(data: bytes) -> RawInferRequest | None:
    """The request, or ``None`` when the generated classes must read it (unpacked typed
    numbers, anything malformed)."""
    try:
        return _read_request(memoryview(data))
    except (_MalformedError, IndexError, UnicodeDecodeError, struct.error):
        return None


def _read_request(view: memoryview) -> RawInferRequest:
    found = RawInferRequest()
    for number, wire, value in _fields(view):
        if wire != LEN:
            continue  # no scalar fields at this level: an unknown one
        if number == 1:
            found.model_name = _text(value)
        elif number == 2:
            found.model_version = _text(value)
        elif number == 3:
            found.id = _text(value)
        elif number == 4:
            _read_parameter(value, found.parameters)
        elif number == 5:
            found.inputs.append(_read_input(value))
        elif number == 6:
            found.outputs.append(_read_output(value))
        elif number == 7:
            found.raw_input_contents.append(value)  # a slice of the message: not copied
    found.parameters = _set_only(found.parameters)
    return found


def _read_input(view: memoryview) -> InputHeader:
    found = InputHeader()
    typed: dict[int, list[memoryview]] = {}
    for number, wire, value in _fields(view):
        if number == 1 and wire == LEN:
            found.name = _text(value)
        elif number == 2 and wire == LEN:
            found.datatype = _text(value)
        elif number == 3:
            if wire == LEN:  # packed
                at = 0
                while at < len(value):
                    dim, at = _varint(value, at)
                    found.shape.append(_signed(dim))
            elif wire == VARINT:
                found.shape.append(_signed(value))
        elif number == 4 and wire == LEN:
            _read_parameter(value, found.parameters)
        elif number == 5:
            if wire != LEN:
                raise _MalformedError("contents that are not a message")
            _read_contents(value, typed)
    if typed:
        found.contents = _typed_values(typed)
    found.parameters = _set_only(found.parameters)
    return found


#: The ``InferTensorContents`` fields: packed fixed-width floats, read by ``np.frombuffer``;
#: packed varints (bool, int32, int64, uint32, uint64), decoded by numpy all at once; and
#: ``bytes_contents``. Protobuf's pure-Python parser reads each value in Python, ~1 µs each.
_FLOAT_CONTENTS = {6: ("fp32_contents", np.dtype("<f4")), 7: ("fp64_contents", np.dtype("<f8"))}
_VARINT_CONTENTS = {
    1: "bool_contents",
    2: "int_contents",
    3: "int64_contents",
    4: "uint_contents",
    5: "uint64_contents",
}
_BYTES_CONTENTS = 8
_SEVEN_BITS = np.uint64(0x7F)
_LOW_32_BITS = np.uint64(0xFFFFFFFF)


def _read_contents(view: memoryview, into: dict[int, list[memoryview]]) -> None:
    """The chunks of each packed field and each ``bytes_contents`` element (a message sent
    twice is merged: appended). Unpacked repeated numbers are left to protobuf."""
    for number, wire, value in _fields(view):
        kind = _FLOAT_CONTENTS.get(number)
        if kind is None:
            if wire != LEN or not (number in _VARINT_CONTENTS or number == _BYTES_CONTENTS):
                raise _MalformedError("typed contents not packed, or not InferTensorContents'")
        elif wire != LEN or len(value) % kind[1].itemsize:
            raise _MalformedError("fp32 / fp64 contents not packed whole")
        into.setdefault(number, []).append(value)


def _typed_values(chunks: dict[int, list[memoryview]]) -> dict[str, Any] | None:
    """The values of each field with any, as protobuf gives them: Python floats, every NaN
    read as ``math.nan`` (protobuf's decoder drops NaN payloads and signs); ints and bools;
    bytes."""
    typed: dict[str, Any] = {}
    for number in sorted(chunks):
        parts = chunks[number]
        if number == _BYTES_CONTENTS:
            typed["bytes_contents"] = [bytes(part) for part in parts]
            continue
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if not len(data):
            continue
        if number in _VARINT_CONTENTS:
            typed[_VARINT_CONTENTS[number]] = _packed_varints(number, data)
            continue
        name, dtype = _FLOAT_CONTENTS[number]
        array = np.frombuffer(data, dtype)
        nan = np.isnan(array)
        if nan.any():
            array = array.copy()
            array[nan] = np.nan
        typed[name] = array.tolist()
    return typed or None


def _packed_varints(number: int, data: bytes | memoryview) -> list:
    """Packed varints as protobuf reads field ``number``: the low 64 bits of each, then bool,
    int32 (low 32 bits, signed), int64 (signed), uint32 (low 32 bits) or uint64."""
    found = np.frombuffer(data, np.uint8)
    if found[-1] >= 0x80:
        raise _MalformedError("a packed varint cut short")
    if found.max() < 0x80:  # every varint one byte: the common case, one array
        values = found.astype(np.uint64)
    else:
        ends = np.flatnonzero(found < 0x80)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        longest = int((ends - starts).max()) + 1
        if longest > 10:
            raise _MalformedError("a varint longer than 10 bytes")
        # One pass per byte position, over the varints still that long: a few arrays of one
        # word per varint, not one per byte (a 3 MB request peaked at 168 MB that way).
        values = found[starts].astype(np.uint64) & _SEVEN_BITS
        for place in range(1, longest):
            longer = np.flatnonzero(ends - starts >= place)
            # Bits above the 64th (the 10th byte's upper 6) fall off, as protobuf masks them.
            group = found[starts[longer] + place].astype(np.uint64) & _SEVEN_BITS
            values[longer] |= group << np.uint64(7 * place)
    if number == 1:
        return (values != 0).tolist()
    if number == 2:
        return (values & _LOW_32_BITS).astype(np.uint32).view(np.int32).tolist()
    if number == 3:
        return values.view(np.int64).tolist()
    if number == 4:
        return (values & _LOW_32_BITS).tolist()
    return values.tolist()


def _read_output(view: memoryview) -> tuple[str, dict[str, Any]]:
    name, parameters = "", {}
    for number, wire, value in _fields(view):
        if number == 1 and wire == LEN:
            name = _text(value)
        elif number == 2 and wire == LEN:
            _read_parameter(value, parameters)
    return name, _set_only(parameters)


def _read_parameter(view: memoryview, into: dict[str, Any]) -> None:
    """One map entry (``key``: string, ``value``: ``InferParameter``), ``None`` when unset.

    The key keeps the place of its first entry, even an unset one, as protobuf's map keeps it;
    ``_set_only`` then leaves the unset ones out, as the generated path does."""
    key, value = "", None
    for number, wire, item in _fields(view):
        if number == 1 and wire == LEN:
            key = _text(item)
        elif number == 2 and wire == LEN:  # a message sent twice is merged: the last set wins
            found = _read_parameter_value(item)
            value = value if found is None else found
    into[key] = value


def _set_only(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters without the unset ones (protobuf's map holds an empty value, which reads
    as unset)."""
    if None in parameters.values():
        return {key: value for key, value in parameters.items() if value is not None}
    return parameters


def _read_parameter_value(view: memoryview) -> Any:
    value = None
    for number, wire, item in _fields(view):  # the last of a oneof wins, as in protobuf
        if number == 1 and wire == VARINT:
            value = bool(item & _UINT64_MASK)  # protobuf keeps a varint's low 64 bits
        elif number == 2 and wire == VARINT:
            value = _signed(item)
        elif number == 3 and wire == LEN:
            value = _text(item)
        elif number == 4 and wire == I64:
            value = _DOUBLE.unpack(item)[0]
            if value != value:  # protobuf reads every NaN as math.nan: no sign, no payload
                value = math.nan
        elif number == 5 and wire == VARINT:
            value = item & _UINT64_MASK
    return value


def _fields(view: memoryview):
    """``(field number, wire type, value)``: an int for VARINT, a memoryview otherwise.

    Keys, lengths and values below 128 (nearly all of them) are read inline, one byte."""
    at, end = 0, len(view)
    while at < end:
        key = view[at]
        if key < 0x80:
            at += 1
        else:
            key, at = _varint(view, at)
            if not view[at - 1] or key > _UINT64_MASK:
                # A key padded with zero bytes: protobuf matches keys byte for byte and takes
                # the field as an unknown one. A key past 64 bits: protobuf keeps its low 64,
                # whose field number may be 0, which it refuses. The generated classes read
                # such a message.
                raise _MalformedError("a key not in its shortest form, or past 64 bits")
        number, wire = key >> 3, key & 7
        if wire == LEN:
            size = view[at]
            if size < 0x80:
                at += 1
            else:
                size, at = _varint(view, at)
            if at + size > end:
                raise _MalformedError("a field runs past the message's end")
            value, at = view[at : at + size], at + size
        elif wire == VARINT:
            value = view[at]
            if value < 0x80:
                at += 1
            else:
                value, at = _varint(view, at)
        elif wire == I64:
            if at + 8 > end:
                raise _MalformedError("truncated fixed64")
            value, at = view[at : at + 8], at + 8
        elif wire == I32:
            if at + 4 > end:
                raise _MalformedError("truncated fixed32")
            value, at = view[at : at + 4], at + 4
        else:
            raise _MalformedError(f"wire type {wire}")
        if number == 0:
            raise _MalformedError("field number 0")
        yield number, wire, value


def _varint(view: memoryview, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, at
        shift += 7
        if shift >= 70:
            raise _MalformedError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    """An int64 read as its 64-bit two's complement."""
    value &= _UINT64_MASK
    return value - _UINT64 if value > _INT64_MAX else value


def _text(view: memoryview) -> str:
    return str(view, "utf-8")


# ---------------------------------------------------------------------------------- writing


def write_response(answer: InferenceResponse) -> bytes:
    """A serialized ``ModelInferResponse``, every output's data in ``raw_output_contents``.

    Written as a list of pieces joined once: each output's data (the bulk of the bytes) is
    copied only by that join. The fields that repeat from answer to answer (the model's name
    and version, each output's name and datatype, parameters such as ``class_names``) are
    encoded once and kept (``_encoded``): encoding them was half the cost of an answer."""
    pieces = [_encoded(_KEY_1, answer.model_name)]
    if answer.model_version:
        pieces.append(_encoded(_KEY_2, answer.model_version))
    if answer.id:
        _put_text(pieces, _KEY_3, answer.id)
    if answer.parameters:
        pieces.append(_encoded_parameters(_KEY_4, answer.parameters))
    for tensor in answer.outputs:
        head = _encoded(_KEY_1, tensor.name) + _encoded(_KEY_2, tensor.datatype)
        if tensor.shape:
            dims = b"".join([_varint_bytes(dim & _UINT64_MASK) for dim in tensor.shape])
            head += _KEY_3 + _varint_bytes(len(dims)) + dims
        if tensor.parameters:
            head += _encoded_parameters(_KEY_4, tensor.parameters)
        pieces += (_KEY_5, _varint_bytes(len(head)), head)
    for tensor in answer.outputs:
        data = _raw_contents(tensor)
        pieces += (_KEY_6, _varint_bytes(data.nbytes if type(data) is np.ndarray else len(data)))
        pieces.append(data)
    return b"".join(pieces)


def _raw_contents(tensor: Any) -> bytes | np.ndarray:
    """An output's ``raw_output_contents``: a C-contiguous little-endian array, which the join
    copies straight from (no ``tobytes`` copy first), or ``Tensor.to_bytes()`` for ``BYTES``."""
    if tensor.datatype == "BYTES":
        return tensor.to_bytes()
    return np.ascontiguousarray(tensor.data, dtype=inference.WIRE_DTYPES[tensor.datatype])


#: Encoded fields and parameter maps, by what they encode (``_encoded``); emptied when full,
#: so answers that never repeat (another id each time goes around it) cannot grow it.
_ENCODED: dict[tuple, bytes] = {}
_ENCODED_MAX = 1024


def _encoded(key: bytes, text: str) -> bytes:
    """A string field (``key``, length, UTF-8), encoded once per distinct ``text``."""
    found = _ENCODED.get((key, text))
    if found is None:
        data = text.encode()
        found = key + _varint_bytes(len(data)) + data
        _remember((key, text), found)
    return found


def _encoded_parameters(key: bytes, parameters: dict[str, Any]) -> bytes:
    """A ``map<string, InferParameter>`` field; encoded once per distinct map of strings, ints,
    bools and lists of strings (``class_names``), every time for anything else (floats
    included: 0.0 and -0.0 are equal keys)."""
    ident = _parameters_key(key, parameters)
    found = None if ident is None else _ENCODED.get(ident)
    if found is None:
        out: list[bytes] = []
        _put_parameters(out, key, parameters)
        found = b"".join(out)
        if ident is not None:
            _remember(ident, found)
    return found


def _parameters_key(key: bytes, parameters: dict[str, Any]) -> tuple | None:
    """What identifies a map's encoding (each value's type included: ``True == 1``), or
    ``None`` when a value is not one ``_encoded_parameters`` keeps."""
    ident: list[Any] = [key]
    for name, value in parameters.items():
        kind = type(value)
        if kind is list:
            if not all(type(item) is str for item in value):
                return None
            value = tuple(value)
        elif kind is not str and kind is not int and kind is not bool:
            return None
        ident += (name, kind, value)
    return tuple(ident)


def _remember(ident: tuple, encoded: bytes) -> None:
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[ident] = encoded


#: The key (field number, wire type LEN) of fields 1-6: every field written is length-delimited.
_KEY_1, _KEY_2, _KEY_3, _KEY_4, _KEY_5, _KEY_6 = (
    bytes((number << 3 | LEN,)) for number in range(1, 7)
)
#: ``InferParameter``'s keys: bool_param (1), int64_param (2), string_param (3), double_param
#: (4, fixed64), uint64_param (5).
_BOOL_KEY, _INT64_KEY, _STRING_KEY = bytes((1 << 3 | VARINT,)), bytes((2 << 3 | VARINT,)), b"\x1a"
_DOUBLE_KEY, _UINT64_KEY = bytes((4 << 3 | I64,)), bytes((5 << 3 | VARINT,))
_DOUBLE = struct.Struct("<d")
#: Varints below 128 are one byte: the lengths and dimensions of nearly every answer.
_ONE_BYTE = tuple(bytes((value,)) for value in range(128))


def _put_parameters(out: list[bytes], key: bytes, parameters: dict[str, Any]) -> None:
    """Each entry of a ``map<string, InferParameter>`` (an entry message: key 1, value 2)."""
    for name, value in parameters.items():
        value = inference.parameter_value(value)  # lists and mappings as JSON text
        if isinstance(value, bool):
            item = _BOOL_KEY + _ONE_BYTE[value]
        elif isinstance(value, int) and -_INT64_MAX - 1 <= value < _UINT64:
            if value > _INT64_MAX:
                item = _UINT64_KEY + _varint_bytes(value)
            else:
                item = _INT64_KEY + _varint_bytes(value & _UINT64_MASK)
        elif isinstance(value, float):
            item = _DOUBLE_KEY + _DOUBLE.pack(value)
        else:
            text = str(value).encode()
            item = _STRING_KEY + _varint_bytes(len(text)) + text
        label = str(name).encode()
        entry = b"".join(
            (_KEY_1, _varint_bytes(len(label)), label, _KEY_2, _varint_bytes(len(item)), item)
        )
        out += (key, _varint_bytes(len(entry)), entry)


def _varint_bytes(value: int) -> bytes:
    """A non-negative int as a base-128 varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:  # two bytes: lengths up to 16 KiB, row counts
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:  # three: up to 2 MiB of tensor data
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _put_bytes(out: list[bytes], key: bytes, data: bytes) -> None:
    out += (key, _varint_bytes(len(data)), data)


def _put_text(out: list[bytes], key: bytes, text: str) -> None:
    data = text.encode()
    out += (key, _varint_bytes(len(data)), data)
