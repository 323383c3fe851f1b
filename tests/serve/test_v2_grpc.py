"""Open Inference Protocol (V2) gRPC on ``modelshelf serve``, through tritonclient's gRPC client.

The servers run as subprocesses: our stubs and tritonclient's register the same ``inference.*``
messages, and one process cannot hold both. This process never imports ours, so the raw-message
tests below build requests with tritonclient's own messages -- an independent copy of the
protocol's ``.proto`` -- which is also what proves the wire format, not just our round trip.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
import xgboost as xgb
from frontends import MODELSHELF, Launch, running
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from seldon_core.proto import prediction_pb2, prediction_pb2_grpc
from seldon_core.utils import json_to_seldon_message
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import models
import xgboost_models
from microservice import SERVERS, seldon_parameters

IRIS_ROWS = models.IRIS_X[::15]  # 10 rows, every class
ONE_ROW = IRIS_ROWS[:1]


class Client(triton.InferenceServerClient):
    """tritonclient's gRPC client that remembers the server's address (for raw stubs)."""

    def __init__(self, address: str, rest_url: str) -> None:
        super().__init__(address)
        self.address = address
        self.rest_url = rest_url  # the same server's REST port (V2 REST beside gRPC)


@contextlib.contextmanager
def serving(server: str, folder: Path, *extra_args: str) -> Iterator[Client]:
    """``modelshelf serve SERVER`` with gRPC on, and a tritonclient gRPC client to it."""
    launch = Launch(
        server,
        SERVERS / server.lower(),
        parameters=seldon_parameters(model_uri=str(folder)),
        grpc=True,
        extra_args=extra_args,
    )
    with running(launch, [MODELSHELF]) as (service,):
        client = Client(f"127.0.0.1:{service.grpc_port}", service.url)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    model = models.iris_classifier()
    folder = models.save(model, tmp_path_factory.mktemp("iris") / "iris")
    with serving("SKLearnServer", folder) as client:
        yield client, model


@pytest.fixture(scope="module")
def booster(tmp_path_factory):
    model = xgboost_models.iris_softprob()
    folder = xgboost_models.save_booster(model, tmp_path_factory.mktemp("xgb") / "flowers")
    with serving("XGBoostServer", folder, "--model-name", "iris-xgb") as client:
        yield client, model


def infer_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    found = triton.InferInput(name, list(array.shape), datatype)
    found.set_data_from_numpy(array)
    return found


def outputs_of(result: triton.InferResult) -> dict[str, np.ndarray]:
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status(), caught.value.message()


# ------------------------------------------------------------------------------ health, metadata


def test_health_and_server_metadata(iris):
    client, _ = iris
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    metadata = client.get_server_metadata()
    assert metadata.name == "modelshelf"
    assert metadata.version


def test_model_metadata_describes_the_model(iris):
    client, model = iris
    metadata = client.get_model_metadata("iris", as_json=True)
    assert metadata["name"] == "iris"
    assert metadata["platform"] == "sklearn"
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "4"]}]
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["predict_proba"] == {
        "name": "predict_proba",
        "datatype": "FP64",
        "shape": ["-1", str(len(model.classes_))],
    }
    assert outputs["predict"]["datatype"] == "BYTES"  # string class labels
    assert outputs["class_names"]["shape"] == [str(len(model.classes_))]


def test_unknown_model_is_not_found_everywhere(iris):
    client, _ = iris
    x = infer_input("input-0", ONE_ROW, "FP64")
    code, message = status_of(lambda: client.infer("iris", [x], model_version="1"))
    assert code == "StatusCode.NOT_FOUND"
    assert "version '1'" in message  # the model has no versions to ask for
    for call in (
        lambda: client.infer("no-such-model", [x]),
        lambda: client.get_model_metadata("no-such-model"),
        lambda: client.is_model_ready("no-such-model"),
    ):
        code, message = status_of(call)
        assert code == "StatusCode.NOT_FOUND"
        assert "'no-such-model'" in message and "'iris'" in message


# ----------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16", "INT64", "INT32"])
def test_infer_equals_the_models_own_answer(iris, datatype):
    client, model = iris
    X = IRIS_ROWS.astype(triton.triton_to_np_dtype(datatype))
    if datatype.startswith("INT"):
        X = np.rint(IRIS_ROWS).astype(X.dtype)
    result = client.infer("iris", [infer_input("input-0", X, datatype)], request_id="req-7")
    response = result.get_response()
    assert response.model_name == "iris"
    assert response.id == "req-7"
    assert [o.name for o in response.outputs] == ["predict_proba"]  # the configured method
    assert response.outputs[0].datatype == "FP64"
    models.assert_same_predictions(result.as_numpy("predict_proba"), model.predict_proba(X))


def test_requested_outputs_choose_the_methods_in_the_order_asked(iris):
    client, model = iris
    wanted = ["class_names", "predict", "predict_proba", "decision_function"]
    result = client.infer(
        "iris",
        [infer_input("input-0", IRIS_ROWS, "FP64")],
        outputs=[triton.InferRequestedOutput(name) for name in wanted],
    )
    found = outputs_of(result)
    assert list(found) == wanted
    assert found["class_names"].tolist() == [c.encode() for c in model.classes_]
    assert found["predict"].tolist() == [c.encode() for c in model.predict(IRIS_ROWS)]
    models.assert_same_predictions(found["predict_proba"], model.predict_proba(IRIS_ROWS))
    models.assert_same_predictions(found["decision_function"], model.decision_function(IRIS_ROWS))
    # The per-class output names its columns, as JSON text (gRPC parameters are scalars).
    parameters = {o.name: o.parameters for o in result.get_response().outputs}
    assert parameters["predict_proba"]["class_names"].string_param == (
        '["setosa","versicolor","virginica"]'
    )


def test_a_thousand_rows(iris):
    client, model = iris
    X = np.resize(models.IRIS_X, (1000, 4))
    result = client.infer("iris", [infer_input("input-0", X, "FP64")])
    models.assert_same_predictions(result.as_numpy("predict_proba"), model.predict_proba(X))


def test_a_flat_row_and_duplicate_input_names_are_invalid_arguments_naming_the_fix(iris):
    client, _ = iris
    row = models.IRIS_X[0]
    code, message = status_of(lambda: client.infer("iris", [infer_input("x", row, "FP64")]))
    assert code == "StatusCode.INVALID_ARGUMENT", (code, message)
    assert "shape [4] is a flat list" in message and "[-1, 4]" in message, message
    column = models.IRIS_X[:2, :1]
    inputs = [infer_input("a", column, "FP64"), infer_input("a", column, "FP64")]
    code, message = status_of(lambda: client.infer("iris", inputs))
    assert code == "StatusCode.INVALID_ARGUMENT", (code, message)
    assert "inputs[1]: name 'a' is already the name of inputs[0]" in message, message


def test_xgboost_booster_equals_xgboost(booster):
    """... under the name ``--model-name`` gives it (its folder's name is not served)."""
    client, model = booster
    X = IRIS_ROWS.astype(np.float32)
    metadata = client.get_model_metadata("iris-xgb", as_json=True)
    assert status_of(lambda: client.get_model_metadata("flowers"))[0] == "StatusCode.NOT_FOUND"
    assert metadata["inputs"][0]["shape"] == ["-1", "4"]
    result = client.infer(
        "iris-xgb",
        [infer_input("input-0", X, "FP32")],
        outputs=[
            triton.InferRequestedOutput("predict"),
            triton.InferRequestedOutput("predict_margin"),
        ],
    )
    found = outputs_of(result)
    data = xgb.DMatrix(X, feature_names=models.IRIS_COLUMNS)
    np.testing.assert_array_equal(found["predict"], model.predict(data))
    np.testing.assert_array_equal(found["predict_margin"], model.predict(data, output_margin=True))
    assert found["predict"].dtype == np.float32


@pytest.mark.parametrize("nthread", [None, 2])
def test_the_grpc_process_shares_the_cores_with_rest(tmp_path, nthread):
    """A large request in the gRPC process gets cores ÷ (REST + gRPC workers) OpenMP threads
    (its I/O threads need a core too), unless the class was given a count (``nthread``); the
    REST worker keeps cores ÷ REST workers. Each process logs its count on its first call."""
    from modelshelf.openmp import available_cores

    model = xgboost_models.iris_softprob()
    folder = xgboost_models.save_booster(model, tmp_path / "flowers")
    parameters = {"model_uri": str(folder)} | ({"nthread": nthread} if nthread else {})
    launch = Launch(
        "XGBoostServer",
        SERVERS / "xgboostserver",
        parameters=seldon_parameters(**parameters),
        grpc=True,
        extra_args=("--workers", "1"),
    )
    X = np.resize(models.IRIS_X, (1000, 4))
    cores = available_cores()
    with running(launch, [MODELSHELF]) as (service,):
        client = Client(f"127.0.0.1:{service.grpc_port}", service.url)
        try:
            by_grpc = client.infer("flowers", [infer_input("input-0", X, "FP64")])
        finally:
            client.close()
        first = [line for line in service.log().splitlines() if "per large request" in line]
        by_rest = httpx.post(
            f"{service.url}/v2/models/flowers/infer",
            json={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1000, 4],
                              "data": X.ravel().tolist()}]},
        )  # fmt: skip
        assert by_rest.status_code == 200, by_rest.text
        both = [line for line in service.log().splitlines() if "per large request" in line]
    grpc_threads = nthread or max(1, cores // 2)
    assert len(first) == 1 and f"OpenMP: {grpc_threads} thread(s)" in first[0]
    assert len(both) == 2 and f"OpenMP: {nthread or cores} thread(s)" in both[1]
    expected = model.predict(xgb.DMatrix(X, feature_names=models.IRIS_COLUMNS))
    np.testing.assert_array_equal(by_grpc.as_numpy("predict"), expected)


def test_bytes_input_reaches_a_text_model(tmp_path):
    model = models.text_pipeline()
    folder = models.save(model, tmp_path / "reviews")
    texts = ["really great value", "bad, it broke", "ünïcode is fine too"]
    with serving("SKLearnServer", folder) as client:
        raw = client.infer(
            "reviews", [infer_input("text", np.array([t.encode() for t in texts], object), "BYTES")]
        )
        models.assert_same_predictions(raw.as_numpy("predict_proba"), model.predict_proba(texts))
        # The same texts as typed bytes_contents, with the label as a BYTES output.
        stub, channel = raw_stub(client)
        with channel:
            request = service_pb2.ModelInferRequest(
                model_name="reviews",
                inputs=[
                    typed_input("text", "BYTES", [3], bytes_contents=[t.encode() for t in texts])
                ],
                outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="predict")],
            )
            response = stub.ModelInfer(request)
        assert raw_output(response, 0).tolist() == [c.encode() for c in model.predict(texts)]


