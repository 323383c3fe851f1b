"""V2 (Open Inference Protocol) REST and KServe V1 on ``modelshelf serve``, through real clients.

V2 through tritonclient's HTTP client, JSON and binary (it sends binary inputs without a
Content-Type), and raw HTTP for what a client would hide (status codes, error bodies, the kserve
client's ``model_name`` field); KServe V1 with plain HTTP. Each answer is compared with the
model's own method, called here on the same rows. Servers run as subprocesses (tritonclient's
gRPC stubs and ours must not share a process).
"""

from __future__ import annotations

import json
import struct

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from frontends import COMPONENTS, MODELSHELF, SELDON, Launch, running, sklearn_launch

from microservice import SERVERS, seldon_parameters
from models import FLATS, HOUSES, IRIS_COLUMNS, IRIS_X, flats_pipeline, houses_pipeline, save

ROWS = IRIS_X[::15]  # 10 rows of every class


@pytest.fixture(scope="module")
def iris(sklearn_models):
    """SKLearnServer on the iris classifier (no feature names), served as ``flowers``."""
    with running(sklearn_launch(sklearn_models["iris"], "flowers"), [MODELSHELF]) as (service,):
        yield service, joblib.load(sklearn_models["iris"] / "model.joblib")


@pytest.fixture(scope="module")
def frame_model(sklearn_models):
    """SKLearnServer on a pipeline fitted on a DataFrame, named by ``MODEL_NAME``."""
    launch = sklearn_launch(sklearn_models["iris_frame"])
    with running(launch, [MODELSHELF], env={"MODEL_NAME": "frame"}) as (service,):
        yield service, joblib.load(sklearn_models["iris_frame"] / "model.joblib")


@pytest.fixture(scope="module")
def scoring():
    """A user's class with only ``predict`` (doubles numbers, echoes text), default name."""
    with running(Launch("ScoringModel", COMPONENTS), [MODELSHELF]) as (service,):
        yield service


def triton_client(service) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{service.http_port}")


def triton_input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    found = triton.InferInput(name, list(array.shape), datatype)
    found.set_data_from_numpy(array, binary_data=binary)
    return found


# ------------------------------------------------------------------------ V2 through tritonclient


def test_tritonclient_health_and_metadata(iris):
    service, model = iris
    client = triton_client(service)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("flowers")
    assert not client.is_model_ready("iris")
    server = client.get_server_metadata()
    assert server["name"] == "modelshelf" and "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata("flowers")
    assert metadata["name"] == "flowers" and metadata["platform"] == "sklearn"
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["predict_proba"] == {
        "name": "predict_proba",
        "datatype": "FP64",
        "shape": [-1, len(model.classes_)],
    }
    assert outputs["predict"]["datatype"] == "BYTES"  # the labels are strings
    assert outputs["class_names"]["shape"] == [len(model.classes_)]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer_answers_what_the_model_answers(iris, binary):
    service, model = iris
    client = triton_client(service)
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary)
        for name in ("predict_proba", "predict", "class_names")
    ]
    result = client.infer(
        "flowers",
        [triton_input("input-0", ROWS, "FP64", binary)],
        outputs=outputs,
        request_id="req-7",
    )
    assert result.get_response()["id"] == "req-7"
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), model.predict_proba(ROWS), rtol=1e-12
    )
    labels = result.as_numpy("predict").astype(str) if binary else result.as_numpy("predict")
    assert list(labels.ravel()) == list(model.predict(ROWS))
    names = [n.decode() if isinstance(n, bytes) else n for n in result.as_numpy("class_names")]
    assert names == [str(c) for c in model.classes_]
    proba = result.get_output("predict_proba")
    assert proba["parameters"]["class_names"] == names


def test_tritonclient_default_output_is_the_configured_method(iris):
    service, model = iris
    result = triton_client(service).infer(
        "flowers", [triton_input("x", ROWS.astype(np.float32), "FP32", True)]
    )
    expected = model.predict_proba(ROWS.astype(np.float32))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected, rtol=1e-6)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(iris, algorithm):
    service, model = iris
    result = triton_client(service).infer(
        "flowers",
        [triton_input("x", ROWS, "FP64", True)],
        request_compression_algorithm=algorithm,
    )
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(ROWS))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    ("datatype", "array"),
    [
        ("FP16", np.array([[0.5, 1.25], [-2.0, 3.0]], dtype=np.float16)),
        ("FP32", np.array([[0.1, 2.5]], dtype=np.float32)),
        ("INT8", np.array([[-3, 4, 5]], dtype=np.int8)),
        ("UINT16", np.array([[1, 65535]], dtype=np.uint16)),
        ("INT64", np.array([[2**40, -7]], dtype=np.int64)),
        ("BOOL", np.array([[True, False, True]])),
        ("BYTES", np.array([["héllo", "wörld"], ["a", ""]], dtype=object)),
    ],
)
def test_every_datatype_reaches_a_users_class(scoring, datatype, array, binary):
    """The user's class gets the tensor as numpy (BYTES as str) and its answer comes back
    with the datatype and shape numpy gives it."""
    result = triton_client(scoring).infer(
        "ScoringModel",
        [triton_input("x", array, datatype, binary)],
        outputs=[triton.InferRequestedOutput("predict", binary_data=binary)],
    )
    expected = array * 2.0 if datatype != "BYTES" else array
    found = result.as_numpy("predict")
    output = result.get_output("predict")
    assert output["shape"] == list(array.shape)
    if datatype == "BYTES":
        found = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)(found)
        assert found.tolist() == array.tolist()
    else:
        floats = {"float16": "FP16", "float32": "FP32", "float64": "FP64"}
        assert output["datatype"] == floats[str(expected.dtype)]
        np.testing.assert_array_equal(found, expected)


# --------------------------------------------------------------------------- V2 through raw HTTP


def v2_infer(service, model: str, payload: object, **kwargs) -> httpx.Response:
    return service.client.post(f"/v2/models/{model}/infer", json=payload, **kwargs)


def tensor(name: str, array: np.ndarray, datatype: str = "FP64", nested: bool = False) -> dict:
    data = array.tolist() if nested else array.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def test_nested_data_and_the_kserve_clients_model_name(iris):
    service, model = iris
    body = {"model_name": "flowers", "id": "k1", "inputs": [tensor("in", ROWS, nested=True)]}
    answer = v2_infer(service, "flowers", body)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["model_name"] == "flowers" and found["id"] == "k1"
    (output,) = found["outputs"]
    assert output["name"] == "predict_proba" and output["shape"] == [len(ROWS), 3]
    np.testing.assert_array_equal(
        np.array(output["data"]).reshape(output["shape"]), model.predict_proba(ROWS)
    )


def test_binary_request_without_content_type(iris):
    """The layout tritonclient sends, built by hand: JSON, then the tensor's bytes."""
    service, model = iris
    raw = ROWS.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": list(ROWS.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    answer = httpx.post(
        f"{service.url}/v2/models/flowers/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 200, answer.text
    size = int(answer.headers["inference-header-content-length"])
    document = json.loads(answer.content[:size])
    (output,) = document["outputs"]
    assert output["parameters"]["binary_data_size"] == len(answer.content) - size
    found = np.frombuffer(answer.content[size:], dtype="<f8").reshape(output["shape"])
    np.testing.assert_array_equal(found, model.predict_proba(ROWS))


