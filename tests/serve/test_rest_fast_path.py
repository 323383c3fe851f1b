"""Which Seldon REST bodies ``modelshelf serve`` reads with orjson and which it hands to Flask
(``SeldonRestApp.decode``): integers beyond 64 bits, which orjson reads as floats and Python's
json as ints, go to Flask; fractions of 19 digits or more, which both read as the same float,
stay on the fast path."""

from __future__ import annotations

import json

import pytest

from modelshelf.serve.rest import SeldonRestApp


@pytest.mark.parametrize(
    "value",
    [0.0012345678901234567, -0.0045678901234567891, 0.00012345678901234567, 1.5e-7],
    ids=["0.00123…", "negative", "0.000123…", "exponent"],
)
def test_a_float_with_a_long_fraction_stays_on_the_fast_path(value: float) -> None:
    """json.dumps writes these floats with 19-20 digits after the point; a row holding one
    went to Flask, at 2.7x the server CPU of a one-row request."""
    body = json.dumps({"data": {"ndarray": [[5.1, 3.5, 1.4, value]]}}).encode()
    decoded = SeldonRestApp.decode(body)
    assert decoded is not None
    assert decoded == json.loads(body)
    assert repr(decoded["data"]["ndarray"][0][3]) == repr(value)


@pytest.mark.parametrize(
    "literal",
    [
        str(2**64),
        str(-(2**63) - 1),
        "0." + "1" * 40,  # a fraction run of 38 digits or more counts twice: Flask, as before
        '"' + "7" * 19 + '"',  # digits in a string: Flask, as before
        "0.5, " + str(2**70),  # a fraction and an integer
    ],
    ids=["2**64", "-(2**63)-1", "40-digit fraction", "string", "fraction and integer"],
)
def test_bodies_that_may_hold_integers_beyond_64_bits_go_to_flask(literal: str) -> None:
    body = ('{"data": {"ndarray": [[1.5e-7, ' + literal + "]]}}").encode()
    assert SeldonRestApp.decode(body) is None
