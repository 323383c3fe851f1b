"""``modelshelf.serve.v2_grpc.wire`` against protobuf itself: requests serialized by protobuf
(tritonclient's messages for the same ``.proto``) read back field for field, answers written by
``wire`` parsed by protobuf. Our generated stubs are not imported (they clash with
tritonclient's in one process); ``wire`` does not need them."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from modelshelf.serve.inference import InferenceResponse, Tensor
from modelshelf.serve.v2_grpc import wire

Input = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor
P = pb.InferParameter


def parameters_of(entries) -> dict:
    return {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in entries.items()}


def full_request() -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="iris",
        model_version="3",
        id="req-ü",
        parameters={
            "content_type": P(string_param="pd"),
            "flag": P(bool_param=True),
            "off": P(bool_param=False),
            "count": P(int64_param=-7),
            "big": P(uint64_param=2**64 - 1),
            "ratio": P(double_param=0.25),
        },
        inputs=[
            Input(name="a", datatype="FP64", shape=[2, 3], parameters={"x": P(int64_param=1)}),
            Input(name="b", datatype="BYTES", shape=[2]),
            Input(name="odd", datatype="INT8", shape=[-1, 0]),
        ],
        outputs=[Output(name="predict_proba", parameters={"binary_data": P(bool_param=True)})],
        raw_input_contents=[np.arange(6.0).tobytes(), b"\x01\x00\x00\x00a\x00\x00\x00\x00", b""],
    )


def test_a_raw_request_reads_as_protobuf_wrote_it():
    message = full_request()
    found = wire.read_request(message.SerializeToString())
    assert found is not None
    assert (found.model_name, found.model_version, found.id) == ("iris", "3", "req-ü")
    assert found.parameters == parameters_of(message.parameters)
    assert found.parameters["off"] is False and found.parameters["count"] == -7
    assert [(i.name, i.datatype, i.shape, i.parameters) for i in found.inputs] == [
        (t.name, t.datatype, list(t.shape), parameters_of(t.parameters)) for t in message.inputs
    ]
    assert found.outputs == [("predict_proba", {"binary_data": True})]
    assert found.raw_input_contents == list(message.raw_input_contents)


def test_an_empty_request_and_unknown_fields():
    assert wire.read_request(b"") == wire.RawInferRequest()
    # Field 15 (varint), 16 (bytes) and 17 (fixed32) are not in the .proto: skipped, as protobuf.
    unknown = bytes([0x78, 0x05, 0x82, 0x01, 0x02, 0x68, 0x69, 0x8D, 0x01, 1, 2, 3, 4])
    data = unknown + pb.ModelInferRequest(model_name="m").SerializeToString()
    assert wire.read_request(data).model_name == "m"


@pytest.mark.parametrize(
    "data",
    [
        b"\x2a\x04\x2a\x02\x18\x01",  # an int64_contents value unpacked (wire type 0)
        b"\x2a\x04\x2a\x02\x39\x00",  # an fp64_contents value unpacked (wire type 1)
        b"\x2a\x05\x2a\x03\x3a\x01\x00",  # packed fp64_contents of 1 byte: not whole values
        b"\x0a\x05ab",  # a string longer than the message
        b"\x0a",  # a length that never comes
        b"\x0b",  # wire type 3 (groups)
        b"\xff" * 12,  # a varint longer than 10 bytes
        b"\x80" * 9 + b"\x02\x00",  # a key whose low 64 bits are field 0: protobuf refuses it
        b"\x0a\x02\xff\xfe",  # a model name that is not UTF-8
    ],
)  # fmt: skip
def test_what_the_reader_leaves_to_protobuf(data):
    assert wire.read_request(data) is None


def test_an_answer_parses_as_protobuf_reads_it():
    labels = np.array([b"setosa", "virginica"], dtype=object)
    answer = InferenceResponse(
        model_name="iris",
        model_version="3",
        id="req-7",
        outputs=[
            Tensor.from_array("predict_proba", np.array([[0.25, 0.75], [1.0, 0.0]]), {
                "class_names": ["a", "b"], "n": 2, "neg": -3, "huge": 2**64 - 1, "ok": True,
                "no": False, "w": 0.5, "s": "text"}),
            Tensor("predict", "BYTES", [2], labels),
            Tensor.from_array("halves", np.array([1.5, -2.0], dtype=np.float16)),
            Tensor.from_array("scalar", np.int64(-9)),
        ],
        parameters={"took_us": 12},
    )  # fmt: skip
    response = pb.ModelInferResponse.FromString(wire.write_response(answer))
    assert (response.model_name, response.model_version, response.id) == ("iris", "3", "req-7")
    assert parameters_of(response.parameters) == {"took_us": 12}
    first = response.outputs[0]
    assert (first.name, first.datatype, list(first.shape)) == ("predict_proba", "FP64", [2, 2])
    assert parameters_of(first.parameters) == {
        "class_names": '["a","b"]', "n": 2, "neg": -3, "huge": 2**64 - 1, "ok": True,
        "no": False, "w": 0.5, "s": "text",
    }  # fmt: skip
    assert [o.name for o in response.outputs] == ["predict_proba", "predict", "halves", "scalar"]
    assert list(response.outputs[3].shape) == []
    raw = response.raw_output_contents
    assert len(raw) == 4
    assert np.frombuffer(raw[0], "<f8").tolist() == [0.25, 0.75, 1.0, 0.0]
    assert raw[1] == b"\x06\x00\x00\x00setosa\x09\x00\x00\x00virginica"
    assert np.frombuffer(raw[2], "<f2").tolist() == [1.5, -2.0]
    assert np.frombuffer(raw[3], "<i8").tolist() == [-9]
    assert not any(o.HasField("contents") for o in response.outputs)


def test_answers_written_again_from_kept_encodings_stay_exact():
    """``write_response`` keeps the encodings of repeated fields and parameters: values equal
    as keys but of another type (True, 1; False, 0; "1") or sign (0.0, -0.0) are each written
    as they are, every time; outputs that are not C-contiguous little-endian are converted."""
    data = np.arange(6, dtype=">f8").reshape(2, 3).T  # big-endian and Fortran-ordered
    for value in (True, 1, False, 0, "1", 0.0, -0.0, ["a", "b"], ["a", "b"], ["b", "a"]) * 2:
        answer = InferenceResponse(
            model_name="iris",
            model_version=None,
            id=None,
            outputs=[Tensor("p", "FP64", [3, 2], data, {"v": value})],
        )
        response = pb.ModelInferResponse.FromString(wire.write_response(answer))
        (found,) = response.outputs
        sent = parameters_of(found.parameters)["v"]
        if isinstance(value, list):
            assert sent == '["' + '","'.join(value) + '"]'
        else:
            assert (type(sent), sent) == (type(value), value)
        if isinstance(value, float):
            assert math.copysign(1, sent) == math.copysign(1, value)
        assert np.frombuffer(response.raw_output_contents[0], "<f8").tolist() == [
            0.0, 3.0, 1.0, 4.0, 2.0, 5.0
        ]  # fmt: skip


# ------------------------------------------------------------------ differential fuzzing
# The same bytes through ``wire`` and through protobuf (pure Python under protobuf 3.20, the
# server's fallback): wherever ``wire`` answers, it must read what protobuf reads; wherever
# protobuf refuses the bytes, ``wire`` must leave them to it (so the refusal, INVALID_ARGUMENT,
# is protobuf's own).

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES")  # fmt: skip


def random_text(rng: np.random.Generator) -> str:
    alphabet = ["a", "Z", "0", "-", "_", " ", "ü", "€", "𝄞", "\x00"]
    return "".join(rng.choice(alphabet) for _ in range(rng.integers(0, 6)))


def random_parameter(rng: np.random.Generator) -> pb.InferParameter:
    kind = rng.integers(0, 6)
    if kind == 0:
        return P(bool_param=bool(rng.integers(0, 2)))
    if kind == 1:
        return P(int64_param=int(rng.integers(-(2**63), 2**63 - 1, dtype=np.int64)))
    if kind == 2:
        return P(string_param=random_text(rng))
    if kind == 3:
        return P(double_param=float(rng.normal() * 10.0 ** rng.integers(-300, 300)))
    if kind == 4:
        return P(uint64_param=int(rng.integers(0, 2**64 - 1, dtype=np.uint64)))
    return P()  # unset: read as absent


def random_parameters(rng: np.random.Generator) -> dict:
    return {random_text(rng): random_parameter(rng) for _ in range(rng.integers(0, 4))}


#: The varint fields of ``InferTensorContents`` and the range of each.
INT_FIELDS = (
    ("bool_contents", 0, 1),
    ("int_contents", -(2**31), 2**31 - 1),
    ("int64_contents", -(2**63), 2**63 - 1),
    ("uint_contents", 0, 2**32 - 1),
    ("uint64_contents", 0, 2**64 - 1),
)


def random_request(rng: np.random.Generator) -> pb.ModelInferRequest:
    inputs, raw = [], []
    for _ in range(rng.integers(0, 4)):
        shape = [int(d) for d in rng.integers(-1, 2**40, size=rng.integers(0, 4))]
        if rng.integers(0, 4) == 0:
            shape = [int(d) for d in rng.integers(-(2**62), 2**62, size=2)]
        inputs.append(
            Input(
                name=random_text(rng),
                datatype=str(rng.choice(DATATYPES)),
                shape=shape,
                parameters=random_parameters(rng),
            )
        )
        raw.append(rng.bytes(int(rng.integers(0, 64))))
    typed = rng.integers(0, 3) == 0
    for tensor in inputs if typed else ():
        kind = rng.integers(0, 6)
        values = rng.normal(size=rng.integers(0, 9)) * 10.0 ** rng.integers(-40, 40)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, as meant
            values32 = values.astype("<f4").tolist()
        if rng.integers(0, 3) == 0:  # NaNs with payloads and signs, infinities, -0.0
            special = np.frombuffer(rng.bytes(8), "<u8") | np.uint64(0x7FF0 << 48)
            values = np.concatenate([values, special.view("<f8"), [np.inf, -np.inf, -0.0]])
        if kind == 0:
            tensor.contents.fp64_contents.extend(values.tolist())
        elif kind == 1:
            raw32 = np.frombuffer(rng.bytes(4 * len(values)), "<u4") | np.uint32(0x7F800000)
            tensor.contents.fp32_contents.extend(values32)
            tensor.contents.fp32_contents.extend(raw32.view("<f4").tolist()[:2])
        elif kind == 2:  # both float fields
            tensor.contents.fp32_contents.extend(values32)
            tensor.contents.fp64_contents.extend(values.tolist())
        elif kind == 3:  # every varint field, small and extreme values
            field, low, high = INT_FIELDS[rng.integers(0, len(INT_FIELDS))]
            size = int(rng.integers(0, 6))
            found = [int(v) for v in rng.integers(-9, 9, size=size)] + [low, high, 0]
            found = [v for v in found if low <= v <= high]
            if field == "bool_contents":
                found = [bool(v) for v in found]
            getattr(tensor.contents, field).extend(found)
        elif kind == 4:
            sizes = rng.integers(0, 4, size=rng.integers(1, 4))  # an empty element among them
            tensor.contents.bytes_contents.extend(rng.bytes(int(n)) for n in sizes)
        else:
            tensor.contents.SetInParent()  # an empty contents message
    return pb.ModelInferRequest(
        model_name=random_text(rng),
        model_version=random_text(rng),
        id=random_text(rng),
        parameters=random_parameters(rng),
        inputs=inputs,
        outputs=[
            Output(name=random_text(rng), parameters=random_parameters(rng))
            for _ in range(rng.integers(0, 3))
        ],
        raw_input_contents=raw[: len(raw) if rng.integers(0, 5) and not typed else 0],
    )


def unknown_field(rng: np.random.Generator) -> bytes:
    """A field the ``.proto`` does not have (or a known number with another wire type)."""
    number = int(rng.choice([1, 5, 7, 8, 15, 16, 99, 2**29 - 1]))
    wire_type = int(rng.choice([0, 1, 2, 5, 3]))
    key = wire._varint_bytes(number << 3 | wire_type)
    if wire_type == 0:
        return key + wire._varint_bytes(int(rng.integers(0, 2**63)))
    if wire_type == 1:
        return key + rng.bytes(8)
    if wire_type == 5:
        return key + rng.bytes(4)
    if wire_type == 3:  # a group, ended by its END_GROUP
        return key + wire._varint_bytes(number << 3 | 4)
    body = rng.bytes(int(rng.integers(0, 5)))
    return key + wire._varint_bytes(len(body)) + body


def mutated(rng: np.random.Generator, data: bytes) -> bytes:
    kind = rng.integers(0, 8)
    if kind == 0 or not data:
        return data
    if kind == 1:  # unknown fields around the message's own
        return unknown_field(rng) + data + unknown_field(rng)
    if kind == 2:  # cut short
        return data[: rng.integers(0, len(data))]
    if kind == 3:  # bytes flipped
        out = bytearray(data)
        for at in rng.integers(0, len(out), size=rng.integers(1, 4)):
            out[at] = int(rng.integers(0, 256))
        return bytes(out)
    if kind == 4:  # the same message twice: scalars last-wins, repeated ones appended
        return data + data
    if kind == 5:  # a parameter set (or empty), another, then the first set again (or emptied)
        entry = pb.ModelInferRequest(parameters={"p": random_parameter(rng)}).SerializeToString()
        other = pb.ModelInferRequest(parameters={"q": random_parameter(rng)}).SerializeToString()
        again = pb.ModelInferRequest(parameters={"p": random_parameter(rng)}).SerializeToString()
        return data + entry + other + again
    if kind == 6 and rng.integers(0, 2):  # raw packed varints into each int field
        blob = rng.choice([b"\xff" * 9 + b"\x7f", b"\xff" * 10 + b"\x01", b"\x80", b"\x01\x80\x80"])
        blob += bytes(rng.integers(0, 256, size=rng.integers(0, 6), dtype=np.uint8))
        field = int(rng.integers(1, 6))
        contents = bytes([field << 3 | 2, len(blob)]) + blob
        tensor = b"\x0a\x01x\x2a" + bytes([len(contents)]) + contents
        return data + bytes([0x2A, len(tensor)]) + tensor  # one more input
    if kind == 6:  # a key padded with a zero byte: protobuf takes it as an unknown field
        return bytes([data[0] | 0x80, 0]) + data[1:] if data[0] < 0x80 else data
    return rng.bytes(int(rng.integers(1, 40)))  # garbage


def protobuf_reading(data: bytes):
    """What the generated classes read, in ``wire``'s terms; None when they refuse it."""
    try:
        message = pb.ModelInferRequest.FromString(data)
    except Exception:  # DecodeError and the codec errors protobuf lets through
        return None
    return (
        message.model_name,
        message.model_version,
        message.id,
        parameters_of_set(message.parameters),
        [
            (t.name, t.datatype, list(t.shape), parameters_of_set(t.parameters), contents_of(t))
            for t in message.inputs
        ],
        [(o.name, parameters_of_set(o.parameters)) for o in message.outputs],
        [bytes(raw) for raw in message.raw_input_contents],
    )