@pytest.mark.parametrize("content_type", ["text/csv", "text/plain; charset=utf-8", "image/png"])
def test_a_body_declared_as_another_format_is_a_415(iris, content_type):
    """It was read as JSON all the same; JSON, octets, curl's form default and no
    Content-Type at all (above, tritonclient's binary requests) are still taken."""
    service, _ = iris
    body = json.dumps({"inputs": [tensor("x", ROWS)]}).encode()
    answer = service.client.post(
        "/v2/models/flowers/infer", content=body, headers={"content-type": content_type}
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"].startswith(
        f"Content-Type {content_type!r} is not a V2 request body: send the JSON request as "
        "application/json"
    )
    for accepted in ("application/json; charset=utf-8", "application/x-www-form-urlencoded"):
        answer = service.client.post(
            "/v2/models/flowers/infer", content=body, headers={"content-type": accepted}
        )
        assert answer.status_code == 200, (accepted, answer.text)


@pytest.mark.parametrize(
    ("shape", "data", "words"),
    [
        ([1, 4], [[[5.1, 3.5, 1.4, 0.2]]], "data is nested deeper than its shape [1, 4]"),
        (
            [4, 1],
            [[[5.1, 3.5, 1.4, 0.2]]],
            "data is not nested as its shape [4, 1]: level 1 holds 1 entries in all, the shape 4",
        ),
        (
            [2, 4],
            [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4, 0.2]],
            "data is not nested as its shape [2, 4]: level 1 holds 3 entries in all",
        ),
    ],
)
def test_data_nested_otherwise_than_its_shape_is_a_400(iris, shape, data, words):
    """The protocol's data is flat or nested as the shape (its "natural" form); anything else
    was flattened and read all the same."""
    service, _ = iris
    spec = {"name": "x", "datatype": "FP64", "shape": shape, "data": data}
    answer = v2_infer(service, "flowers", {"inputs": [spec]})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert f"input 'x': {words}" in message and "send it flat (row-major)" in message, message


def test_binary_bytes_output_is_length_prefixed(iris):
    service, model = iris
    body = {
        "inputs": [tensor("x", ROWS[:2])],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
    answer = v2_infer(service, "flowers", body)
    size = int(answer.headers["inference-header-content-length"])
    raw, labels = answer.content[size:], []
    while raw:
        (length,) = struct.unpack("<I", raw[:4])
        labels.append(raw[4 : 4 + length].decode())
        raw = raw[4 + length :]
    assert labels == list(model.predict(ROWS[:2]))


def test_pd_codec_makes_named_inputs_columns(frame_model):
    """Named inputs, in any order and with their own dtypes, become the model's columns."""
    service, model = frame_model
    frame = pd.DataFrame(ROWS, columns=IRIS_COLUMNS)
    inputs = [tensor(name, frame[name].to_numpy()) for name in reversed(IRIS_COLUMNS)]
    inputs[0] = tensor(IRIS_COLUMNS[-1], frame[IRIS_COLUMNS[-1]].to_numpy(np.float32), "FP32")
    answer = v2_infer(service, "frame", {"inputs": inputs, "parameters": {"content_type": "pd"}})
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    expected = model.predict_proba(frame.astype({IRIS_COLUMNS[-1]: np.float32}))
    np.testing.assert_allclose(np.array(output["data"]).reshape(output["shape"]), expected)
    metadata = service.client.get("/v2/models/frame").json()
    assert metadata["name"] == "frame"


def test_v2_metadata_of_a_column_transformer_lists_its_columns_and_their_types(tmp_path):
    """One input per named column, typed as the pipeline's encoders learnt them (the text
    column BYTES): a request built from the metadata alone is answered as the model answers."""
    model = houses_pipeline()
    with running(sklearn_launch(save(model, tmp_path / "houses"), "houses"), [MODELSHELF]) as (
        service,
    ):
        client = triton_client(service)
        metadata = client.get_model_metadata("houses")
        assert metadata["inputs"] == [
            {"name": "city", "datatype": "BYTES", "shape": [-1, 1]},
            {"name": "floor", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "area", "datatype": "FP64", "shape": [-1, 1]},
        ]
        inputs = []
        for spec in metadata["inputs"]:
            column = HOUSES[spec["name"]].to_numpy().reshape(-1, 1)
            column = column.astype(object if spec["datatype"] == "BYTES" else column.dtype)
            inputs.append(triton_input(spec["name"], column, spec["datatype"], True))
        result = client.infer("houses", inputs)
        np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(HOUSES))
        # A BYTES column whose values all read as numbers stays text, as the client typed it:
        # "12" and "inf" are cities (unknown ones, ignored by the encoder), not 12.0 and inf.
        frame = HOUSES.head(2).assign(city=["12", "inf"])
        inputs = [
            tensor("city", frame["city"].to_numpy(), "BYTES"),
            tensor("floor", frame["floor"].to_numpy(), "INT64"),
            tensor("area", frame["area"].to_numpy()),
        ]
        answer = v2_infer(service, "houses", {"inputs": inputs})
        assert answer.status_code == 200, answer.text
        (output,) = answer.json()["outputs"]
        got = np.array(output["data"]).reshape(output["shape"])
        np.testing.assert_array_equal(got, model.predict_proba(frame))


def test_seldon_rows_keep_the_columns_a_pipeline_learnt_as_text(tmp_path):
    """seldon-core hands rows mixing strings and numbers over as text. A column the pipeline's
    encoder learnt as text stays text ("06" is a postal code, not 6; "inf" an unknown one), a
    number column sent as text ("3") is a number: both front ends answer what the pipeline
    answers for the frame, as for the same rows as jsonData; so does KServe V1."""
    model = flats_pipeline()
    frame = pd.DataFrame(
        {
            "city": ["paris", "nice", "lyon"],
            "rooms": [2, 3, 1],
            "area": [50.0, 31.0, 20.0],
            "code": ["12", "06", "inf"],
        }
    )
    expected = model.predict_proba(frame)
    names = ["code", "city", "area", "rooms"]
    rows = [["12", "paris", 50.0, 2], ["06", "nice", 31.0, "3"], ["inf", "lyon", 20.0, 1]]
    launch = sklearn_launch(save(model, tmp_path / "flats"))
    with running(launch, [SELDON, MODELSHELF], env={"MODEL_NAME": "flats"}) as services:
        for service in services:
            body = {"data": {"names": names, "ndarray": rows}}
            answer = service.client.post("/api/v1.0/predictions", json=body)
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(answer.json()["data"]["ndarray"], expected)
            records = {"jsonData": frame.to_dict(orient="records")}
            answer = service.client.post("/api/v1.0/predictions", json=records)
            assert answer.status_code == 200, answer.text
            found = answer.json()["data"]["tensor"]
            np.testing.assert_allclose(np.reshape(found["values"], found["shape"]), expected)
        modelshelf = services[1]
        in_order = [[row[names.index(n)] for n in FLATS.columns] for row in rows]
        answer = modelshelf.client.post("/v1/models/flats:predict", json={"instances": in_order})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"], expected)


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    """SKLearnServer on a ColumnTransformer pipeline: one-hot ``city`` (text), scaled ``area``."""
    folder = save(houses_pipeline(), tmp_path_factory.mktemp("houses") / "houses")
    with running(sklearn_launch(folder), [MODELSHELF], env={"MODEL_NAME": "houses"}) as (service,):
        yield service


HOUSE_NAMES = ["city", "floor", "area"]


