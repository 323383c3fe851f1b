"""An MLflow PythonModel whose ``predict`` answers a DataFrame, its signature naming the output
columns (``score: double``, ``above: boolean``, ``label: string``, ``count: long``), served by
``modelshelf serve``: V2 answers one typed tensor a column -- REST JSON, the binary extension
and gRPC, asked with tritonclient -- each equal to MLflow's pyfunc's answer in this process, and
the V2 metadata lists the columns with their datatypes. Requests sent at once are each answered
as alone. KServe V1 keeps its rows and ``/invocations`` its records, as ``mlflow models
serve`` answers them.

Without the columns of the signature, V2 sent the whole frame as one ``predict`` tensor of text
(``[[b'2.0', b'True', …]]``) and its metadata said ``predict FP64 [-1]``.
"""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from frontends import MODELSHELF, Launch, batch_sizes, released_together, running, wait_for
from test_protocols_mlflow import beside_mlflow

from microservice import SERVERS, seldon_parameters
from mlflow_corpus import written_module

pytestmark = pytest.mark.timeout(600)

MODEL_CODE = '''
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class Scores(PythonModel):
    """Each row's sum as its score, whether that is above 2, a label and the rounded score."""

    def predict(self, context, model_input, params=None):
        score = np.asarray(model_input, dtype=float).sum(axis=1)
        return pd.DataFrame(
            {
                "score": score,
                "above": score > 2,
                "label": np.where(score > 2, "high", "low").astype(object),
                "count": np.rint(score).astype(np.int64),
            }
        )
'''
#: The output signature's columns and the V2 datatype each is answered with.
COLUMNS = {"score": "FP64", "above": "BOOL", "label": "BYTES", "count": "INT64"}
ROWS = np.array([[1.0, 0.5], [2.5, 0.25], [-1.0, 4.0]])
#: Batching: as in test_batching, a wait long enough that requests sent at once would join.
BATCHING_ENV = {"MODELSHELF_MAX_BATCH_TIME_MS": "200", "MODELSHELF_MAX_BATCH_SIZE": "64"}


def save_models(root):
    """The model with two input columns (``scores``) and with one tensor of rows
    (``scores_tensor``: a V2 request of one 2-D numeric tensor, which the batcher may join)."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    frame_model_code = written_module(root, "frame_model_code", MODEL_CODE)
    kinds = {"FP64": "double", "BOOL": "boolean", "BYTES": "string", "INT64": "long"}
    outputs = Schema([ColSpec(kinds[datatype], name) for name, datatype in COLUMNS.items()])
    inputs = {
        "scores": Schema([ColSpec("double", "a"), ColSpec("double", "b")]),
        "scores_tensor": Schema([TensorSpec(np.dtype(np.float64), (-1, 2))]),
    }
    folders = {}
    for name, schema in inputs.items():
        folders[name] = root / name
        mlflow.pyfunc.save_model(
            folders[name],
            python_model=frame_model_code.Scores(),
            code_paths=[str(root / "frame_model_code.py")],
            signature=ModelSignature(inputs=schema, outputs=outputs),
            pip_requirements=["pandas"],
        )
    return folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_models(tmp_path_factory.mktemp("mlflow-frames"))


def pyfunc_answer(folder, model_input) -> pd.DataFrame:
    """MLflow's pyfunc in this process."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(folder)).predict(model_input)


def scores_launch(folder) -> Launch:
    """MLFlowServer on ``folder`` with gRPC, the model named ``scores``."""
    return Launch(
        "MLFlowServer",
        SERVERS / "mlflowserver",
        seldon_parameters(model_uri=folder),
        grpc=True,
        extra_args=("--model-name", "scores"),
    )


@pytest.fixture(scope="module")
def served(folders):
    launch = scores_launch(folders["scores"])
    expected = pyfunc_answer(folders["scores"], pd.DataFrame(ROWS, columns=["a", "b"]))
    with running(launch, [MODELSHELF], timeout=180) as (service,):
        yield service, expected