def contents_of(tensor) -> dict | None:
    """What the server's generated path takes of an input's typed contents."""
    if not tensor.HasField("contents") or not tensor.contents.ByteSize():
        return None
    return {found.name: list(values) for found, values in tensor.contents.ListFields()}


def parameters_of_set(entries) -> dict:
    """``grpc_v2._parameters`` restated: importing ``grpc_v2`` registers our generated stubs,
    which protobuf refuses beside tritonclient's (same message names) in one process."""
    found = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            found[key] = getattr(value, choice)
    return found


def same_values(a, b) -> bool:
    """Equal, and of the same type (True is not 1); floats bit for bit (NaN payloads, -0.0);
    dicts in the same key order (a map's order is what ``parameters`` iterates in)."""
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same_values, a, b))
    if isinstance(a, float):
        return isinstance(b, float) and struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("seed", range(8))
def test_wire_reads_what_protobuf_reads_or_leaves_it_to_protobuf(seed):
    rng = np.random.default_rng(seed)
    read = refused = typed = 0
    for _ in range(400):
        data = mutated(rng, random_request(rng).SerializeToString())
        expected = protobuf_reading(data)
        found = wire.read_request(data)
        if expected is None:
            assert found is None, data
            refused += 1
            continue
        if found is None:
            continue  # the generated classes read it: typed contents, or a form wire leaves
        read += 1
        typed += any(i.contents for i in found.inputs)
        got = (
            found.model_name,
            found.model_version,
            found.id,
            found.parameters,
            [(i.name, i.datatype, i.shape, i.parameters, i.contents) for i in found.inputs],
            found.outputs,
            [bytes(raw) for raw in found.raw_input_contents],
        )
        assert same_values(got, expected), data
    # Both sides of the decision were exercised, typed contents among what wire read.
    assert read > 120 and refused > 20 and typed > 10