@pytest.mark.parametrize(
    ("row", "ndarray_words", "words"),
    [
        (
            [{"a": 1}, 1, 50.0],
            "column 'city', row 1: a JSON object",
            "column 'city', row 1: a JSON object is not a table's value",
        ),
        (  # numpy's reader of the rows names the cell first
            ["oslo", [2], 50.0],
            "data.ndarray[1][1] is an array",
            "column 'floor', row 1: a JSON array is not a table's value",
        ),
    ],
    ids=["object", "array"],
)
def test_a_json_object_or_array_in_a_cell_is_refused_naming_column_and_row(
    houses, row, ndarray_words, words
):
    """Rows with names (Seldon), records (jsonData, KServe V1 instances): a 400 naming the
    cell, not the model's "unhashable type: 'dict'"."""
    good = ["rome", 2, 72.5]
    records = [dict(zip(HOUSE_NAMES, r, strict=True)) for r in (good, row)]
    requests = [
        ("/api/v1.0/predictions", {"data": {"names": HOUSE_NAMES, "ndarray": [good, row]}}),
        ("/api/v1.0/predictions", {"jsonData": records}),
        ("/v1/models/houses:predict", {"instances": records}),
    ]
    for path, payload in requests:
        answer = houses.client.post(path, json=payload)
        assert answer.status_code == 400, (path, answer.text)
        expected = ndarray_words if "data" in payload else words
        assert expected in answer.text, (path, answer.text)
        assert "unhashable" not in answer.text


