"""``Tensor.from_values``: long float tensors (read through ``array.array``) hold exactly what
``np.array(values, dtype)`` holds, and what it refuses is still a 400; a model's refusal of
several inputs is raised as the model said it."""

from __future__ import annotations

import numpy as np
import pytest

from modelshelf.errors import BadRequestError
from modelshelf.serve.inference import InferenceCore, InferenceRequest, Tensor

LONG = 80  # over the length from which array.array reads the values
RNG = np.random.default_rng(7)
VALUES = {
    "floats": RNG.normal(size=LONG).tolist(),
    "integers": [int(v) for v in RNG.integers(-(2**62), 2**62, size=LONG)],
    "beyond 53 bits and 64 bits": [2**53 + 1, 2**64 + 3, -(2**70) - 1, 10**300] * (LONG // 4),
    "mixed": [0, 1, 1, 2.5, -0.0, 1e-320, 3.4e38, 3.5e38] * (LONG // 8),
    "extremes": [1.7976931348623157e308, -5e-324, 65504.0, 65520.0, 6e-8] * (LONG // 5),
}


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16"])
@pytest.mark.parametrize("kind", list(VALUES))
def test_long_float_tensor_is_numpys_own(datatype: str, kind: str) -> None:
    values = VALUES[kind]
    dtype = {"FP64": np.float64, "FP32": np.float32, "FP16": np.float16}[datatype]
    with np.errstate(over="ignore"):
        expected = np.array(values, dtype=dtype)
    if (np.isinf(expected) & np.isfinite(np.array(values, dtype=np.float64))).any():
        # numpy's cast makes infinities of values beyond the type: refused, never sent on
        with pytest.raises(BadRequestError, match=f"out of {datatype}'s range"):
            Tensor.from_values("x", datatype, [len(values) // 4, 4], values)
        return
    tensor = Tensor.from_values("x", datatype, [len(values) // 4, 4], values)
    assert tensor.data.dtype == expected.dtype
    assert tensor.data.tobytes() == expected.tobytes()
    assert tensor.data.shape == (len(values) // 4, 4)
    assert tensor.data.flags.aligned


def test_long_float_tensor_of_text_numbers_reads_as_numpy_does() -> None:
    values = ["1.5", 2, "-3e2", 4.0] * (LONG // 4)  # numpy parses numbers in text
    tensor = Tensor.from_values("x", "FP64", [LONG], values)
    assert tensor.data.tolist() == np.array(values, dtype=np.float64).tolist()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("abc", "element [79] is 'abc', not a number"),
        ([1.0], "element [79] is [1.0], not a number"),
        (10**400, "element [79] is 1000"),
        (True, "element [79] is true (a boolean)"),
    ],
)
def test_long_float_tensor_refusals_are_400s_naming_the_element(bad: object, message: str) -> None:
    values = [0.5] * (LONG - 1) + [bad]
    with pytest.raises(BadRequestError) as caught:
        Tensor.from_values("x", "FP64", [LONG], values)
    assert message in caught.value.message


def test_booleans_are_looked_for_only_where_the_json_may_hold_them() -> None:
    """gRPC's typed contents (``json_booleans=False``) hold no JSON booleans: no check, and
    a True there is numpy's 1.0 (JSON's true in the same tensor is a 400)."""
    tensor = Tensor.from_values("x", "FP64", [2], [1, True], json_booleans=False)
    assert tensor.data.tolist() == [1.0, 1.0]
    with pytest.raises(BadRequestError, match=r"element \[1\] is true"):
        Tensor.from_values("x", "FP64", [2], [1, True])


def test_a_callable_is_asked_whether_the_json_holds_booleans_only_when_numbers_read_1_or_0():
    """V2 REST passes whether its body holds ``true`` / ``false`` at all as a callable: asked
    only when numpy read a 1 or a 0 in a long tensor, and its no spares the type scan."""
    asked = []

    def body_holds_booleans(answer: bool):
        def ask() -> bool:
            asked.append(answer)
            return answer

        return ask

    Tensor.from_values("x", "FP64", [LONG], [0.5] * LONG, json_booleans=body_holds_booleans(True))
    assert asked == []  # no 1 or 0: nothing to ask
    values = [0.5] * (LONG - 1) + [True]
    tensor = Tensor.from_values(
        "x", "FP64", [LONG], values, json_booleans=body_holds_booleans(False)
    )
    assert asked == [False] and tensor.data[-1] == 1.0  # the body said no: no scan, no refusal
    with pytest.raises(BadRequestError, match=rf"element \[{LONG - 1}\] is true"):
        Tensor.from_values("x", "FP64", [LONG], values, json_booleans=body_holds_booleans(True))
    with pytest.raises(BadRequestError, match=r"element \[1\] is false"):
        Tensor.from_values("x", "INT64", [LONG], [1, False] + [2] * (LONG - 2),
                           json_booleans=body_holds_booleans(True))  # fmt: skip


class RefusingModel:
    """A user's class that refuses its input as a bad request, in its own words."""

    def predict(self, X, names):
        raise BadRequestError("a and b must add up to 1")


def test_a_refusal_of_several_inputs_is_raised_as_the_model_said_it():
    """Only one input of rows gets the tensor's name in front; any other refusal is the
    model's own error, not one raised from itself."""
    core = InferenceCore(RefusingModel(), "m")
    inputs = [Tensor.from_values(n, "FP64", [1], [0.25]) for n in ("a", "b")]
    with pytest.raises(BadRequestError) as caught:
        core.infer(InferenceRequest(inputs))
    assert str(caught.value) == "a and b must add up to 1"
    assert caught.value.__cause__ is None


def test_raw_bool_bytes_other_than_0_and_1_are_refused_naming_the_element():
    """As JSON BOOL data other than true/false is: the binary extension and gRPC's raw bytes."""
    ok = Tensor.from_bytes("flags", "BOOL", [1, 3], b"\x00\x01\x01")
    assert ok.data.tolist() == [[False, True, True]]
    with pytest.raises(
        BadRequestError, match=r"'flags': BOOL bytes must be 0 or 1, got 2 at element 1"
    ):
        Tensor.from_bytes("flags", "BOOL", [1, 3], b"\x00\x02\x01")


@pytest.mark.parametrize(
    ("datatype", "shape", "values", "words"),
    [
        ("FP32", [1, 4], [1.0, 2.0, 3.0, 4.0, 1e300], "element [4] is 1e+300"),
        ("UINT8", [1, 4], [1, 2, 3, 4, 5, 300], "element [5] is 300"),
        ("UINT8", [2, 2, 2], [0] * 7 + [300], "element [1, 1, 1] is 300"),
    ],
    ids=["beyond the shape, FP32", "beyond the shape, UINT8", "3-D"],
)
def test_a_value_out_of_range_is_named_by_its_position(datatype, shape, values, words) -> None:
    """A value beyond what the shape holds is named by its flat index (a 400, not numpy's
    "index out of bounds")."""
    with np.errstate(over="ignore"), pytest.raises(BadRequestError) as refused:
        Tensor.from_values("x", datatype, shape, values)
    assert words in refused.value.message


def test_a_list_among_integer_values_is_refused() -> None:
    """Data flat at first, then nested (numpy: "inhomogeneous shape"): a 400, not a 500."""
    with pytest.raises(BadRequestError, match="input 'x': data must hold INT64 values only"):
        Tensor.from_values("x", "INT64", [4], [1, [2, 3], 4, 5])


@pytest.mark.parametrize("source", ["values", "bytes"])
def test_a_shape_of_more_dimensions_than_numpy_holds_is_a_400(source: str) -> None:
    """35 dimensions of 1 (V2 REST, binary and gRPC all read shapes here): numpy's reshape
    refuses more than 32 with a ValueError, which reached the client as a 500."""
    shape = [1, 4] + [1] * 33
    with pytest.raises(BadRequestError, match="shape has 35 dimensions; at most 32"):
        if source == "values":
            Tensor.from_values("x", "FP64", shape, [1.0, 2.0, 3.0, 4.0])
        else:
            Tensor.from_bytes("x", "FP64", shape, np.arange(4.0).tobytes())


@pytest.mark.parametrize("datatype", ["INT64", "UINT8", "FP32", "FP16"])
@pytest.mark.parametrize("length", [4, LONG])
def test_a_boolean_in_numeric_data_is_refused_however_long(datatype: str, length: int) -> None:
    """Short tensors look at every value's type; long ones only when numpy read a 1 or 0."""
    values: list = [2] * (length - 1) + [False]
    with pytest.raises(BadRequestError) as caught:
        Tensor.from_values("x", datatype, [length], values)
    assert f"element [{length - 1}] is false (a boolean)" in caught.value.message
    numbers = Tensor.from_values("x", datatype, [length], [2] * (length - 1) + [0])
    assert numbers.data.tolist()[-2:] == [2, 0]