def test_named_inputs_become_dataframe_columns(tmp_path):
    """Several inputs (the ``pd`` codec): one column each, by name, each in its own dtype."""
    model = models.iris_frame_pipeline()
    folder = models.save(model, tmp_path / "frame")
    columns = {name: IRIS_ROWS[:, i] for i, name in enumerate(models.IRIS_COLUMNS)}
    columns["petal_width"] = columns["petal_width"].astype(np.float32)
    # Sent in another order than the model's: the names decide.
    inputs = [
        infer_input(name, columns[name], "FP32" if name == "petal_width" else "FP64")
        for name in reversed(models.IRIS_COLUMNS)
    ]
    with serving("SKLearnServer", folder) as client:
        result = client.infer("frame", inputs)
    expected = model.predict_proba(pd.DataFrame(columns)[models.IRIS_COLUMNS])
    models.assert_same_predictions(result.as_numpy("predict_proba"), expected)


def test_one_column_and_text_that_is_not_utf8_are_named(tmp_path):
    """A model fitted on a DataFrame of 3 columns: one input named after one of them names
    the missing ones (it was "expected 3 features per row, got 1"); a BYTES element of a text
    column that is not UTF-8 is named (it reached the model as U+FFFD), raw or typed."""
    folder = models.save(models.houses_pipeline(), tmp_path / "houses")
    with serving("SKLearnServer", folder, "--model-name", "houses") as client:
        city = np.array([[b"oslo"]], dtype=object)
        code, details = status_of(
            lambda: client.infer("houses", [infer_input("city", city, "BYTES")])
        )
        assert code == "StatusCode.INVALID_ARGUMENT", details
        assert "input 'city' is one of this model's 3 inputs" in details
        assert "missing 'floor', 'area'" in details
        others = [
            typed_input("floor", "INT64", [2], int64_contents=[1, 2]),
            typed_input("area", "FP64", [2], fp64_contents=[50.0, 72.5]),
        ]
        cities = [b"oslo", b"\xff\xfe"]
        request = service_pb2.ModelInferRequest(
            model_name="houses",
            inputs=[typed_input("city", "BYTES", [2], bytes_contents=cities), *others],
        )
        code, details = send_raw(client, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "input 'city': element [1] is not UTF-8 text" in details
        binary = [infer_input("city", np.array(cities, dtype=object), "BYTES")]
        binary += [
            infer_input("floor", np.array([1, 2], dtype=np.int64), "INT64"),
            infer_input("area", np.array([50.0, 72.5]), "FP64"),
        ]
        code, details = status_of(lambda: client.infer("houses", binary))
        assert "input 'city': element [1] is not UTF-8 text" in details
        binary[0] = infer_input("city", np.array([b"oslo", b"rome"], dtype=object), "BYTES")
        assert client.infer("houses", binary).as_numpy("predict_proba").shape == (2, 2)


def test_grpc_answers_as_v2_rest_does_on_the_same_server(iris):
    """Metadata and answers equal V2 REST's (binary tensors, tritonclient's HTTP client)."""
    client, _ = iris
    over_rest = httpx.get(f"{client.rest_url}/v2/models/iris").json()
    over_grpc = client.get_model_metadata("iris", as_json=True)
    for spec in over_grpc["inputs"] + over_grpc["outputs"]:
        spec["shape"] = [int(d) for d in spec["shape"]]  # JSON of int64 fields: strings
    assert over_grpc == over_rest
    assert (
        client.get_server_metadata(as_json=True)["version"]
        == (httpx.get(f"{client.rest_url}/v2").json()["version"])
    )

    rest = triton_http.InferenceServerClient(client.rest_url.removeprefix("http://"))
    wanted = ["predict", "predict_proba", "class_names"]
    X = np.resize(models.IRIS_X, (100, 4))
    http_input = triton_http.InferInput("input-0", list(X.shape), "FP64")
    http_input.set_data_from_numpy(X, binary_data=True)
    by_rest = rest.infer(
        "iris",
        [http_input],
        outputs=[triton_http.InferRequestedOutput(n, binary_data=True) for n in wanted],
    )
    by_grpc = client.infer(
        "iris",
        [infer_input("input-0", X, "FP64")],
        outputs=[triton.InferRequestedOutput(n) for n in wanted],
    )
    for name in wanted:
        np.testing.assert_array_equal(by_grpc.as_numpy(name), by_rest.as_numpy(name))
    rest.close()


# ------------------------------------------------------------------- typed contents, raw messages


def raw_stub(client: Client):
    """A plain grpc stub built from tritonclient's messages, to send what its client cannot."""
    channel = grpc.insecure_channel(client.address)
    return service_pb2_grpc.GRPCInferenceServiceStub(channel), channel


def typed_input(name: str, datatype: str, shape: list[int], **contents: object):
    return service_pb2.ModelInferRequest.InferInputTensor(
        name=name,
        datatype=datatype,
        shape=shape,
        contents=service_pb2.InferTensorContents(**contents),
    )


def raw_output(response, index: int) -> np.ndarray:
    output = response.outputs[index]
    data = response.raw_output_contents[index]
    if output.datatype == "BYTES":
        from tritonclient.utils import deserialize_bytes_tensor

        return deserialize_bytes_tensor(data).reshape(list(output.shape))
    dtype = triton.triton_to_np_dtype(output.datatype)
    return np.frombuffer(data, dtype=dtype).reshape(list(output.shape))


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("FP64", "fp64_contents", IRIS_ROWS),
        ("FP32", "fp32_contents", IRIS_ROWS.astype(np.float32)),
        ("INT64", "int64_contents", np.rint(IRIS_ROWS).astype(np.int64)),
        ("INT32", "int_contents", np.rint(IRIS_ROWS).astype(np.int32)),
        ("UINT8", "uint_contents", np.rint(IRIS_ROWS).astype(np.uint8)),
    ],
)
def test_typed_contents_answer_as_raw_contents(iris, datatype, field, values):
    client, model = iris
    stub, channel = raw_stub(client)
    with channel:
        request = service_pb2.ModelInferRequest(
            model_name="iris",
            id="typed",
            inputs=[
                typed_input("input-0", datatype, list(values.shape), **{field: values.ravel()})
            ],
        )
        response = stub.ModelInfer(request)
    assert response.id == "typed"
    assert not response.outputs[0].HasField("contents")  # answers are raw, as Triton's
    models.assert_same_predictions(raw_output(response, 0), model.predict_proba(values))