def test_a_nan_double_parameter_reads_as_protobuf_reads_it():
    """protobuf 3.20 reads every NaN double as ``math.nan`` (its payload and sign dropped)."""
    negative_nan = b"\x01\x00\x00\x00\x00\x00\xf8\xff"
    entry = b"\x0a\x01x\x12\x09\x21" + negative_nan  # key "x", value: double_param
    data = b"\x22" + bytes([len(entry)]) + entry
    expected = protobuf_reading(data)[3]
    found = wire.read_request(data).parameters
    assert math.isnan(found["x"]) and same_values(found, expected)


@pytest.mark.parametrize("seed", range(4))
def test_answers_parse_as_protobuf_reads_them_fuzzed(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(200):
        parameters = {
            random_text(rng): value
            for value in (
                bool(rng.integers(0, 2)),
                int(rng.integers(-(2**63), 2**63 - 1, dtype=np.int64)),
                int(rng.integers(2**63, 2**64 - 1, dtype=np.uint64)),
                float(rng.normal()),
                random_text(rng),
                ["a", 1],
            )[: rng.integers(0, 7)]
        }
        rows = int(rng.integers(0, 300))
        outputs = [
            Tensor.from_array("p", rng.normal(size=(rows, 3)), parameters),
            Tensor.from_array("i", rng.integers(-5, 5, size=rows).astype(np.int32)),
        ]
        answer = InferenceResponse(
            model_name=random_text(rng),
            model_version=random_text(rng),
            id=random_text(rng),
            outputs=outputs[: rng.integers(0, 3)],
            parameters=parameters,
        )
        response = pb.ModelInferResponse.FromString(wire.write_response(answer))
        expected = pb.ModelInferResponse(
            model_name=answer.model_name,
            model_version=answer.model_version,
            id=answer.id,
            parameters={k: as_parameter(v) for k, v in parameters.items()},
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name=t.name,
                    datatype=t.datatype,
                    shape=t.shape,
                    parameters={k: as_parameter(v) for k, v in t.parameters.items()},
                )
                for t in answer.outputs
            ],
            raw_output_contents=[t.to_bytes() for t in answer.outputs],
        )
        assert response == expected


def as_parameter(value) -> pb.InferParameter:
    """How an answer's parameter is sent: the protocol's typed fields, anything else as JSON."""
    if isinstance(value, bool):
        return P(bool_param=value)
    if isinstance(value, int):
        return P(int64_param=value) if value < 2**63 else P(uint64_param=value)
    if isinstance(value, float):
        return P(double_param=value)
    return P(string_param=value if isinstance(value, str) else '["a",1]')
