"""``modelshelf.serve.v2_grpc.wire`` against protobuf itself: requests serialized by protobuf
(tritonclient's messages for the same ``.proto``) read back field for field, answers written by
``wire`` parsed by protobuf. Our generated stubs are not imported (they clash with
tritonclient's in one process); ``wire`` does not need them."""

from __future__ import annotations

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
        pb.ModelInferRequest(
            inputs=[Input(name="a", datatype="FP64", shape=[1], contents=pb.InferTensorContents(
                fp64_contents=[1.0]))]
        ).SerializeToString(),  # typed contents: the generated classes read them
        b"\x0a\x05ab",  # a string longer than the message
        b"\x0a",  # a length that never comes
        b"\x0b",  # wire type 3 (groups)
        b"\xff" * 12,  # a varint longer than 10 bytes
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