# ---------------------------------------------------------------------------------------- errors


def send_raw(client: Client, request) -> tuple[grpc.StatusCode, str]:
    stub, channel = raw_stub(client)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    return caught.value.code(), caught.value.details()


def iris_request(*inputs, raw: list[bytes] | None = None, **fields):
    return service_pb2.ModelInferRequest(
        model_name="iris", inputs=list(inputs), raw_input_contents=raw or [], **fields
    )


def header(name: str, datatype: str, shape: list[int]):
    return service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            iris_request(header("input-0", "FP64", [1, 3]), raw=[ONE_ROW[:, :3].tobytes()]),
            "expected 4 features",
        ),
        (
            iris_request(header("input-0", "FP64", [1, 4]), raw=[ONE_ROW.tobytes()[:-3]]),
            "not a whole number of FP64 values",
        ),
        (
            iris_request(header("input-0", "FP64", [2, 4]), raw=[ONE_ROW.tobytes()]),
            "shape [2, 4] holds 8 values, data has 4",
        ),
        (
            iris_request(header("input-0", "FP128", [1, 4]), raw=[ONE_ROW.tobytes()]),
            "'FP128' is not a V2 datatype",
        ),
        (
            iris_request(header("input-0", "FP64", [1, 4]), raw=[ONE_ROW.tobytes()] * 2),
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            iris_request(
                typed_input("input-0", "FP64", [1, 4], fp64_contents=ONE_ROW.ravel()),
                raw=[ONE_ROW.tobytes()],
            ),
            "both contents and raw_input_contents",
        ),
        (
            iris_request(typed_input("input-0", "FP16", [1, 4], fp32_contents=ONE_ROW.ravel())),
            "FP16 has no typed contents field",
        ),
        (
            iris_request(typed_input("input-0", "INT32", [1, 4], fp64_contents=ONE_ROW.ravel())),
            "input 'input-0' is INT32, whose typed values go in int_contents; the request has "
            "them in fp64_contents",
        ),
        (
            iris_request(header("text", "BYTES", [1]), raw=[b"\x09\x00\x00\x00abc"]),
            "runs past the data's end",
        ),
        (  # typed values that do not fit the datatype: never wrapped or clipped
            iris_request(typed_input("input-0", "INT8", [1, 4], int_contents=[1, 2, 300, 4])),
            "input 'input-0': element [0, 2] is 300, out of INT8's range [-128, 127]",
        ),
        (
            iris_request(typed_input("input-0", "UINT8", [1, 4], uint_contents=[1, 2, 3, 256])),
            "input 'input-0': element [0, 3] is 256, out of UINT8's range [0, 255]",
        ),
        (
            iris_request(typed_input("input-0", "INT16", [1, 4], int_contents=[-40000, 1, 2, 3])),
            "element [0, 0] is -40000, out of INT16's range [-32768, 32767]",
        ),
        (iris_request(), "no inputs"),
        (
            iris_request(
                header("input-0", "FP64", [1, 4]),
                raw=[ONE_ROW.tobytes()],
                outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="nope")],
            ),
            "output 'nope' is not one this model gives",
        ),
        (
            iris_request(
                header("input-0", "FP64", [1, 4]),
                raw=[ONE_ROW.tobytes()],
                parameters={"content_type": service_pb2.InferParameter(string_param="xml")},
            ),
            "content_type 'xml' is not known",
        ),
    ],
)
def test_bad_requests_are_invalid_argument_and_say_why(iris, request_, expected):
    client, model = iris
    code, details = send_raw(client, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in details
    assert "Traceback" not in details
    # ... and the server goes on serving.
    result = client.infer("iris", [infer_input("input-0", ONE_ROW, "FP64")])
    models.assert_same_predictions(result.as_numpy("predict_proba"), model.predict_proba(ONE_ROW))


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\xff" * 12])
def test_bytes_that_are_no_request_are_invalid_argument(iris, data):
    client, _ = iris
    with grpc.insecure_channel(client.address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            infer(data, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("the request is not a ModelInferRequest: ")


FLAKY_MODEL = textwrap.dedent(
    '''
    """Ready only while a file exists; predict fails for a negative first value."""
    import os

    import numpy as np


    class FlakyModel:
        def __init__(self, flag=""):
            self.flag = flag

        @property
        def ready(self):
            return os.path.exists(self.flag)

        def predict(self, X, names=None, meta=None):
            if np.asarray(X).ravel()[0] < 0:
                raise RuntimeError("the model cannot score negative values")
            return np.asarray(X, dtype=float) * 2
    '''
)


def test_not_ready_is_unavailable_and_model_failures_are_internal(tmp_path):
    (tmp_path / "FlakyModel.py").write_text(FLAKY_MODEL)
    flag = tmp_path / "ready"
    flag.touch()  # ready while the server starts: the suite's start-up check needs it
    launch = Launch("FlakyModel", tmp_path, parameters=seldon_parameters(flag=str(flag)), grpc=True)
    with running(launch, [MODELSHELF]) as (service,):
        client = Client(f"127.0.0.1:{service.grpc_port}", service.url)
        x = infer_input("input-0", np.array([[1.5, 2.0]]), "FP64")
        assert client.infer("FlakyModel", [x]).as_numpy("predict").tolist() == [[3.0, 4.0]]

        code, message = status_of(
            lambda: client.infer("FlakyModel", [infer_input("input-0", -ONE_ROW, "FP64")])
        )
        assert code == "StatusCode.INTERNAL"
        assert message == "the model cannot score negative values"

        flag.unlink()
        assert not client.is_server_ready()
        assert not client.is_model_ready("FlakyModel")
        assert client.is_server_live()
        code, _ = status_of(lambda: client.infer("FlakyModel", [x]))
        assert code == "StatusCode.UNAVAILABLE"
        assert client.get_model_metadata("FlakyModel").name == "FlakyModel"

        flag.touch()
        assert client.is_model_ready("FlakyModel")
        assert client.infer("FlakyModel", [x]).as_numpy("predict").tolist() == [[3.0, 4.0]]
        client.close()


TRITON_USER = textwrap.dedent(
    '''
    """A class whose module imports tritonclient's gRPC stubs (say, to call a Triton server)."""
    import tritonclient.grpc  # noqa: F401 - registers inference.* in protobuf's default pool


    class TritonUser:
        def predict(self, X, names=None, meta=None):
            return X
    '''
)


def test_a_class_holding_tritonclients_stubs_keeps_seldons_grpc(tmp_path):
    """Two copies of the protocol's messages cannot live in one process: V2 gRPC steps aside
    (UNIMPLEMENTED, and the log says why); Seldon's gRPC and V2 REST still answer."""
    (tmp_path / "TritonUser.py").write_text(TRITON_USER)
    launch = Launch("TritonUser", tmp_path, grpc=True)
    with running(launch, [MODELSHELF]) as (service,):
        address = f"127.0.0.1:{service.grpc_port}"
        with grpc.insecure_channel(address) as channel:
            message = json_to_seldon_message({"data": {"ndarray": [[1.0, 2.0]]}})
            answer = prediction_pb2_grpc.ModelStub(channel).Predict(message)
            assert [v.number_value for v in answer.data.ndarray.values[0].list_value.values] == [
                1.0,
                2.0,
            ]
        client = triton.InferenceServerClient(address)
        code, _ = status_of(lambda: client.is_server_live())
        client.close()
        assert code == "StatusCode.UNIMPLEMENTED"
        assert "V2 gRPC (inference.GRPCInferenceService) is not served" in service.log()
        assert "Conflict register" in service.log()
        rest = httpx.post(
            f"{service.url}/v2/models/TritonUser/infer",
            json={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]}]},
        )
        assert rest.status_code == 200, rest.text


