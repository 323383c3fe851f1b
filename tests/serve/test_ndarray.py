"""modelshelf's C conversions of ``ndarray`` give what seldon-core's Python ones give.

``array_from_rows`` must be ``np.array(rows)`` (dtype, shape, values, or the same exception) and
``encode_array`` must be the JSON of ``tolist()`` for every array it accepts. The differential
suite checks the same through real servers; here many more inputs go through each function.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from modelshelf.serve.ndarray import MIN_ROWS, array_from_rows, encode_array, encodes_as_tolist

N = MIN_ROWS + 3
GOOD = [[1.5, -2.0, 3e-7, 4e300]] * (N - 1)

ROW_CASES = {
    "floats": [*GOOD, [0.0, -0.0, 5e-324, 1.7976931348623157e308]],
    "ints": [[1, 2, 3]] * N,
    "ints and floats": [[1, 2.5, 3]] * N,
    "booleans": [[True, False]] * N,
    "booleans and floats": [[True, 1.5]] * N,
    "uint64 range": [[2**63, 1]] * N,
    "beyond uint64 with floats": [[2**64, 1.5]] * N,
    "ragged": [*GOOD, [1.0, 2.0]],
    "a list among numbers": [*GOOD, [1.0, [2.0], 3.0, 4.0]],
    "nested deeper": [[[1.0, 2.0]]] * N,
    "strings": [["a", "bc"]] * N,
    "a string among numbers": [*GOOD, [1.0, "2.0", 3.0, 4.0]],
    "a null among numbers": [*GOOD, [1.0, None, 3.0, 4.0]],
    "a dict among numbers": [*GOOD, [1.0, {"a": 1}, 3.0, 4.0]],
    "rows that are strings": ["abcd"] * N,
    "rows that are numbers": [1.0] * N,
    "a row that is a string": [*GOOD, "abcd"],
    "empty rows": [[]] * N,
    "first row empty": [[], *GOOD],
    "no rows": [],
    "few rows": [[1.0, 2.0]],
    "NaN and infinity": [[math.nan, math.inf, -math.inf]] * N,
    "not a list": {"a": [1.0]},
}


def _outcome(convert, rows):
    try:
        return convert(rows), None
    except Exception as exc:
        return None, (type(exc), str(exc))


def test_ragged_rows_keep_numpys_error_with_a_note_naming_the_row():
    """seldon-core answers a user class with numpy's own text: it stays; the note names the
    uneven row for the answers modelshelf writes (rows_error_text)."""
    from modelshelf.serve.ndarray import rows_error_text

    rows = [[1.0, 2.0]] * 9 + [[1.0]]
    with pytest.raises(ValueError, match="inhomogeneous") as caught:
        array_from_rows(rows, "instances")
    assert rows_error_text(caught.value) == (
        "instances has rows of unequal length: instances[9] has 1 values, instances[0] "
        "has 2; expected rows of equal length"
    )


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_array_from_rows_is_np_array(case):
    rows = ROW_CASES[case]
    expected, expected_error = _outcome(np.array, rows)
    found, found_error = _outcome(array_from_rows, rows)
    assert found_error == expected_error
    if expected is None:
        return
    assert (found.dtype, found.shape) == (expected.dtype, expected.shape)
    assert (found.flags.owndata, found.flags.c_contiguous) == (True, True)
    if expected.dtype.kind == "f":
        assert np.array_equal(found, expected, equal_nan=True)
        assert np.array_equal(np.signbit(found), np.signbit(expected))
    else:
        assert found.tolist() == expected.tolist()


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(10)
    return {
        "probabilities": rng.random((1000, 3)),
        "huge and tiny": np.array([[1e300, -1e-300, 5e-324, 1.7976931348623157e308, -0.0, 1e16]]),
        "one column": rng.standard_normal(17),
        "3-D": rng.random((2, 3, 4)),
        "not C-contiguous": rng.random((4, 3)).T,
        "int64": rng.integers(-(2**63), 2**63 - 1, (5, 3)),
        "uint64": rng.integers(0, 2**64 - 1, 4, dtype=np.uint64),
        "int32": np.arange(12, dtype=np.int32).reshape(3, 4),
        "booleans": np.array([[True, False]]),
        "no rows": np.zeros((0, 3)),
        "no columns": np.zeros((2, 0)),
        "bit patterns": np.frombuffer(rng.bytes(8 * 20000), dtype=np.float64),
    }


@pytest.mark.parametrize("name", list(_arrays()))
def test_encode_array_is_json_of_tolist(name):
    array = _arrays()[name]
    if array.dtype.kind == "f":
        array = array[np.isfinite(array)] if array.ndim == 1 else array
    assert encodes_as_tolist(array)
    encoded = encode_array(array)
    assert encoded is not None
    assert orjson.loads(encoded) == array.tolist()
    assert encoded == orjson.dumps(array.tolist())  # same digits too, not only same values


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_array_leaves_non_finite_numbers_to_flask(value):
    assert encode_array(np.array([[1.0, value]])) is None


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.1], dtype=np.float32),  # its shortest digits are not tolist()'s
        np.array([0.1], dtype=np.float16),
        np.array(["a"]),
        np.array([{"a": 1}], dtype=object),
        np.array(1.0),  # tolist() of a 0-d array is a number, not a list
        np.array([1.0], dtype=">f8"),
        [1.0],
    ],
)
def test_other_arrays_keep_tolist(array):
    assert not encodes_as_tolist(array)
