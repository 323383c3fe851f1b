"""The Seldon protocol over gRPC on ``modelshelf serve``: a bad request is INVALID_ARGUMENT naming
what was wrong (as the REST path's 400 does), with no traceback in the log, and the server keeps
serving. A real server subprocess, called with seldon-core's own gRPC stubs."""

from __future__ import annotations

import grpc
import pytest
from frontends import COMPONENTS, MODELSHELF, Launch, running
from google.protobuf import empty_pb2, json_format
from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

import models
from microservice import SERVERS, seldon_parameters

ROW = models.IRIS_X[:1].tolist()


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    model = models.iris_classifier()
    folder = models.save(model, tmp_path_factory.mktemp("iris") / "iris")
    launch = Launch(
        "SKLearnServer",
        SERVERS / "sklearnserver",
        parameters=seldon_parameters(model_uri=str(folder)),
        grpc=True,
    )
    with running(launch, [MODELSHELF]) as (service,):
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        try:
            yield service, channel, model
        finally:
            channel.close()


def message(body: dict) -> prediction_pb2.SeldonMessage:
    return json_format.ParseDict(body, prediction_pb2.SeldonMessage())


def predicted(answer: prediction_pb2.SeldonMessage) -> list[list[float]]:
    return json_format.MessageToDict(answer)["data"]["ndarray"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": {"ndarray": [[1.0, 2.0, 3.0]]}}, "expected 4 features per row, got 3"),
        ({"data": {"ndarray": [["a", "b", "c", "d"]]}}, "could not read 'a' as a number"),
        ({}, "no payload: expected one of data, jsonData, strData or binData"),
        (
            {"data": {"tensor": {"shape": [2, 4], "values": [1, 2, 3, 4]}}},
            "data.tensor.shape [2, 4] does not hold its 4 values",
        ),
        (  # REST reads a -1 as numpy does; seldon-core's gRPC reader cannot size it
            {"data": {"tensor": {"shape": [-1, 4], "values": [1, 2, 3, 4]}}},
            "data.tensor.shape [-1, 4] cannot be read over gRPC: a -1 is not a size here",
        ),
        ({"data": {}}, "data has no values: expected one of tensor, ndarray, tftensor"),
        (  # doubles the model refuses, not text (JSON writes them as "NaN", "Infinity")
            {"data": {"tensor": {"shape": [1, 4], "values": [1, 2, "NaN", 4]}}},
            "Input X contains NaN",
        ),
        (
            {"data": {"tensor": {"shape": [1, 4], "values": [1, 2, "-Infinity", 4]}}},
            "Input X contains infinity",
        ),
        ({"data": {"ndarray": [1, 2, 3, 4]}}, "expected rows: the input is a flat list"),
        ({"strData": "hello"}, "the input must be an array of rows of numbers"),
        ({"data": {"ndarray": [[1, 2, 3, 4], [1]]}}, "expected rows of equal length"),
        ({"data": {"ndarray": [[None, [None]]]}}, "data cannot be read as an array"),
    ],
)
def test_bad_input_is_invalid_argument_naming_what_was_wrong(iris, body, expected):
    service, channel, model = iris
    stub = prediction_pb2_grpc.ModelStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(message(body), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()
    # The server goes on serving, and logs no traceback for a client's mistake.
    answer = stub.Predict(message({"data": {"ndarray": ROW}}), timeout=10)
    models.assert_same_predictions(predicted(answer), model.predict_proba(ROW))
    log = service.log()
    assert "Traceback" not in log
    assert "Exception calling application" not in log
    assert "client error(s) (4xx)" in log  # REST's once-a-minute count, not a line per call


def test_every_service_name_and_method_is_guarded(iris):
    """``Seldon`` shares ``Model``'s servicer; ``Generic``'s ``Aggregate`` takes a list."""
    _, channel, _ = iris
    with pytest.raises(grpc.RpcError) as caught:
        prediction_pb2_grpc.SeldonStub(channel).Predict(
            message({"data": {"ndarray": [[1.0]]}}), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 4 features per row, got 1" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        prediction_pb2_grpc.GenericStub(channel).Aggregate(
            prediction_pb2.SeldonMessageList(), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a non-empty array of SeldonMessages" in caught.value.details()


def test_graph_metadata_on_a_model_is_unimplemented_without_a_traceback(iris):
    """A graph's metadata is the executor's: on a component, seldon-core's servicer raises
    NotImplementedError. UNIMPLEMENTED says so; it is no server fault to log per call."""
    service, channel, _ = iris
    with pytest.raises(grpc.RpcError) as caught:
        prediction_pb2_grpc.SeldonStub(channel).GraphMetadata(empty_pb2.Empty(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "GraphMetadata not available on the Model level" in caught.value.details()
    assert "Seldon gRPC GraphMetadata failed" not in service.log()


@pytest.fixture(scope="module")
def combiner():
    launch = Launch("FiniteMeanCombiner", COMPONENTS, service_type="COMBINER", grpc=True)
    with running(launch, [MODELSHELF]) as (service,):
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        try:
            yield service, channel
        finally:
            channel.close()


@pytest.mark.parametrize(("value", "refusal"), [("NaN", "NaN"), ("Infinity", "infinity")])
def test_aggregate_of_non_finite_doubles_keeps_the_models_refusal(combiner, value, refusal):
    """A tensor's NaN and ±Infinity are doubles (JSON writes them as strings): Aggregate answers
    the combiner's own refusal of them, as Predict does, not "… is a string"."""
    _, channel = combiner
    stub = prediction_pb2_grpc.GenericStub(channel)
    finite = message({"data": {"tensor": {"shape": [1, 2], "values": [1, 2]}}})
    not_finite = message({"data": {"tensor": {"shape": [1, 2], "values": [1, value]}}})
    with pytest.raises(grpc.RpcError) as caught:
        stub.Aggregate(prediction_pb2.SeldonMessageList(seldonMessages=[finite, not_finite]))
    assert f"Input contains {refusal}" in caught.value.details()
    assert "is a string" not in caught.value.details()
    answer = stub.Aggregate(prediction_pb2.SeldonMessageList(seldonMessages=[finite, finite]))
    assert json_format.MessageToDict(answer)["data"]["tensor"]["values"] == [1.0, 2.0]
