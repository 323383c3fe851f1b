"""An MLflow model whose signature has a ``binary`` column (image bytes) beside a ``string`` one,
served by ``modelshelf serve``: the binary column reaches the model as ``bytes`` -- raw PNG bytes,
not UTF-8 -- on every protocol, the string column as text; the answers are MLflow's pyfunc's
(called in this process on the same bytes) and, on ``/invocations``, ``mlflow models serve``'s.

How each protocol carries the bytes: V2 JSON ``data`` and every other JSON (Seldon ``jsonData``
and ``ndarray``, ``/invocations``) as base64 text, as MLflow's scoring server and MLServer's MLflow
runtime read a binary column; V2's binary tensor extension and gRPC (``bytes_contents``, and
tritonclient's ``raw_input_contents``) as the bytes themselves; Seldon ``binData`` as the one
binary column's value.
"""

from __future__ import annotations

import base64
import json

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from frontends import MODELSHELF, SELDON, Launch, running
from test_protocols_mlflow import beside_mlflow
from tritonclient.grpc import service_pb2, service_pb2_grpc

from microservice import SERVERS, seldon_parameters
from mlflow_corpus import written_module

pytestmark = pytest.mark.timeout(600)

#: A PNG's signature and header, then bytes that are no UTF-8 (0x89, 0xff…): over 57 bytes, so
#: that MLflow's own client (``base64.encodebytes``) splits its base64 with newlines.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))[::-3] + b"\xff\xfe\x00"
IMAGES = [PNG, b"plain ascii bytes", PNG[::-1]]
CAPTIONS = ["a cat", "12", "ünïcode"]

MODEL_CODE = '''
import hashlib

import pandas as pd
from mlflow.pyfunc import PythonModel


def described(value):
    if isinstance(value, bytes):
        return f"bytes {len(value)} {hashlib.sha256(value).hexdigest()[:16]}"
    return f"{type(value).__name__} {value!r}"


class ImageDigest(PythonModel):
    """Says what it was given: bytes (their length and digest) or something else."""

    def predict(self, context, model_input, params=None):
        found = {"image": [described(v) for v in model_input["image"]]}
        if "caption" in model_input:
            found["caption"] = [described(v) for v in model_input["caption"]]
        return pd.DataFrame(found)
'''


def save_models(root):
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    binary_model_code = written_module(root, "binary_model_code", MODEL_CODE)
    folders = {}
    for name, columns in {
        "captioned": [ColSpec("binary", "image"), ColSpec("string", "caption")],
        "image": [ColSpec("binary", "image")],
    }.items():
        folders[name] = root / name
        mlflow.pyfunc.save_model(
            folders[name],
            python_model=binary_model_code.ImageDigest(),
            code_paths=[str(root / "binary_model_code.py")],
            signature=ModelSignature(inputs=Schema(columns)),
            pip_requirements=["pandas"],
        )
    return folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_models(tmp_path_factory.mktemp("mlflow-binary"))


def expected_of(folder, frame: pd.DataFrame) -> list[list[str]]:
    """MLflow's pyfunc in this process, on the same bytes."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(folder)).predict(frame).to_numpy().tolist()


@pytest.fixture(scope="module")
def served(folders):
    """Both models behind ``modelshelf serve`` with gRPC, and pyfunc's answers."""
    launches = [
        Launch(
            "MLFlowServer",
            SERVERS / "mlflowserver",
            seldon_parameters(model_uri=folders[name]),
            grpc=True,
            extra_args=("--model-name", name),
        )
        for name in ("captioned", "image")
    ]
    expected = {
        "captioned": expected_of(
            folders["captioned"], pd.DataFrame({"image": IMAGES, "caption": CAPTIONS})
        ),
        "image": expected_of(folders["image"], pd.DataFrame({"image": IMAGES})),
    }
    with (
        running(launches[0], [MODELSHELF], timeout=180) as (captioned,),
        running(launches[1], [MODELSHELF], timeout=180) as (image,),
    ):
        yield {"captioned": captioned, "image": image}, expected


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def texts(array: np.ndarray) -> list:
    """A BYTES answer's rows as text (tritonclient gives bytes)."""
    return [[v.decode() for v in row] for row in array.tolist()]


def rows_of(output: dict) -> list:
    return np.reshape(output["data"], output["shape"]).tolist()


def test_the_model_is_given_bytes_and_text_by_pyfunc(served):
    """The reference itself: pyfunc hands bytes and text through (else the test proves nothing)."""
    _, expected = served
    assert expected["captioned"][0][0].startswith(f"bytes {len(PNG)} ")
    assert expected["captioned"][1][1] == "str '12'"