def test_a_number_in_a_column_learnt_as_text_is_named(houses):
    """scikit-learn's encoder says "ufunc 'isnan' not supported…"; the 400 names the column,
    the value and its row first, on every protocol."""
    row = [5, 1, 50.0]
    expected = "column 'city' holds a number (5"
    answers = [
        houses.client.post(
            "/api/v1.0/predictions", json={"data": {"names": HOUSE_NAMES, "ndarray": [row]}}
        ),
        houses.client.post("/v1/models/houses:predict", json={"instances": [row]}),
        v2_infer(
            houses,
            "houses",
            {
                "inputs": [
                    {"name": "city", "datatype": "INT64", "shape": [1, 1], "data": [5]},
                    {"name": "floor", "datatype": "INT64", "shape": [1, 1], "data": [1]},
                    {"name": "area", "datatype": "FP64", "shape": [1, 1], "data": [50.0]},
                ]
            },
        ),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert expected in answer.text and "in row 0) where the model learnt text" in answer.text


@pytest.mark.parametrize(("cell", "value"), [("true", "true"), ("", None)], ids=["true", "empty"])
def test_csv_reads_the_columns_learnt_as_text_as_text(houses, cell, value):
    """pandas alone reads a city "true" as a boolean and an empty city cell (the column's only
    one) as a float NaN: the encoder refused both (a 400, "ufunc 'isnan' not supported" for the
    empty one). Read as text, the CSV row is answered as the same JSON row ("true", null)."""
    csv = f"city,floor,area\n{cell},2,72.5\n".encode()
    answer = houses.client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    record = {"city": value, "floor": 2, "area": 72.5}
    as_json = houses.client.post("/invocations", json={"dataframe_records": [record]})
    assert answer.status_code == as_json.status_code == 200, (answer.text, as_json.text)
    assert answer.json() == as_json.json()


def test_text_in_a_number_column_is_named(houses):
    """scikit-learn's scaler says "could not convert string to float: 'big'"; the 400 names
    the column, the text and its row, and what the model expects, on every protocol."""
    row = ["oslo", 1, "big"]
    expected = (
        "column 'area' holds text ('big' in row 1) where the model expects numbers: send its "
        "values as numbers"
    )
    good = ["rome", 2, 72.5]
    records = [dict(zip(HOUSE_NAMES, r, strict=True)) for r in (good, row)]
    answers = [
        houses.client.post(
            "/api/v1.0/predictions", json={"data": {"names": HOUSE_NAMES, "ndarray": [good, row]}}
        ),
        houses.client.post("/api/v1.0/predictions", json={"jsonData": records}),
        houses.client.post("/v1/models/houses:predict", json={"instances": records}),
        v2_infer(
            houses,
            "houses",
            {
                "inputs": [
                    {"name": "city", "datatype": "BYTES", "shape": [2], "data": ["rome", "oslo"]},
                    {"name": "floor", "datatype": "INT64", "shape": [2], "data": [2, 1]},
                    {"name": "area", "datatype": "BYTES", "shape": [2], "data": ["72.5", "big"]},
                ]
            },
        ),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert expected in answer.text, answer.text
        assert "could not convert" not in answer.text


def test_a_boolean_in_a_number_column_of_seldon_rows_is_named_as_a_boolean(houses):
    """seldon-core's array of rows mixing text and other values holds ``true`` as "True": the
    400 says the client sent a boolean, not text."""
    payload = {"data": {"names": HOUSE_NAMES, "ndarray": [["oslo", 1, True]]}}
    answer = houses.client.post("/api/v1.0/predictions", json=payload)
    assert answer.status_code == 400, answer.text
    assert (
        "column 'area' holds a boolean (true in row 0) where the model expects numbers"
        in answer.text
    ), answer.text


def test_a_huge_value_is_not_quoted_whole(houses):
    """A 10,000-character cell is quoted cut short in the 400 (and the log), whether the model
    or the V2 decoding refuses it."""
    huge = "x" * 10_000
    record = {"city": "oslo", "floor": 1, "area": huge}
    tensor = {"name": "area", "datatype": "FP64", "shape": [1], "data": [huge]}
    others = [
        {"name": "city", "datatype": "BYTES", "shape": [1], "data": ["oslo"]},
        {"name": "floor", "datatype": "INT64", "shape": [1], "data": [1]},
    ]
    answers = [
        houses.client.post("/v1/models/houses:predict", json={"instances": [record]}),
        v2_infer(houses, "houses", {"inputs": [*others, tensor]}),
        v2_infer(houses, "houses", {"inputs": [*others, {**tensor, "datatype": "INT64"}]}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "'xxx" in answer.text and "…" in answer.text, answer.text
        assert len(answer.text) < 400, answer.text


def test_one_input_of_a_model_of_several_columns_names_the_missing_ones(houses):
    """Read as a row, one input was "expected 3 features per row, got 1"."""
    for shape in ([1], [1, 1]):
        city = {"name": "city", "datatype": "BYTES", "shape": shape, "data": ["oslo"]}
        answer = v2_infer(houses, "houses", {"inputs": [city]})
        assert answer.status_code == 400, answer.text
        assert (
            "input 'city' is one of this model's 3 inputs, one per column ('city', 'floor', "
            "'area'); missing 'floor', 'area'"
        ) in answer.json()["error"]


HOUSE_INPUTS = [
    {"name": "floor", "datatype": "INT64", "shape": [2], "data": [1, 2]},
    {"name": "area", "datatype": "FP64", "shape": [2], "data": [50.0, 72.5]},
]


def test_bytes_for_a_text_column_that_are_not_utf8_are_named(houses):
    """BYTES are decoded to text for the model: bytes that are not UTF-8 are a 400 naming the
    input and element (they were replaced by U+FFFD, a category no client sent), in binary
    and in JSON (raw bytes, or a lone surrogate escape)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "city",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": 14},
                },
                *HOUSE_INPUTS,
            ]
        }
    ).encode()
    raw = struct.pack("<I", 4) + b"oslo" + struct.pack("<I", 2) + b"\xff\xfe"
    binary = httpx.post(
        f"{houses.url}/v2/models/houses/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    city = {"name": "city", "datatype": "BYTES", "shape": [2], "data": ["oslo", "CITY"]}
    document = json.dumps({"inputs": [city, *HOUSE_INPUTS]})
    raw_json = v2_infer(
        houses, "houses", None, content=document.replace("CITY", "\xff").encode("latin-1")
    )
    escaped = v2_infer(houses, "houses", None, content=document.replace("CITY", "\\udcff").encode())
    for answer in (binary, raw_json, escaped):
        assert answer.status_code == 400, answer.text
        assert "input 'city': element [1] is not UTF-8 text" in answer.json()["error"]
    good = v2_infer(
        houses, "houses", {"inputs": [{**city, "data": ["oslo", "rome"]}, *HOUSE_INPUTS]}
    )
    assert good.status_code == 200, good.text


def test_repeated_names_and_an_object_among_scalars_are_named_on_the_seldon_path(houses):
    """Repeated names said only "missing ['floor']"; a jsonData object among scalar columns
    was read by pandas as a column keyed by row labels ("x") and answered."""
    rows = {"data": {"names": ["city", "city", "area"], "ndarray": [["oslo", 1, 50.0]]}}
    answer = houses.client.post("/api/v1.0/predictions", json=rows)
    assert answer.status_code == 400, answer.text
    assert (
        "the column names repeat 'city' (names[0] and names[1]); expected each of the model's "
        "features ['city', 'floor', 'area'] once"
    ) in answer.text
    record = {"city": {"x": "oslo"}, "floor": 1, "area": 50.0}
    expected = "column 'city', row 0: a JSON object is not a table's value"
    answers = [
        houses.client.post("/api/v1.0/predictions", json={"jsonData": record}),
        houses.client.post("/v1/models/houses:predict", json={"instances": [record]}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert expected in answer.text, answer.text
    by_labels = {"city": {"x": "oslo"}, "floor": {"x": 1}, "area": {"x": 50.0}}
    answer = houses.client.post("/api/v1.0/predictions", json={"jsonData": by_labels})
    assert answer.status_code == 200, answer.text


def test_a_number_beyond_every_type_is_named_on_every_protocol(iris):
    """Python's json says "Exceeds the limit (4300 digits)… use sys.set_int_max_str_digits()",
    orjson "number is infinity when parsed as double": the 400 names the element instead."""
    service, _ = iris
    huge = "9" * 5000
    cases = [
        (
            "/api/v1.0/predictions",
            f'{{"data": {{"ndarray": [[1, {huge}, 3, 4]]}}}}',
            "data.ndarray[0][1] is",
        ),
        (
            "/v2/models/flowers/infer",
            f'{{"inputs": [{{"name": "x", "datatype": "INT64", "shape": [1, 4], '
            f'"data": [1, 2, {huge}, 4]}}]}}',
            "input 'x': element [0, 2] is",
        ),
        (
            "/v1/models/flowers:predict",
            f'{{"instances": [[1, 2, 3, {huge}]]}}',
            "instances[0][3] is",
        ),
        ("/invocations", f'{{"inputs": [[{huge}, 2, 3, 4]]}}', "inputs[0][0] is"),
    ]
    for path, content, where in cases:
        answer = service.client.post(
            path, content=content.encode(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert f"{where} an integer of 5000 digits, out of range" in answer.text, answer.text
        assert "set_int_max_str_digits" not in answer.text
    tensor_ = {"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, "HUGE"]}
    content = json.dumps({"inputs": [tensor_]}).replace('"HUGE"', "1e400").encode()
    answer = v2_infer(service, "flowers", None, content=content)
    assert answer.status_code == 400, answer.text
    assert "input 'x': element [0, 3] is 1e400, a number out of a double's range" in answer.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_as_each_protocols_reference_server_reads_them(iris, literal):
    """JSON has no NaN or Infinity. KServe's and MLServer's servers parse with orjson, which
    refuses them: KServe V1 and V2 answer a 400 naming the literal and where it is (KServe V1
    said "Unrecognized request format: unexpected character"), and what to send instead.
    Seldon Core's and MLflow's servers parse with Python's json, which reads them as floats:
    Seldon and /invocations hand them to the model (/invocations refused the body as not
    JSON), whose refusal of them is the answer; null reaches the model everywhere."""
    service, _ = iris
    expected = "send null for a missing value" if literal == "NaN" else "send a finite number"
    refused = [
        (
            "/v1/models/flowers:predict",
            f'{{"instances": [[1, 2, 3, {literal}]]}}',
            f"instances[0][3] is {literal}, which JSON does not have",
        ),
        (
            "/v2/models/flowers/infer",
            f'{{"inputs": [{{"name": "x", "datatype": "FP64", "shape": [1, 4], '
            f'"data": [1, 2, {literal}, 4]}}]}}',
            f"input 'x': element [0, 2] is {literal}, which JSON does not have",
        ),
    ]
    for path, content, words in refused:
        answer = service.client.post(
            path, content=content.encode(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["error"] and expected in answer.json()["error"]
        null = content.replace(literal, "null").encode()
        answer = service.client.post(
            path, content=null, headers={"content-type": "application/json"}
        )
        assert "Input X contains NaN" in answer.text, answer.text  # null: the model's NaN
    model_words = "Input X contains NaN" if literal == "NaN" else "Input X contains infinity"
    read = [
        ("/api/v1.0/predictions", f'{{"data": {{"ndarray": [[1, {literal}, 3, 4]]}}}}'),
        ("/invocations", f'{{"inputs": [[{literal}, 2, 3, 4]]}}'),
        (
            "/invocations",
            f'{{"dataframe_split": {{"columns": ["a", "b", "c", "d"], '
            f'"data": [[1, 2, {literal}, 4]]}}}}',
        ),
    ]
    for path, content in read:
        answer = service.client.post(
            path, content=content.encode(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert model_words in answer.text, answer.text
        # Where those protocols read the literal, another value's refusal names that value.
        huge = content.replace(literal, f"{literal}, {'9' * 5000}", 1)
        answer = service.client.post(
            path, content=huge.encode(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert "is an integer of 5000 digits" in answer.text, answer.text
    assert v2_infer(service, "flowers", {"inputs": [tensor("x", ROWS)]}).status_code == 200


def test_a_body_that_is_not_utf8_is_said_so_with_the_byte_and_its_offset(iris):
    """A PNG or a Latin-1 file posted as JSON: orjson said "str is not valid UTF-8: surrogates
    not allowed" (at char 0, whatever the byte), Python's json "'utf-16-le' codec can't
    decode…" for a body starting with 0xff 0xfe. Every protocol names the first byte that is
    not UTF-8 and where it is, in its own error body; the server goes on serving."""
    service, _ = iris
    bodies = [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "byte 0x89 at offset 0 is not UTF-8 (invalid start byte)"),
        (b"\xff\xfe\x00\x81garbage", "byte 0xff at offset 0 is not UTF-8"),
        ('{"instances": [[1, 2, 3, 4]], "x": é'.encode("latin-1"), "byte 0xe9 at offset 35"),
    ]
    paths = [
        "/api/v1.0/predictions",
        "/v2/models/flowers/infer",
        "/v1/models/flowers:predict",
        "/invocations",
    ]
    for path in paths:
        for content, where in bodies:
            answer = service.client.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 400, answer.text
            assert f"the body is not UTF-8 JSON: {where}" in answer.text, (path, answer.text)
            assert "surrogates" not in answer.text and "codec" not in answer.text
    assert v2_infer(service, "flowers", {"inputs": [tensor("x", ROWS)]}).status_code == 200


def test_a_models_long_refusal_is_cut_alike_on_every_protocol(iris):
    """scikit-learn follows "Input X contains NaN." with ~400 characters of advice; the 400
    quoted all of it (V2 cut numpy's words at 160). Every protocol now quotes the same 300
    characters of it: its start, which says what was wrong, and its end."""
    service, model = iris
    with pytest.raises(ValueError) as refused:
        model.predict_proba(np.array([[1, np.nan, 3, 4]]))
    whole = str(refused.value)
    assert len(whole) > 400 and whole.startswith("Input X contains NaN.")
    words = whole[:149] + "…" + whole[-150:]
    row = [1, None, 3, 4]
    cases = [
        ("/api/v1.0/predictions", {"data": {"ndarray": [row]}}, ("status", "info")),
        (
            "/v2/models/flowers/infer",
            {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": row}]},
            ("error",),
        ),
        ("/v1/models/flowers:predict", {"instances": [row]}, ("error",)),
        ("/invocations", {"inputs": [row]}, ("message",)),
    ]
    for path, payload, keys in cases:
        answer = service.client.post(path, json=payload)
        assert answer.status_code == 400, answer.text
        message = answer.json()
        for key in keys:
            message = message[key]
        assert f"predict_proba rejected the input: {words}" in message, (path, message)
        assert whole not in message


def test_pd_codec_strings_from_bytes(scoring):
    inputs = [
        {"name": "word", "datatype": "BYTES", "shape": [2], "data": ["ab", "cd"]},
        {"name": "count", "datatype": "INT32", "shape": [2], "data": [1, 2]},
    ]
    answer = v2_infer(scoring, "ScoringModel", {"inputs": inputs})
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    # ScoringModel answers a mixed frame as np.asarray(frame): strings and numbers as objects.
    assert output["datatype"] == "BYTES" and output["shape"] == [2, 2]
    assert output["data"] == ["ab", "1", "cd", "2"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "words"),
    [
        ("/v2/models/other/infer", {"inputs": [tensor("x", ROWS)]}, 404, "'other'"),
        ("/v2/models/flowers/versions/3/infer", {"inputs": [tensor("x", ROWS)]}, 404, "'3'"),
        ("/v2/models/flowers/infer", {"inputs": []}, 400, "inputs"),
        (
            "/v2/models/flowers/infer",
            {"inputs": [{**tensor("x", ROWS), "datatype": "F"}]},
            400,
            "F",
        ),
        (
            "/v2/models/flowers/infer",
            {"inputs": [{**tensor("x", ROWS), "shape": [3]}]},
            400,
            "shape",
        ),
        ("/v2/models/flowers/infer", {"inputs": [{"name": "x", "datatype": "FP64"}]}, 400, "data"),
        ("/v2/models/flowers/infer", {"inputs": [tensor("x", ROWS[:, :2])]}, 400, "features"),
        (
            "/v2/models/flowers/infer",
            {"inputs": [tensor("x", ROWS)], "outputs": [{"name": "nope"}]},
            400,
            "predict_proba",
        ),
        (
            "/v2/models/flowers/infer",
            {"inputs": [tensor("x", ROWS)], "parameters": {"content_type": "xml"}},
            400,
            "xml",
        ),
    ],
    ids=[
        "unknown model",
        "unknown version",
        "no inputs",
        "bad datatype",
        "shape vs data",
        "no data",
        "wrong width",
        "unknown output",
        "unknown codec",
    ],
)
def test_v2_errors(iris, path, payload, status, words):
    service, _ = iris
    answer = service.client.post(path, json=payload)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (
            {"inputs": [tensor("x", ROWS[0])]},
            ["input 'x'", "shape [4]", "flat list", "[-1, 4]", "[1, 4]"],
        ),
        (
            {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": None}]},
            ["input 'x'", "data is null", "4 values", "[1, 4]"],
        ),
        (
            {"inputs": [tensor("x", ROWS[:, 0]), tensor("y", ROWS[:, 1]), tensor("x", ROWS[:, 2])]},
            ["inputs[2]", "'x'", "inputs[0]", "a name of its own"],
        ),
        (
            {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 4], "data": list("abcd")}]},
            [
                "input 'x' (BYTES, shape [1, 4]): the input must hold numbers only; could not "
                "read 'a' as a number; this model takes FP64 rows, shape [-1, 4]"
            ],
        ),
        (  # converted to FP32, 1e300 is inf: a value the client did not send
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 1e300, 4]}
                ]
            },
            ["input 'x'", "element [0, 2] is 1e+300", "out of FP32's range", "3.40282e+38"],
        ),
        (
            {
                "inputs": [
                    {"name": "x", "datatype": "FP16", "shape": [1, 4], "data": [1, 2, 3, -7e4]}
                ]
            },
            ["input 'x'", "element [0, 3] is -70000.0", "out of FP16's range [-65504, 65504]"],
        ),
        (
            {
                "inputs": [
                    {"name": "x", "datatype": "UINT32", "shape": [1, 4], "data": [-1, 2, 3, 4]}
                ]
            },
            ["input 'x'", "element [0, 0] is -1", "out of UINT32's range [0, 4294967295]"],
        ),
        (
            {
                "inputs": [
                    {"name": "x", "datatype": "INT64", "shape": [1, 4], "data": [1, 2**63, 3, 4]}
                ]
            },
            ["input 'x'", "element [0, 1] is 9223372036854775808", "out of INT64's range"],
        ),
        (  # BYTES elements are strings (Triton refuses numbers too)
            {
                "inputs": [
                    {"name": "x", "datatype": "BYTES", "shape": [1, 4], "data": [1, 2, 3.5, 4]}
                ]
            },
            ["input 'x'", "BYTES data must be strings", "element [0, 0] is a number (1)", '"1"'],
        ),
        (
            {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1e20], "data": [1]}]},
            ["input 'x'", "shape must be a list of non-negative integers, but shape[0] is 1e+20"],
        ),
        (  # Triton refuses booleans in numeric data too; numpy would read true as 1.0
            {
                "inputs": [
                    {"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, True, 4]}
                ]
            },
            ["input 'x'", "FP64 data must be numbers, but element [0, 2] is true (a boolean)"],
        ),
        (  # numpy reads [1, true, 3, 4] as integers
            {
                "inputs": [
                    {"name": "x", "datatype": "INT64", "shape": [1, 4], "data": [1, False, 3, 4]}
                ]
            },
            ["input 'x'", "INT64 data must be numbers, but element [0, 1] is false (a boolean)"],
        ),
        (
            {
                "inputs": [
                    {"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, "abc", 3, 4]}
                ]
            },
            ["input 'x'", "FP64 data must be numbers, but element [0, 1] is 'abc', not a number"],
        ),
        ({"id": 7, "inputs": [tensor("x", ROWS)]}, ["id must be a string", "7"]),
        ({"id": ["a"], "inputs": [tensor("x", ROWS)]}, ["id must be a string", "['a']"]),
        (
            {"inputs": [{**tensor("x", ROWS), "parameters": "np"}]},
            ["input 'x'", "parameters must be an object", "'np'"],
        ),
        (
            {"inputs": [tensor("x", ROWS)], "outputs": [{"name": "predict", "parameters": [1]}]},
            ["output 'predict'", "parameters must be an object", "[1]"],
        ),
        (
            {"inputs": [tensor("x", ROWS)], "parameters": "binary"},
            ["the request", "parameters must be an object", "'binary'"],
        ),
    ],
    ids=[
        "flat row",
        "data null",
        "duplicate input name",
        "strings",
        "FP32 overflow",
        "FP16 overflow",
        "UINT32 negative",
        "INT64 out of range",
        "BYTES numbers",
        "shape a float",
        "FP64 boolean",
        "INT64 boolean among integers",
        "FP64 text",
        "numeric id",
        "list id",
        "input parameters a string",
        "output parameters a list",
        "request parameters a string",
    ],
)
def test_v2_refusals_name_what_was_wrong_and_what_was_expected(iris, payload, words):
    """KServe and MLServer hand a shape-[4] tensor to the model as a 1-D array, which the
    model refuses (a 500): here it is a 400 naming the shape the model takes."""
    service, _ = iris
    answer = v2_infer(service, "flowers", payload)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert all(word in message for word in words), message


def test_v2_not_json_and_wrong_methods(iris):
    service, _ = iris
    answer = service.client.post("/v2/models/flowers/infer", content=b"{not json")
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]
    assert service.client.get("/v2/models/flowers/infer").status_code == 405
    assert service.client.post("/v2/health/ready").status_code == 405
    assert service.client.get("/v2/nothing").status_code == 404
    assert service.client.get("/v2/health/live").json() == {"live": True}
    assert service.client.get("/v2/health/ready").json() == {"ready": True}
    assert service.client.get("/v2/models/flowers/ready").json() == {
        "name": "flowers",
        "ready": True,
    }


def test_seldon_protocol_and_v2_give_the_same_numbers(iris):
    """One loaded model behind both: the same method, the same floats (not close: equal)."""
    service, _ = iris
    seldon = service.client.post(
        "/api/v1.0/predictions", json={"data": {"ndarray": ROWS[:1].tolist()}}
    )
    assert seldon.status_code == 200
    v2 = v2_infer(service, "flowers", {"inputs": [tensor("x", ROWS[:1])]}).json()
    assert seldon.json()["data"]["ndarray"] == [v2["outputs"][0]["data"]]


# ---------------------------------------------------------------------------------- KServe V1


def test_kserve_v1_paths(iris):
    service, _ = iris
    assert service.client.get("/").json() == {"status": "alive"}
    assert service.client.get("/v1/models").json() == {"models": ["flowers"]}
    assert service.client.get("/v1/models/flowers").json() == {"name": "flowers", "ready": True}
    missing = service.client.get("/v1/models/roses")
    assert missing.status_code == 404 and "roses" in missing.json()["error"]


def test_under_seldon_the_model_is_named_after_its_predictive_unit(sklearn_models):
    """Every Seldon pod's model is the folder /mnt/models: without MODEL_NAME (or with the s2i
    images' MODEL_NAME, the class) the V2 and KServe V1 paths use PREDICTIVE_UNIT_ID, as
    MLServer under Seldon does; a MODEL_NAME that names the model wins."""
    launch = sklearn_launch(sklearn_models["iris"])
    unit = {"PREDICTIVE_UNIT_ID": "classifier", "MODEL_NAME": "SKLearnServer"}
    with running(launch, [MODELSHELF], env=unit) as (service,):
        assert service.client.get("/v2/models/classifier/ready").status_code == 200
        assert service.client.get("/v2/models/classifier").json()["name"] == "classifier"
        body = {"instances": ROWS[:1].tolist()}
        assert service.client.post("/v1/models/classifier:predict", json=body).status_code == 200
        assert service.client.get("/v2/models/iris/ready").status_code == 404
    with running(launch, [MODELSHELF], env={**unit, "MODEL_NAME": "flowers"}) as (service,):
        assert service.client.get("/v2/models/flowers/ready").status_code == 200
        assert service.client.get("/v2/models/classifier/ready").status_code == 404


def test_kserve_v1_predict_rows(iris):
    service, model = iris
    answer = service.client.post("/v1/models/flowers:predict", json={"instances": ROWS.tolist()})
    assert answer.status_code == 200
    assert answer.json() == {"predictions": model.predict_proba(ROWS).tolist()}
    answer = service.client.post("/v1/models/flowers:predict", json={"inputs": ROWS.tolist()})
    assert answer.json() == {"predictions": model.predict_proba(ROWS).tolist()}


def test_kserve_v1_objects_become_a_frame(frame_model):
    service, model = frame_model
    frame = pd.DataFrame(ROWS, columns=IRIS_COLUMNS)
    records = frame[list(reversed(IRIS_COLUMNS))].to_dict(orient="records")
    answer = service.client.post("/v1/models/frame:predict", json={"instances": records})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": model.predict_proba(frame).tolist()}


def test_a_record_lacking_a_key_is_named_on_every_protocol(frame_model):
    """pandas makes a key one record lacks NaN, which scikit-learn blamed ("Input X contains
    NaN"): the 400 names the record and the key; an explicit null stays the model's NaN."""
    service, _ = frame_model
    first, second = (dict(zip(IRIS_COLUMNS, row, strict=True)) for row in ROWS[:2].tolist())
    del second["petal_width"]
    requests = [
        ("/api/v1.0/predictions", "jsonData"),
        ("/v1/models/frame:predict", "instances"),
        ("/invocations", "dataframe_records"),
        ("/invocations", "instances"),
    ]
    for path, key in requests:
        answer = service.client.post(path, json={key: [first, second]})
        assert answer.status_code == 400, (path, answer.text)
        assert "record 1 lacks 'petal_width'" in answer.text, (path, answer.text)
        assert "NaN" not in answer.text, (path, answer.text)
        nulled = {**second, "petal_width": None}
        answer = service.client.post(path, json={key: [first, nulled]})
        assert answer.status_code == 400, (path, answer.text)
        assert "Input X contains NaN" in answer.text and "lacks" not in answer.text, answer.text


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": "RECORDS"},
        {"instances": "RECORDS"},
        {"inputs": "COLUMNS"},
    ],
    ids=["dataframe_records", "instances of objects", "inputs by column"],
)
def test_invocations_objects_are_read_by_name_or_refused(iris, frame_model, body):
    """/invocations on our servers reads objects as KServe V1 and Seldon's jsonData do: by the
    model's feature names (any key order), refused by a model without them -- read in their
    keys' order, a client's other order answered another flower with a 200."""
    frame = pd.DataFrame(ROWS, columns=IRIS_COLUMNS)
    reordered = frame[list(reversed(IRIS_COLUMNS))]
    key, kind = next(iter(body.items()))
    objects = (
        reordered.to_dict(orient="records")
        if kind == "RECORDS"
        else reordered.to_dict(orient="list")
    )
    service, model = frame_model
    answer = service.client.post("/invocations", json={key: objects})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": model.predict_proba(frame).tolist()}
    service, _ = iris
    answer = service.client.post("/invocations", json={key: objects})
    assert answer.status_code == 400, answer.text
    assert "feature names" in answer.json()["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"instances": [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in ROWS[:2].tolist()]},
            ["feature names", "this model has none", "rows of 4 numbers"],
        ),
        ({"instances": ROWS[0].tolist()}, ['"instances" of 4 values', "flat", "[-1, 4]"]),
        ({"inputs": ROWS[0].tolist()}, ['"inputs" of 4 values', "[1, 4]"]),
        (
            {"instances": ROWS[:1].tolist(), "inputs": ROWS[:1].tolist()},
            ["exactly one", '"instances" and "inputs"'],
        ),
    ],
    ids=["objects without feature names", "flat instances", "flat inputs", "both keys"],
)
def test_kserve_v1_refusals_name_what_was_wrong_and_what_was_expected(iris, body, words):
    """Objects on a model without feature names would be read in their keys' order (wrong
    whenever a client orders them otherwise): refused as Seldon's jsonData is."""
    service, _ = iris
    answer = service.client.post("/v1/models/flowers:predict", json=body)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert all(word in message for word in words), message


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_kserve_v1_ragged_rows_are_named_in_the_requests_field(iris, key):
    service, _ = iris
    body = {key: [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5]]}
    answer = service.client.post("/v1/models/flowers:predict", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == (
        f"{key} could not be read as rows: {key} has rows of unequal length: {key}[1] has 2 "
        f"values, {key}[0] has 4; expected rows of equal length"
    )


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/flowers:predict", b'{"rows": [[1, 2, 3, 4]]}', 400),
        ("/v1/models/flowers:predict", b"[1, 2]", 400),
        ("/v1/models/flowers:predict", b"not json", 400),
        ("/v1/models/flowers:predict", b'{"instances": [[1, 2]]}', 400),
        ("/v1/models/flowers:predict", b'{"instances": [[1, 2], [3]]}', 400),
        ("/v1/models/roses:predict", b'{"instances": [[1, 2, 3, 4]]}', 404),
    ],
    ids=["no instances", "a list", "not json", "wrong width", "ragged", "unknown model"],
)
def test_kserve_v1_errors(iris, path, body, status):
    service, _ = iris
    answer = service.client.post(path, content=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


# ------------------------------------------------------------------- names and KServe arguments


def test_kserve_runtime_arguments(sklearn_models):
    """What a KServe ServingRuntime passes: --model_name, --model_dir (no model_uri
    parameter), --http_port; the class's own name otherwise."""
    launch = Launch(
        "SKLearnServer",
        SERVERS / "sklearnserver",
        extra_args=("--model_name", "kserve-iris", "--model_dir", str(sklearn_models["iris"])),
    )
    with running(launch, [MODELSHELF]) as (service,):
        assert service.client.get("/v1/models").json() == {"models": ["kserve-iris"]}
        answer = service.client.post(
            "/v1/models/kserve-iris:predict", json={"instances": ROWS[:2].tolist()}
        )
        assert answer.status_code == 200
        assert len(answer.json()["predictions"]) == 2


def test_users_class_is_named_after_itself(scoring):
    assert scoring.client.get("/v1/models").json() == {"models": ["ScoringModel"]}
    answer = scoring.client.post(
        "/v1/models/ScoringModel:predict", json={"instances": [[1, 2], [3, 4]]}
    )
    assert answer.json() == {"predictions": [[2.0, 4.0], [6.0, 8.0]]}


def test_a_predict_raw_only_class_serves_seldon_and_refuses_the_others_with_501(tmp_path):
    """seldon-core serves a class with only ``predict_raw``; so does ``modelshelf serve`` (its
    worker failed to start: the protocols' core read ``predict``). V2, KServe V1 and
    ``/invocations`` need ``predict(X, names)``: 501 saying so."""
    (tmp_path / "RawOnly.py").write_text(
        "class RawOnly:\n"
        "    def predict_raw(self, request):\n"
        "        return {'data': {'ndarray': [[7]]}}\n"
    )
    with running(Launch("RawOnly", tmp_path), [MODELSHELF]) as (served,):
        seldon = httpx.post(f"{served.url}/api/v1.0/predictions", json={"data": {"ndarray": [[1]]}})
        assert seldon.json() == {"data": {"ndarray": [[7]]}}
        v2 = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}
        for path, body in (
            ("/v2/models/RawOnly/infer", v2),
            ("/v1/models/RawOnly:predict", {"instances": [[1]]}),
            ("/invocations", {"inputs": [[1]]}),
        ):
            answer = httpx.post(f"{served.url}{path}", json=body)
            assert answer.status_code == 501, (path, answer.text)
            assert "no predict(X, names), only Seldon's predict_raw" in answer.text
            if path == "/invocations":  # MLflow's own code for it
                assert answer.json()["error_code"] == "NOT_IMPLEMENTED"