def column_inputs(module, binary: bool) -> list:
    found = []
    for at, name in enumerate(("a", "b")):
        tensor = module.InferInput(name, [len(ROWS)], "FP64")
        if module is triton_http:
            tensor.set_data_from_numpy(ROWS[:, at].copy(), binary_data=binary)
        else:
            tensor.set_data_from_numpy(ROWS[:, at].copy())
        found.append(tensor)
    return found


def assert_columns_of(result, expected: pd.DataFrame, outputs: list[dict]) -> None:
    """Each column one output, in the frame's order, typed, [N, 1], its values pyfunc's."""
    assert [(o["name"], o["datatype"], o["shape"]) for o in outputs] == [
        (name, datatype, [len(expected), 1]) for name, datatype in COLUMNS.items()
    ]
    for name in COLUMNS:
        found = result.as_numpy(name)
        assert found.shape == (len(expected), 1), name
        want = expected[name].to_numpy()
        if want.dtype == object:
            texts = [v.decode() if type(v) is bytes else v for v in found.ravel().tolist()]
            assert texts == want.tolist(), name  # JSON gives str, binary and gRPC bytes
        else:
            assert found.dtype == want.dtype, name
            assert found.ravel().tobytes() == want.tobytes(), name


def rows_of(frame: pd.DataFrame) -> list[list]:
    """The frame's rows as Python values (its floats exactly)."""
    return frame.to_dict(orient="split")["data"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_rest_answers_one_typed_tensor_a_column(served, binary):
    service, expected = served
    client = triton_http.InferenceServerClient(f"127.0.0.1:{service.http_port}")
    try:
        wanted = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in COLUMNS]
        result = client.infer("scores", column_inputs(triton_http, binary), outputs=wanted)
        unasked = client.infer("scores", column_inputs(triton_http, binary))  # all, binary
    finally:
        client.close()
    response = result.get_response()
    assert_columns_of(result, expected, response["outputs"])
    assert_columns_of(unasked, expected, unasked.get_response()["outputs"])
    assert response["parameters"] == {"content_type": "pd"}  # as MLServer's pandas codec
    label = next(o for o in response["outputs"] if o["name"] == "label")
    assert label["parameters"]["content_type"] == "str"
    if not binary:
        assert label["data"] == expected["label"].tolist()
        above = next(o for o in response["outputs"] if o["name"] == "above")
        assert above["data"] == expected["above"].tolist()  # JSON booleans, not text


def test_v2_rest_outputs_choose_columns(served):
    """Outputs naming some of the columns get those, in the order asked."""
    service, expected = served
    client = triton_http.InferenceServerClient(f"127.0.0.1:{service.http_port}")
    try:
        wanted = [triton_http.InferRequestedOutput(n) for n in ("count", "above")]
        result = client.infer("scores", column_inputs(triton_http, False), outputs=wanted)
    finally:
        client.close()
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["count", "above"]
    assert result.as_numpy("count").ravel().tolist() == expected["count"].tolist()


def test_v2_grpc_answers_one_typed_tensor_a_column(served):
    service, expected = served
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{service.grpc_port}")
    try:
        result = client.infer("scores", column_inputs(triton_grpc, False))
    finally:
        client.close()
    response = result.get_response(as_json=True)
    outputs = [
        {"name": o["name"], "datatype": o["datatype"], "shape": [int(d) for d in o["shape"]]}
        for o in response["outputs"]
    ]
    assert_columns_of(result, expected, outputs)
    assert response["parameters"]["content_type"]["string_param"] == "pd"


def test_v2_metadata_lists_the_signature_columns(served):
    service, _ = served
    http = triton_http.InferenceServerClient(f"127.0.0.1:{service.http_port}")
    grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{service.grpc_port}")
    try:
        by_http = http.get_model_metadata("scores")
        by_grpc = grpc.get_model_metadata("scores", as_json=True)
    finally:
        http.close()
        grpc.close()
    wanted = [(name, datatype, [-1, 1]) for name, datatype in COLUMNS.items()]
    assert [(o["name"], o["datatype"], o["shape"]) for o in by_http["outputs"]][:4] == wanted
    found = [(o["name"], o["datatype"], [int(d) for d in o["shape"]]) for o in by_grpc["outputs"]]
    assert found[:4] == wanted
    assert [(i["name"], i["datatype"]) for i in by_http["inputs"]] == [("a", "FP64"), ("b", "FP64")]


