"""Why a strict JSON parser refused a body, said as the element that was wrong.

orjson and Python's ``json`` refuse a body over one value without saying where in the request
it sits: an integer of 5,000 digits ("Exceeds the limit (4300 digits) for integer string
conversion… use sys.set_int_max_str_digits()", or orjson's "number is infinity when parsed as
double"), a number beyond a double, a string that is not UTF-8 (raw bytes, a lone surrogate
escape), and for orjson the literals ``NaN``, ``Infinity`` and ``-Infinity``, which JSON does
not have but Python's ``json`` (so Seldon Core's and MLflow's servers) reads as floats.
``unreadable_value`` parses such a body again, leniently, and finds the first such value and
its path (``data.ndarray[0][1]``); ``refused_json_message`` is what every protocol's 400 says
about such a body. Called only after a parser refused the body: a request that parses pays
nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelshelf.inputs import quoted, shortened

#: A lone surrogate: what a string holds after ``surrogateescape`` read bytes that are not
#: UTF-8, or after a ``\\udcff`` escape with no partner.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The largest double, as messages quote it.
_LARGEST_DOUBLE = "1.8e308"
_LARGEST_DOUBLE_VALUE = 1.7976931348623157e308


@dataclass(frozen=True, slots=True)
class UnreadableValue:
    """A value no model can take: where it is (``path``: keys and indexes from the body's
    top), what it is (``problem``), and the body as read leniently (``document``)."""

    path: tuple[str | int, ...]
    problem: str
    document: Any

    def where(self, start: str = "the body") -> str:
        """The path as a request's field: ``data.ndarray[0][1]`` (``start`` for the top)."""
        return json_path(self.path, start)

    def message(self, start: str = "the body") -> str:
        """What a 400 says: ``data.ndarray[0][1] is an integer of 5000 digits, …``."""
        return f"{self.where(start)} is {self.problem}"


class _LongInteger:
    """An integer beyond a double: its literal (any length: more digits than Python converts,
    ``sys.get_int_max_str_digits``, included), or the parsed ``int``."""

    def __init__(self, literal: str | int) -> None:
        if isinstance(literal, int):  # str() of an int is quadratic, and limited: no text
            size = abs(literal)
            digits = int(size.bit_length() * math.log10(2)) + 1  # the count, or one more
            self.digits = digits - 1 if 10 ** (digits - 1) > size else digits
        else:
            self.digits = len(literal.lstrip("-"))


class _HugeNumber:
    """A number literal beyond a double (``1e400``): ``inf`` once parsed."""

    def __init__(self, text: str) -> None:
        self.text = text