# ------------------------------------------------------------------ XGBoost: outputs choose methods


@pytest.fixture(scope="module")
def xgboost_classifier(tmp_path_factory):
    import xgboost_models

    model = xgboost_models.iris_classifier()
    folder = xgboost_models.save_pickle(model, tmp_path_factory.mktemp("v2-xgboost") / "xgb")
    launch = Launch("XGBoostServer", SERVERS / "xgboostserver", seldon_parameters(model_uri=folder))
    with running(launch, [MODELSHELF]) as (service,):
        yield service, model


def test_xgboost_output_names_choose_the_method(xgboost_classifier):
    """Every XGBoost method the issue names, by output name, equal to XGBoost's own answer."""
    import xgboost as xgb

    service, model = xgboost_classifier
    booster = model.get_booster()
    matrix = xgb.DMatrix(ROWS)
    expected = {
        "predict": model.predict(ROWS),
        "predict_proba": model.predict_proba(ROWS),
        "predict_margin": booster.predict(matrix, output_margin=True),
        "predict_contribs": booster.predict(matrix, pred_contribs=True),
        "predict_leaf": booster.predict(matrix, pred_leaf=True),
    }
    client = triton_client(service)
    result = client.infer(
        "xgb",
        [triton_input("x", ROWS.astype(np.float32), "FP32", True)],
        outputs=[triton.InferRequestedOutput(name) for name in expected],
    )
    for name, value in expected.items():
        found = result.as_numpy(name)
        assert found.shape == value.shape, name
        np.testing.assert_allclose(found, value, rtol=1e-6, atol=1e-6, err_msg=name)
    proba = result.get_output("predict_proba")
    assert proba["datatype"] == "FP32"
    assert proba["parameters"]["class_names"] == ["0", "1", "2"]
    metadata = client.get_model_metadata("xgb")
    assert [o["name"] for o in metadata["outputs"]] == [*expected, "class_names"]


