"""``json_values``: where a body a strict parser refused holds the value that was wrong."""

from __future__ import annotations

import json

import orjson
import pytest

from modelshelf.json_values import (
    document_with_non_finite,
    not_utf8_message,
    number_out_of_range,
    refused_json_message,
    unreadable_value,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"data": {"ndarray": [[1, -' + b"9" * 5000 + b"]]}}",
            "data.ndarray[0][1] is an integer of 5000 digits, out of range of every number type",
        ),
        (b'{"inputs": [{"data": [1, 1e400]}]}', "inputs[0].data[1] is 1e400, a number out of"),
        (b'{"strData": "ok\xff"}', "strData is not UTF-8 text ('ok\\udcff')"),
        (b'{"a": ["\\ud800"]}', "a[0] is not UTF-8 text ('\\ud800')"),
        (b'{"data": {"\xfe": 1}}', "data is an object whose key '\\udcfe' is not UTF-8 text"),
        (b"[" + b"9" * 400 + b"]", "the body[0] is an integer of 400 digits"),
    ],
)
def test_the_value_a_strict_parser_refused_is_named_by_its_path(body: bytes, message: str):
    with pytest.raises(ValueError):  # what the servers' parsers say: no path, no element
        orjson.loads(body)
    found = unreadable_value(body)
    assert found is not None and found.message().startswith(message), found
    orjson.dumps(found.message())  # a message the error body can hold (no lone surrogates)


@pytest.mark.parametrize("body", [b"{not json", b'{"a": 1}', b"[1e300, 12345678901234567890123]"])
def test_a_body_without_such_a_value_is_left_to_the_parsers_words(body: bytes):
    assert unreadable_value(body) is None


def test_an_integer_python_read_but_no_double_holds_is_found_in_the_parsed_body():
    document = json.loads('{"jsonData": {"rooms": 3, "area": ' + "9" * 400 + "}}")
    found = number_out_of_range(document)
    assert found is not None and found.message().startswith("jsonData.area is an integer of 400")
    assert number_out_of_range({"rooms": [3, 2**64]}) is None


def test_every_protocol_says_a_refused_body_in_one_wording():
    """The adapters give their own "not JSON" words and, for V2, their own way of naming an
    element; the value and its path are found the same way for all."""
    huge = b'{"inputs": [{"name": "x", "data": [1, 1e400]}]}'
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(huge)
    assert refused_json_message(huge, refused.value, "not JSON").startswith(
        "inputs[0].data[1] is 1e400, a number out of a double's range"
    )

    def element(found):
        return f"input {found.document['inputs'][0]['name']!r}: {found.problem}"

    said = refused_json_message(huge, refused.value, "not JSON", describe=element)
    assert said.startswith("input 'x': 1e400, a number out of")
    top = b"[" + b"9" * 400 + b"]"
    assert refused_json_message(top, ValueError("x"), "not JSON", "the request").startswith(
        "the request[0] is an integer of 400 digits"
    )
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(b"{not json")
    said = refused_json_message(b"{not json", refused.value, "Unrecognized request format")
    assert said == f"Unrecognized request format: {refused.value}"


def test_nan_and_infinity_are_named_only_where_the_parser_refused_them():
    """orjson refuses NaN and ±Infinity (JSON has none); Python's json reads them as floats,
    so behind it they are no refused value and another one is named."""
    body = b'{"instances": [[1, NaN], [-Infinity, ' + b"9" * 400 + b"]]}"
    found = unreadable_value(body)
    assert found is not None and found.message().startswith(
        "instances[0][1] is NaN, which JSON does not have (its numbers are finite): send null"
    )
    found = unreadable_value(body, non_finite_read=True)
    assert found is not None and found.message().startswith(
        "instances[1][1] is an integer of 400 digits"
    )
    said = refused_json_message(b"[Infinity]", ValueError("x"), "not JSON")
    assert said.startswith("the body[0] is Infinity, which JSON does not have")
    assert "send a finite number, or null for a missing value" in said


def test_a_body_whose_only_fault_is_nan_is_read_as_python_reads_it():
    document = document_with_non_finite(b'{"inputs": [[NaN, Infinity, -Infinity, 1]]}')
    values = document["inputs"][0]
    assert values[0] != values[0] and values[1:] == [float("inf"), float("-inf"), 1]
    assert document_with_non_finite(b"[NaN, " + b"9" * 400 + b"]") is None
    assert document_with_non_finite(b'["\xff", NaN]') is None
    assert document_with_non_finite(b"[NaN,") is None


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"\x89PNG\r\n", "byte 0x89 at offset 0 is not UTF-8 (invalid start byte)"),
        (b'{"a": \xc3(', "byte 0xc3 at offset 6 is not UTF-8 (invalid continuation byte)"),
        (b'{"a": "caf\xc3', "byte 0xc3 at offset 10 is not UTF-8 (unexpected end of data)"),
    ],
)
def test_a_body_that_is_not_utf8_is_named_by_its_first_such_byte(body: bytes, said: str):
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(body)
    message = refused_json_message(body, refused.value, "not JSON")
    assert message.startswith(f"the body is not UTF-8 JSON: {said}"), message
    assert not_utf8_message(b'{"a": 1}') is None and not_utf8_message("\udcff") is None