CONCURRENCY_PROBE = textwrap.dedent(
    '''
    """Answers the most calls it has seen inside predict at once (each call stays 0.2 s)."""
    import threading
    import time


    class ConcurrencyProbe:
        def __init__(self):
            self.lock = threading.Lock()
            self.inside = self.most = 0

        def predict(self, X, names=None, meta=None):
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            time.sleep(0.2)
            with self.lock:
                self.inside -= 1
            return [[float(self.most)]]
    '''
)


@pytest.mark.parametrize("grpc_threads", [1, 3])
def test_grpc_threads_bounds_the_calls_inside_the_model(tmp_path, grpc_threads):
    """The server has more threads than GRPC_THREADS (a call keeps its thread while it waits
    for the network), yet the class sees at most GRPC_THREADS calls at once, V2 and Seldon's
    alike -- one at a time by default, as under seldon-core."""
    (tmp_path / "ConcurrencyProbe.py").write_text(CONCURRENCY_PROBE)
    extra = ("--grpc-threads", str(grpc_threads))
    launch = Launch("ConcurrencyProbe", tmp_path, grpc=True, extra_args=extra)
    with running(launch, [MODELSHELF]) as (service,):
        address = f"127.0.0.1:{service.grpc_port}"

        def v2_call(_: int) -> float:
            client = triton.InferenceServerClient(address)
            try:
                x = infer_input("input-0", np.array([[1.0]]), "FP64")
                return float(client.infer("ConcurrencyProbe", [x]).as_numpy("predict")[0][0])
            finally:
                client.close()

        def seldon_call(_: int) -> float:
            with grpc.insecure_channel(address) as channel:
                message = json_to_seldon_message({"data": {"ndarray": [[1.0]]}})
                answer = prediction_pb2_grpc.ModelStub(channel).Predict(message)
                return answer.data.ndarray.values[0].list_value.values[0].number_value

        with ThreadPoolExecutor(8) as pool:
            seen = list(pool.map(v2_call, range(4))) + list(pool.map(seldon_call, range(4)))
            mixed = [pool.submit(v2_call, 0), pool.submit(seldon_call, 0)]
            seen += [future.result() for future in mixed]
    assert max(seen) == grpc_threads


def test_reflection_lists_the_v2_service_beside_seldons(iris):
    client, _ = iris
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(client.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(iter([request]))
    names = {service.name for service in answer.list_services_response.service}
    assert {
        "inference.GRPCInferenceService",
        "seldon.protos.Model",
        "seldon.protos.Seldon",
    } <= names


# --------------------------------------------------------------------- Seldon's services beside


def test_seldon_grpc_services_still_answer_on_the_same_port(iris):
    client, model = iris
    with grpc.insecure_channel(client.address) as channel:
        message = json_to_seldon_message({"data": {"ndarray": ONE_ROW.tolist()}})
        for stub in (prediction_pb2_grpc.ModelStub, prediction_pb2_grpc.SeldonStub):
            answer = stub(channel).Predict(message)
            assert isinstance(answer, prediction_pb2.SeldonMessage)
            assert list(answer.data.names) == list(model.classes_)
            values = [
                [v.number_value for v in row.list_value.values]
                for row in answer.data.ndarray.values
            ]
            models.assert_same_predictions(values, model.predict_proba(ONE_ROW))