def test_xgboost_is_not_given_the_infinity_an_fp32_cast_would_make(xgboost_classifier):
    """XGBoost takes inf as a value (it answered 200 for 1e300 sent as FP32); what the client
    sent was finite, and out of FP32's range: a 400 naming the element, before the model."""
    service, _ = xgboost_classifier
    data = [[5.1, 3.5, 1.4, 0.2], [6.0, 1e300, 4.0, 1.0]]
    payload = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": data}]}
    answer = v2_infer(service, "xgb", payload)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == (
        "input 'x': element [1, 1] is 1e+300, out of FP32's range [-3.40282e+38, 3.40282e+38]; "
        "send a datatype that holds it (FP64)"
    )
    data[1][1] = 3.0
    assert v2_infer(service, "xgb", payload).status_code == 200


# --------------------------------------------------------------------- not ready, model failures

FLAKY_MODEL = '''
"""Ready while its flag file exists; fails on negative numbers."""
import os

import numpy as np


class FlakyModel:
    def __init__(self, flag=""):
        self.flag = flag

    @property
    def ready(self):
        return os.path.exists(self.flag)

    def predict(self, X, names=None, meta=None):
        if np.asarray(X, dtype=float).ravel()[0] < 0:
            raise RuntimeError("the model cannot score negative values")
        return np.asarray(X, dtype=float) * 2
'''