def test_kserve_v1_keeps_its_rows(served):
    """KServe V1 answers rows, as it did: each row the frame's values."""
    service, expected = served
    answer = service.client.post("/v1/models/scores:predict", json={"instances": ROWS.tolist()})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == rows_of(expected)


def test_invocations_answer_records_as_mlflow_models_serve(folders):
    frame = pd.DataFrame(ROWS, columns=["a", "b"])
    expected = pyfunc_answer(folders["scores"], frame)
    payload = {"dataframe_split": frame.to_dict(orient="split")}
    with beside_mlflow(folders["scores"]) as (url, service):
        theirs = httpx.post(f"{url}/invocations", json=payload, timeout=60)
        ours = service.client.post("/invocations", json=payload)
    assert theirs.status_code == ours.status_code == 200, (ours.text, theirs.text)
    assert ours.json() == theirs.json()
    assert ours.json()["predictions"] == expected.to_dict(orient="records")


def test_concurrent_v2_requests_are_each_answered_as_alone(folders):
    """16 clients at once, each 1-3 rows of one 2-D tensor (what the batcher joins), over V2
    REST and gRPC: every answer is its own rows' frame, column by column; Seldon requests to
    the same model still join (batching stays on)."""
    launch = scores_launch(folders["scores_tensor"])
    rng = np.random.default_rng(11)
    requests = [rng.normal(1, 2, size=(1 + i % 3, 2)).round(6) for i in range(16)]
    expected = [pyfunc_answer(folders["scores_tensor"], rows) for rows in requests]
    with running(launch, [MODELSHELF], env=BATCHING_ENV, timeout=180) as (service,):
        for _ in range(3):
            found = _at_once(service.http_port, requests)
            for result, want in zip(found, expected, strict=True):
                outputs = result.get_response()["outputs"]
                assert_columns_of(result, want, outputs)
            found = _at_once(service.grpc_port, requests, triton_grpc)
            for result, want in zip(found, expected, strict=True):
                outputs = [
                    {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
                    for o in result.get_response().outputs
                ]
                assert_columns_of(result, want, outputs)
        seldon = [{"data": {"ndarray": rows.tolist()}} for rows in requests]
        answers = _seldon_at_once(service.url, seldon)
        assert [a.status_code for a in answers] == [200] * len(seldon)
        for answer, want in zip(answers, expected, strict=True):
            assert answer.json()["data"]["ndarray"] == rows_of(want)
        assert wait_for(lambda: batch_sizes(service)[1] > 0)  # the Seldon requests joined
        assert "adaptive batching is off" not in service.log()


def _at_once(port: int, requests: list[np.ndarray], module=triton_http) -> list:
    """Each request from its own tritonclient (HTTP: JSON and binary in turn; or gRPC),
    released together."""

    def send(index: int, barrier: threading.Barrier) -> object:
        rows = requests[index]
        binary = bool(index % 2)
        tensor = module.InferInput("rows", list(rows.shape), "FP64")
        if module is triton_http:
            client = module.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)
            tensor.set_data_from_numpy(rows, binary_data=binary)
            wanted = [module.InferRequestedOutput(n, binary_data=binary) for n in COLUMNS]
        else:
            client = module.InferenceServerClient(f"127.0.0.1:{port}")
            tensor.set_data_from_numpy(rows)
            wanted = [module.InferRequestedOutput(n) for n in COLUMNS]
        try:
            barrier.wait()
            return client.infer("scores", [tensor], outputs=wanted)
        finally:
            client.close()

    return released_together(len(requests), send)


def _seldon_at_once(url: str, bodies: list[dict]) -> list[httpx.Response]:
    def send(index: int, barrier: threading.Barrier) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            return client.post("/api/v1.0/predictions", json=bodies[index])

    return released_together(len(bodies), send)