class _NonFinite:
    """A ``NaN``, ``Infinity`` or ``-Infinity`` literal, where the parser refused it."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _integer(text: str) -> Any:
    try:
        value = int(text)
    except ValueError:  # more digits than the interpreter's limit
        return _LongInteger(text)
    if abs(value) > _LARGEST_DOUBLE_VALUE:
        return _LongInteger(text)  # orjson reads such integers as doubles: infinity
    return value


def _float(text: str) -> Any:
    value = float(text)
    return _HugeNumber(text) if math.isinf(value) else value


def _lenient_text(body: bytes | str) -> str:
    """``body`` as text, bytes that are not UTF-8 kept as lone surrogates (``_SURROGATE``)."""
    return body.decode("utf-8", "surrogateescape") if isinstance(body, bytes | bytearray) else body


def unreadable_value(body: bytes | str, non_finite_read: bool = False) -> UnreadableValue | None:
    """The first value of ``body`` that made a strict parser refuse it, with its path; ``None``
    when there is none (the body is no JSON at all, or the parser's complaint was another).
    ``non_finite_read``: the parser read ``NaN`` and ``±Infinity`` (Python's ``json``), so they
    are no such value; orjson refuses them."""
    text = _lenient_text(body)
    constant = float if non_finite_read else _NonFinite
    try:
        document = json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=constant)
    except (ValueError, RecursionError):
        return None
    found = _first_unreadable(document, ())
    if found is None:
        return None
    path, problem = found
    return UnreadableValue(path, problem, document)


def refused_json_message(
    body: bytes | str,
    exc: Exception,
    not_json: str,
    start: str = "the body",
    describe: Callable[[UnreadableValue], str | None] | None = None,
    non_finite_read: bool = False,
) -> str:
    """What a 400 says about a body the protocol's parser refused with ``exc``: the value that
    was wrong and its path (``describe`` may say it in the protocol's terms, ``input 'x':
    element [0, 1] is …``; ``start`` names the top), else the first byte that is not UTF-8
    (orjson says "str is not valid UTF-8: surrogates not allowed" at char 0 whatever the
    byte), else ``not_json`` and the parser's words. One wording for every protocol; each
    adapter puts it in its own error body. ``non_finite_read``: as for ``unreadable_value``."""
    found = unreadable_value(body, non_finite_read)
    if found is None:
        return not_utf8_message(body) or f"{not_json}: {exc}"
    described = describe(found) if describe is not None else None
    return described or found.message(start)


def not_utf8_message(body: bytes | str) -> str | None:
    """Where ``body`` stops being UTF-8, as a 400 says it; ``None`` when it is UTF-8. JSON
    between systems is UTF-8 (RFC 8259): an image or a Latin-1 file posted as JSON is told so,
    with the byte and its offset to find it by."""
    if not isinstance(body, bytes | bytearray):
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"the body is not UTF-8 JSON: byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start} is not UTF-8 ({exc.reason}); send JSON as UTF-8 text"
        )
    return None


def document_with_non_finite(body: bytes | str) -> Any:
    """``body`` as Python's ``json`` reads it, ``NaN`` and ``±Infinity`` as floats, when those
    literals were all a strict parser refused (MLflow's scoring server reads them so: a body
    from ``json.dumps`` of a frame with missing values); ``None`` otherwise."""
    text = _lenient_text(body)
    try:
        document = json.loads(text, parse_int=_integer, parse_float=_float)
    except (ValueError, RecursionError):
        return None
    return None if _first_unreadable(document, ()) is not None else document


def number_out_of_range(document: Any) -> UnreadableValue | None:
    """The first integer of an already parsed body beyond a double's range (Python's ``json``
    reads up to 4,300 digits; numpy and the models then refuse it: "int too large to convert
    to float"), with its path; ``None`` when there is none."""
    found = _first_unreadable(document, ())
    return UnreadableValue(found[0], found[1], document) if found is not None else None


def _first_unreadable(value: Any, path: tuple[str | int, ...]) -> Any:
    stack = [(value, path)]
    while stack:
        value, path = stack.pop()
        if type(value) is int and abs(value) > _LARGEST_DOUBLE_VALUE:
            value = _LongInteger(value)
        if isinstance(value, _LongInteger):
            return path, (
                f"an integer of {value.digits} digits, out of range of every number type "
                f"(doubles reach about ±{_LARGEST_DOUBLE}, 64-bit integers 19 digits)"
            )
        if isinstance(value, _HugeNumber):
            return path, (
                f"{shortened(value.text)}, a number out of a double's range (about "
                f"±{_LARGEST_DOUBLE})"
            )
        if isinstance(value, _NonFinite):
            missing = "" if value.literal == "NaN" else "a finite number, or "
            return path, (
                f"{value.literal}, which JSON does not have (its numbers are finite): send "
                f"{missing}null for a missing value (read as NaN)"
            )
        if isinstance(value, str):
            if _SURROGATE.search(value):  # shown as Python escapes: '\udcff'
                return path, f"not UTF-8 text ({quoted(value)}): send text as UTF-8"
            continue
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if _SURROGATE.search(key):  # the key itself is no path a message can hold
                    return path, (
                        f"an object whose key {quoted(key)} is not UTF-8 text: send keys as UTF-8"
                    )
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(value))))
    return None


def json_path(path: tuple[str | int, ...], start: str = "the body") -> str:
    """``("data", "ndarray", 0, 1)`` as ``data.ndarray[0][1]``; ``start`` for an empty path."""
    found = ""
    for step in path:
        if isinstance(step, int):
            found += f"[{step}]"
        else:
            found += f".{step}" if found else str(step)
    if not found:
        return start
    return found if not found.startswith("[") else f"{start}{found}"