def test_not_ready_is_503_and_model_failures_500_on_every_protocol(tmp_path):
    (tmp_path / "FlakyModel.py").write_text(FLAKY_MODEL)
    flag = tmp_path / "ready"
    flag.touch()  # ready while the server starts: the start-up check needs an answer
    launch = Launch("FlakyModel", tmp_path, seldon_parameters(flag=str(flag)))
    v2 = {"inputs": [tensor("x", np.array([[1.0, 2.0]]))]}
    failing = {"inputs": [tensor("x", np.array([[-1.0, 2.0]]))]}
    with running(launch, [MODELSHELF]) as (service,):
        client = service.client
        for path, body in (
            ("/v2/models/FlakyModel/infer", failing),
            ("/v1/models/FlakyModel:predict", {"instances": [[-1.0, 2.0]]}),
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 500
            assert "the model cannot score negative values" in answer.json()["error"]
        answer = client.post("/invocations", json={"inputs": [[-1.0, 2.0]]})
        assert answer.status_code == 500
        assert answer.json()["error_code"] == "INTERNAL_ERROR"

        flag.unlink()
        assert client.get("/v2/health/live").json() == {"live": True}
        answer = client.get("/v2/health/ready")
        assert (answer.status_code, answer.json()) == (503, {"ready": False})
        answer = client.get("/v2/models/FlakyModel/ready")
        assert (answer.status_code, answer.json()) == (503, {"name": "FlakyModel", "ready": False})
        assert client.get("/v2/models/FlakyModel").json()["name"] == "FlakyModel"
        assert client.post("/v2/models/FlakyModel/infer", json=v2).status_code == 503
        assert client.get("/v1/models/FlakyModel").status_code == 503
        answer = client.post("/v1/models/FlakyModel:predict", json={"instances": [[1.0, 2.0]]})
        assert answer.status_code == 503 and "not ready" in answer.json()["error"]
        assert client.get("/ping").status_code == 503
        answer = client.post("/invocations", json={"inputs": [[1.0, 2.0]]})
        assert (answer.status_code, answer.json()["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE")

        flag.touch()
        answer = client.post("/v2/models/FlakyModel/infer", json=v2)
        assert answer.json()["outputs"][0]["data"] == [2.0, 4.0]


NAMING_MODEL = '''
"""Doubles numbers; its class_names() fails (a bug in the user's class)."""
import numpy as np


class BadNames:
    def predict(self, X, names=None, meta=None):
        return np.asarray(X, dtype=float) * 2

    def class_names(self):
        return {"a": 1}["b"]
'''


def test_a_failing_class_names_is_named_at_load_and_answers_carry_no_names(tmp_path):
    """It was a 500 on every answer. It is found at load -- one WARNING naming the class and
    the error, so its author sees it -- and answers go on, without column names."""
    (tmp_path / "BadNames.py").write_text(NAMING_MODEL)
    with running(Launch("BadNames", tmp_path), [MODELSHELF]) as (service,):
        for path, body in (
            ("/v2/models/BadNames/infer", {"inputs": [tensor("x", np.array([[1.0, 2.0]]))]}),
            ("/v1/models/BadNames:predict", {"instances": [[1.0, 2.0]]}),
        ):
            answer = service.client.post(path, json=body)
            assert answer.status_code == 200, answer.text
            assert "class_names" not in answer.text
        log = service.log()
        assert log.count("BadNames.class_names() raised KeyError: 'b' when called at load") == 1


# ------------------------------------------------------------------------- texts and transforms


@pytest.fixture(scope="module")
def text_model(sklearn_models):
    with running(sklearn_launch(sklearn_models["text"], "reviews"), [MODELSHELF]) as (service,):
        yield service, joblib.load(sklearn_models["text"] / "model.pkl")


@pytest.mark.parametrize("content_type", [None, "str"])
def test_texts_as_bytes_reach_a_text_pipeline(text_model, content_type):
    from models import TEXTS

    service, model = text_model
    metadata = service.client.get("/v2/models/reviews").json()
    assert metadata["inputs"][0]["datatype"] == "BYTES"
    request: dict = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    if content_type:
        request["parameters"] = {"content_type": content_type}
    answer = v2_infer(service, "reviews", request)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["predict"]["data"] == list(model.predict(TEXTS))
    np.testing.assert_allclose(
        np.reshape(outputs["predict_proba"]["data"], outputs["predict_proba"]["shape"]),
        model.predict_proba(TEXTS),
        rtol=1e-12,
    )
    v1 = service.client.post("/v1/models/reviews:predict", json={"instances": TEXTS})
    assert v1.json() == {"predictions": model.predict_proba(TEXTS).tolist()}


def test_a_scalers_transform_names_its_columns(sklearn_models):
    launch = sklearn_launch(sklearn_models["scaler"], "scaler")
    scaler = joblib.load(sklearn_models["scaler"] / "model.joblib")
    with running(launch, [MODELSHELF]) as (service,):
        answer = v2_infer(service, "scaler", {"inputs": [tensor("x", ROWS)]})
        (output,) = answer.json()["outputs"]
        assert output["name"] == "transform"
        assert output["parameters"]["class_names"] == list(scaler.get_feature_names_out())
        np.testing.assert_allclose(
            np.reshape(output["data"], output["shape"]), scaler.transform(ROWS), rtol=1e-12
        )


def test_a_users_custom_metrics_are_published_for_v2_requests(scoring):
    """ScoringModel's metrics() reach the metrics port after V2 calls, as after Seldon ones."""
    from microservice import wait_for_text

    for _ in range(3):
        answer = v2_infer(scoring, "ScoringModel", {"inputs": [tensor("x", np.ones((1, 2)))]})
        assert answer.status_code == 200
    url = f"http://127.0.0.1:{scoring.metrics_port}/metrics"
    wait_for_text(lambda: httpx.get(url).text, "scoring_requests_total")


@pytest.mark.parametrize("padding", range(8))
def test_binary_inputs_after_a_header_of_any_length_reach_xgboost(xgboost_classifier, padding):
    """The tensor's bytes start wherever the JSON header ends: XGBoost refuses a misaligned
    buffer, so every header length must give XGBoost's own answer (tritonclient's often do)."""
    service, model = xgboost_classifier
    rows = np.tile(ROWS, (40, 1))  # past the tree walk's few rows: XGBoost's own call
    raw = rows.astype("<f8").tobytes()
    header = json.dumps(
        {
            "id": "x" * padding,
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": list(rows.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "predict_proba"}],
        }
    ).encode()
    answer = httpx.post(
        f"{service.url}/v2/models/xgb/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    found = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    np.testing.assert_allclose(found, model.predict_proba(rows), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("datatype", "data", "words"),
    [
        (
            "INT32",
            [5.9, 3.9, 1.9, 0.9],
            "INT32 data must be integers in INT32's range, got 5.9 at element [0, 0]",
        ),
        ("UINT8", [300, 1, 1, 1], "element [0, 0] is 300, out of UINT8's range [0, 255]"),
        ("INT8", [1, -500, 1, 1], "element [0, 1] is -500, out of INT8's range [-128, 127]"),
        ("BOOL", ["false", "false", "false", "false"], "BOOL data must be true or false"),
        ("BOOL", [7, 0, 1, 1], "BOOL data must be true or false, got 7"),
    ],
)
def test_json_values_the_datatype_cannot_hold_exactly_are_400s(iris, datatype, data, words):
    """numpy's cast would truncate, wrap or read "false" as true: a 400 names the value."""
    service, _ = iris
    payload = {"inputs": [{"name": "x", "datatype": datatype, "shape": [1, 4], "data": data}]}
    answer = v2_infer(service, "flowers", payload)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    good = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 4], "data": [5, 3, 1, 0]}]}
    assert v2_infer(service, "flowers", good).status_code == 200