def test_v2_json_data_is_base64_and_the_binary_extension_raw(served):
    services, expected = served
    service = services["captioned"]
    inputs = [
        {"name": "image", "datatype": "BYTES", "shape": [3], "data": [b64(v) for v in IMAGES]},
        {"name": "caption", "datatype": "BYTES", "shape": [3], "data": CAPTIONS},
    ]
    answer = service.client.post("/v2/models/captioned/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    assert rows_of(answer.json()["outputs"][0]) == expected["captioned"]
    client = triton_http.InferenceServerClient(f"127.0.0.1:{service.http_port}")
    try:
        tensors = []
        for name, values in (("image", IMAGES), ("caption", CAPTIONS)):
            tensor = triton_http.InferInput(name, [3], "BYTES")
            array = np.array([v if isinstance(v, bytes) else v.encode() for v in values], object)
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        result = client.infer("captioned", tensors)
    finally:
        client.close()
    assert texts(result.as_numpy("predict")) == expected["captioned"]


def test_v2_one_input_of_a_one_column_model(served):
    """The one-column model, one input (the ``np`` codec), shapes [N] and [N, 1]."""
    services, expected = served
    service = services["image"]
    for shape in ([3], [3, 1]):
        tensor = {"name": "image", "datatype": "BYTES", "shape": shape}
        answer = service.client.post(
            "/v2/models/image/infer",
            json={"inputs": [{**tensor, "data": [b64(v) for v in IMAGES]}]},
        )
        assert answer.status_code == 200, (shape, answer.text)
        assert rows_of(answer.json()["outputs"][0]) == expected["image"], shape


def test_v2_grpc_bytes_contents_and_raw_contents_are_the_bytes(served):
    services, expected = served
    service = services["captioned"]
    address = f"127.0.0.1:{service.grpc_port}"
    channel = grpc.insecure_channel(address)
    with channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(
            model_name="captioned",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(
                    name=name,
                    datatype="BYTES",
                    shape=[3],
                    contents=service_pb2.InferTensorContents(bytes_contents=values),
                )
                for name, values in (
                    ("image", IMAGES),
                    ("caption", [c.encode() for c in CAPTIONS]),
                )
            ],
        )
        response = stub.ModelInfer(request)
    (output,) = response.outputs
    from tritonclient.utils import deserialize_bytes_tensor

    found = deserialize_bytes_tensor(response.raw_output_contents[0])
    assert texts(found.reshape(list(output.shape))) == expected["captioned"]
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{services['image'].grpc_port}")
    try:  # tritonclient sends BYTES as raw_input_contents
        tensor = triton_grpc.InferInput("image", [3, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[v] for v in IMAGES], dtype=object))
        result = client.infer("image", [tensor])
    finally:
        client.close()
    assert texts(result.as_numpy("predict")) == expected["image"]


def seldon_answers_as_pyfunc(services: dict, expected: dict) -> None:
    """``binData``: the one binary column's bytes; ``jsonData`` records and ``names`` +
    ``ndarray`` rows: base64 text, as MLflow's JSON. The string column stays text."""
    answer = services["image"].client.post("/api/v1.0/predictions", json={"binData": b64(PNG)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["ndarray"] == expected["image"][:1]
    records = [{"image": b64(i), "caption": c} for i, c in zip(IMAGES, CAPTIONS, strict=True)]
    rows = [[r["image"], r["caption"]] for r in records]
    for payload in (
        {"jsonData": records},
        {"data": {"names": ["image", "caption"], "ndarray": rows}},
    ):
        answer = services["captioned"].client.post("/api/v1.0/predictions", json=payload)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["ndarray"] == expected["captioned"]


def test_seldon_bindata_jsondata_and_ndarray(served):
    services, expected = served
    seldon_answers_as_pyfunc(services, expected)


def test_seldon_on_seldon_cores_own_server(served, folders):
    """The same Seldon requests through ``seldon-core-microservice``."""
    _, expected = served
    launches = {
        name: Launch("MLFlowServer", SERVERS / "mlflowserver", seldon_parameters(model_uri=folder))
        for name, folder in folders.items()
    }
    with (
        running(launches["captioned"], [SELDON], timeout=180) as (captioned,),
        running(launches["image"], [SELDON], timeout=180) as (image,),
    ):
        seldon_answers_as_pyfunc({"captioned": captioned, "image": image}, expected)


def test_invocations_answers_as_mlflow_models_serve(folders):
    """The frame as MLflow's own JSON encoder writes it (base64 split by newlines),
    ``dataframe_split`` and records: ``mlflow models serve`` and ours answer the same,
    pyfunc's answer."""
    from mlflow.utils.proto_json_utils import NumpyEncoder

    frame = pd.DataFrame({"image": IMAGES, "caption": CAPTIONS})
    expected = expected_of(folders["captioned"], frame)
    by_mlflow = json.dumps({"dataframe_split": frame.to_dict(orient="split")}, cls=NumpyEncoder)
    assert "\\n" in by_mlflow  # encodebytes' line breaks, inside the JSON strings
    split = {"columns": ["image", "caption"], "data": [[b64(i), c] for i, c in frame.values]}
    records = [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]
    headers = {"content-type": "application/json"}
    with beside_mlflow(folders["captioned"]) as (url, service):
        for payload in (by_mlflow, json.dumps({"dataframe_split": split}),
                        json.dumps({"dataframe_records": records})):  # fmt: skip
            theirs = httpx.post(f"{url}/invocations", content=payload, headers=headers, timeout=60)
            answer = service.client.post("/invocations", content=payload, headers=headers)
            assert theirs.status_code == answer.status_code == 200, (answer.text, theirs.text)
            assert answer.json() == theirs.json()
            assert [list(r.values()) for r in answer.json()["predictions"]] == expected


def test_v2_metadata_names_the_binary_column(served):
    services, _ = served
    metadata = services["captioned"].client.get("/v2/models/captioned").json()
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        ("image", "BYTES"),
        ("caption", "BYTES"),
    ]