@pytest.mark.parametrize("size", ["32", -8, 1.5])
def test_a_binary_data_size_that_is_no_byte_count_says_so(iris, size):
    service, _ = iris
    raw = ROWS[:1].astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    answer = httpx.post(
        f"{service.url}/v2/models/flowers/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 400, answer.text
    assert (
        f"binary_data_size must be a non-negative integer, got {size!r}" in answer.json()["error"]
    )


@pytest.mark.parametrize(
    ("where", "value"),
    [("output", "false"), ("output", 1), ("request", "yes"), ("request", 0)],
)
def test_a_binary_flag_that_is_no_boolean_says_so(iris, where, value):
    """``"binary_data": "false"`` (a string, so truthy) was answered in binary."""
    service, _ = iris
    payload: dict = {"inputs": [tensor("x", ROWS[:1])]}
    if where == "output":
        payload["outputs"] = [{"name": "predict", "parameters": {"binary_data": value}}]
        name = "binary_data"
    else:
        payload["parameters"] = {"binary_data_output": value}
        name = "binary_data_output"
    answer = v2_infer(service, "flowers", payload)
    assert answer.status_code == 400, answer.text
    expected = f"parameter {name} must be true or false (a JSON boolean), got {value!r}"
    assert expected in answer.json()["error"]
