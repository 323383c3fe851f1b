"""SKLearnServer under a real seldon-core-microservice, over HTTP and gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

from microservice import (
    BIN,
    SERVERS,
    free_port,
    run_to_exit,
    running_microservice,
    seldon_parameters,
)
from models import IRIS_COLUMNS, assert_same_predictions, rows

SERVER = "SKLearnServer"


def ndarray(values) -> dict:
    return {"data": {"ndarray": np.asarray(values).tolist()}}


def tensor(body: dict) -> np.ndarray:
    """The ``tensor`` of a response (Seldon answers jsonData and strData requests with one)."""
    found = body["data"]["tensor"]
    return np.array(found["values"]).reshape(found["shape"])


@pytest.fixture(scope="module")
def iris(sklearn_models):
    with running_microservice(SERVER, seldon_parameters(model_uri=sklearn_models["iris"])) as svc:
        yield svc


@pytest.fixture(scope="module")
def iris_model(sklearn_models):
    return joblib.load(sklearn_models["iris"] / "model.joblib")


def test_ndarray_prediction_equals_in_process_and_names_classes(iris, iris_model):
    X = rows(3)
    response = iris.post("/api/v1.0/predictions", ndarray(X))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert_same_predictions(np.array(data["ndarray"]), iris_model.predict_proba(X))
    assert data["names"] == ["setosa", "versicolor", "virginica"]


def test_tensor_prediction(iris, iris_model):
    X = rows(2)
    payload = {"data": {"tensor": {"shape": list(X.shape), "values": X.ravel().tolist()}}}
    data = iris.post("/api/v1.0/predictions", payload).json()["data"]
    assert data["tensor"]["shape"] == [2, 3]
    assert_same_predictions(
        np.array(data["tensor"]["values"]).reshape(2, 3), iris_model.predict_proba(X)
    )


def test_predict_endpoint_takes_the_form_encoded_json_field(iris, iris_model):
    X = rows(1)
    response = iris.client.post("/predict", data={"json": json.dumps(ndarray(X))})
    assert response.status_code == 200, response.text
    assert_same_predictions(
        np.array(response.json()["data"]["ndarray"]), iris_model.predict_proba(X)
    )


def test_health_and_metadata_derived_from_the_model(iris):
    assert iris.get("/health/status").status_code == 200
    assert iris.get("/health/ping").status_code == 200
    meta = iris.get("/api/v1.0/metadata").json()
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"messagetype": "ndarray", "schema": {"shape": [-1, 4]}}]
    assert meta["outputs"][0]["schema"]["names"] == ["setosa", "versicolor", "virginica"]
    assert meta["custom"]["scikit-learn version"] == __import__("sklearn").__version__
    assert meta["custom"]["numpy version"] == np.__version__
    assert meta["custom"]["estimator"] == "LogisticRegression"
    assert meta["custom"]["fast path"].startswith("the linear model's product")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldon_client(iris, iris_model, transport):
    X = rows(2)
    port = iris.http_port if transport == "rest" else iris.grpc_port
    client = SeldonClient(microservice_endpoint=f"127.0.0.1:{port}")
    result = client.microservice(data=X, method="predict", transport=transport)
    assert result.success, result.msg
    body = json_format.MessageToDict(result.response)
    assert body["data"]["names"] == ["setosa", "versicolor", "virginica"]
    assert_same_predictions(
        np.array(body["data"]["tensor"]["values"]).reshape(2, 3), iris_model.predict_proba(X)
    )


BAD_INPUTS = [
    ("not json", "not json at all", "JSON"),  # str payloads are sent as they are
    ("wrong feature count", ndarray([[1.0, 2.0, 3.0]]), "expected 4 features per row, got 3"),
    ("strings", ndarray([["a", "b", "c", "d"]]), "numbers"),
    ("empty", {"data": {"ndarray": []}}, "shape [0]"),
    ("empty rows", {"data": {"ndarray": [[]]}}, "expected 4 features per row, got 0"),
    ("ragged", {"data": {"ndarray": [[1, 2, 3, 4], [1]]}}, "could not be read"),
    ("NaN", '{"data": {"ndarray": [[NaN, 1, 2, 3]]}}', "NaN"),
    ("null", {"data": {"ndarray": [[None, 1, 2, 3]]}}, "NaN"),
    ("infinity", '{"data": {"ndarray": [[1, Infinity, 2, 3]]}}', "infinity"),
    ("bad tensor", {"data": {"tensor": {"shape": [2, 4], "values": [1, 2]}}}, "reshape"),
    ("names of the wrong length", {"data": {"names": ["a"], "ndarray": [[1, 2, 3, 4]]}}, "names"),
]


@pytest.mark.parametrize(("case", "payload", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_4xx_with_a_message_and_the_server_keeps_serving(
    iris, case, payload, message
):
    if isinstance(payload, str):
        response = iris.client.post(
            "/api/v1.0/predictions", content=payload, headers={"Content-Type": "application/json"}
        )
    else:
        response = iris.post("/api/v1.0/predictions", payload)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert message in response.json()["status"]["info"], response.text
    assert iris.post("/api/v1.0/predictions", ndarray(rows(1))).status_code == 200


def test_dataframe_model_reorders_named_columns(sklearn_models):
    model = joblib.load(sklearn_models["iris_frame"] / "model.joblib")
    order = [2, 0, 3, 1]
    names = [IRIS_COLUMNS[i] for i in order]
    X = rows(3)
    with running_microservice(
        SERVER, seldon_parameters(model_uri=sklearn_models["iris_frame"])
    ) as svc:
        payload = {"data": {"names": names, "ndarray": X[:, order].tolist()}}
        body = svc.post("/api/v1.0/predictions", payload).json()
        expected = model.predict_proba(pd.DataFrame(X, columns=IRIS_COLUMNS))
        assert_same_predictions(np.array(body["data"]["ndarray"]), expected)

        records = [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in X.tolist()]
        body = svc.post("/api/v1.0/predictions", {"jsonData": records}).json()
        assert_same_predictions(tensor(body), expected)
        columns = {name: X[:, i].tolist() for i, name in enumerate(IRIS_COLUMNS)}
        body = svc.post("/api/v1.0/predictions", {"jsonData": columns}).json()
        assert_same_predictions(tensor(body), expected)

        wrong = {"data": {"names": ["a", "b", "c", "d"], "ndarray": X.tolist()}}
        response = svc.post("/api/v1.0/predictions", wrong)
        assert response.status_code == 400
        assert "missing ['sepal_length'" in response.json()["status"]["info"]
        meta = svc.get("/api/v1.0/metadata").json()
        assert meta["inputs"][0]["schema"]["names"] == IRIS_COLUMNS


def test_text_pipeline_takes_strings(sklearn_models):
    model = joblib.load(sklearn_models["text"] / "model.pkl")
    texts = ["really great", "bad and awful"]
    with running_microservice(SERVER, seldon_parameters(model_uri=sklearn_models["text"])) as svc:
        body = svc.post("/api/v1.0/predictions", {"data": {"ndarray": texts}}).json()
        assert_same_predictions(np.array(body["data"]["ndarray"]), model.predict_proba(texts))
        assert body["data"]["names"] == ["neg", "pos"]
        body = svc.post("/api/v1.0/predictions", {"strData": texts[0]}).json()
        assert_same_predictions(tensor(body), model.predict_proba(texts[:1]))
        response = svc.post("/api/v1.0/predictions", {"data": {"ndarray": [[1, 2], [3, 4]]}})
        assert response.status_code == 400, response.text


def test_regressor_with_method_predict(sklearn_models):
    model = joblib.load(sklearn_models["regressor"] / "model.joblib")
    X = model.coef_.reshape(1, -1) * 0.1
    params = seldon_parameters(model_uri=sklearn_models["regressor"], method="predict")
    with running_microservice(SERVER, params) as svc:
        body = svc.post("/api/v1.0/predictions", ndarray(X)).json()
        assert_same_predictions(np.array(body["data"]["ndarray"]), model.predict(X))


def test_decision_function(sklearn_models):
    model = joblib.load(sklearn_models["svc"] / "model.joblib")
    X = rows(2)
    params = seldon_parameters(model_uri=sklearn_models["svc"], method="decision_function")
    with running_microservice(SERVER, params) as svc:
        body = svc.post("/api/v1.0/predictions", ndarray(X)).json()
        assert_same_predictions(np.array(body["data"]["ndarray"]), model.decision_function(X))
        assert body["data"]["names"] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize("service_type", ["TRANSFORMER", "OUTPUT_TRANSFORMER"])
def test_scaler_serves_as_a_transformer(sklearn_models, service_type):
    scaler = joblib.load(sklearn_models["scaler"] / "model.joblib")
    X = rows(2)
    path = "/transform-input" if service_type == "TRANSFORMER" else "/transform-output"
    params = seldon_parameters(model_uri=sklearn_models["scaler"])
    # seldon-core-microservice has no OUTPUT_TRANSFORMER service type; every endpoint is served.
    cli_type = "TRANSFORMER" if service_type == "TRANSFORMER" else "MODEL"
    with running_microservice(SERVER, params, service_type=cli_type) as svc:
        body = svc.post(path, ndarray(X)).json()
        assert_same_predictions(np.array(body["data"]["ndarray"]), scaler.transform(X))
        assert body["data"]["names"] == ["x0", "x1", "x2", "x3"]


def test_fast_path_false_serves_scikit_learn(sklearn_models, iris_model):
    params = seldon_parameters(model_uri=sklearn_models["iris"], fast_path=False)
    with running_microservice(SERVER, params) as svc:
        X = rows(3)
        body = svc.post("/api/v1.0/predictions", ndarray(X)).json()
        assert_same_predictions(np.array(body["data"]["ndarray"]), iris_model.predict_proba(X))
        meta = svc.get("/api/v1.0/metadata").json()
        assert meta["custom"]["fast path"] == "off (fast_path=false)"
        response = svc.client.post(
            "/api/v1.0/predictions",
            content='{"data": {"ndarray": [[NaN, 1, 2, 3]]}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert "NaN" in response.json()["status"]["info"]
        assert "fast_path=false" in svc.log()


def test_fast_path_turned_off_by_the_env_var_names_the_env_var(sklearn_models):
    params = seldon_parameters(model_uri=sklearn_models["iris"])
    env = {"MODELSHELF_FAST_PATH": "false"}
    with running_microservice(SERVER, params, env=env) as svc:
        meta = svc.get("/api/v1.0/metadata").json()
        assert meta["custom"]["fast path"] == "off (MODELSHELF_FAST_PATH=false)"
        assert "framework's own calls (MODELSHELF_FAST_PATH=false)" in svc.log()


def test_transform_on_a_model_without_transform_says_so(iris):
    response = iris.post("/transform-input", ndarray(rows(1)))
    assert response.status_code == 500, response.text
    assert "LogisticRegression has no transform method" in response.json()["status"]["info"]
    assert iris.post("/api/v1.0/predictions", ndarray(rows(1))).status_code == 200


def test_metadata_yaml_in_the_model_folder_wins(sklearn_models, tmp_path):
    folder = tmp_path / "with-metadata"
    folder.mkdir()
    (folder / "model.joblib").write_bytes((sklearn_models["iris"] / "model.joblib").read_bytes())
    (folder / "metadata.yaml").write_text(
        "name: my-iris\nversions: [v7]\ninputs:\n- messagetype: ndarray\n"
        "  schema: {names: [a, b, c, d], shape: [4]}\n"
    )
    with running_microservice(SERVER, seldon_parameters(model_uri=folder)) as svc:
        meta = svc.get("/api/v1.0/metadata").json()
        assert meta["name"] == "my-iris"
        assert meta["versions"] == ["v7"]
        assert meta["inputs"][0]["schema"]["names"] == ["a", "b", "c", "d"]
        assert "scikit-learn version" in meta["custom"]


def test_model_file_picks_one_of_several_pickles(sklearn_models, tmp_path):
    folder = tmp_path / "several"
    folder.mkdir()
    (folder / "classifier.pkl").write_bytes((sklearn_models["iris"] / "model.joblib").read_bytes())
    (folder / "encoder.pkl").write_bytes((sklearn_models["scaler"] / "model.joblib").read_bytes())
    params = seldon_parameters(model_uri=folder, model_file="classifier.pkl")
    with running_microservice(SERVER, params) as svc:
        body = svc.post("/api/v1.0/predictions", ndarray(rows(1))).json()
        assert body["data"]["names"] == ["setosa", "versicolor", "virginica"]


def test_version_mismatch_warning_is_surfaced(tmp_path):
    import models

    folder = models.pickle_from_other_version(models.iris_classifier(), tmp_path / "old")
    with running_microservice(SERVER, seldon_parameters(model_uri=folder)) as svc:
        assert svc.post("/api/v1.0/predictions", ndarray(rows(1))).status_code == 200
        assert "InconsistentVersionWarning" in svc.log()
        meta = svc.get("/api/v1.0/metadata").json()
        assert "InconsistentVersionWarning" in meta["custom"]["load warnings"]


def microservice_command(parameters: str) -> list[str]:
    return [
        str(BIN / "seldon-core-microservice"),
        SERVER,
        "--parameters",
        parameters,
        "--http-port",
        str(free_port()),
        "--grpc-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
    ]


def start_failure(folder: Path | str, **extra: str) -> str:
    result = run_to_exit(
        microservice_command(seldon_parameters(model_uri=folder, **extra)),
        SERVERS / "sklearnserver",
    )
    assert result.returncode != 0, result.stdout[-3000:]
    return result.stdout


def test_unpickling_attribute_error_stops_the_process_with_the_cause(tmp_path):
    import models

    out = start_failure(models.unimportable_pickle(tmp_path / "broken"))
    assert "AttributeError" in out
    assert "LogisticRegressioX" in out


def test_corrupt_pickle_stops_the_process(tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"this is not a pickle")
    out = start_failure(folder)
    assert "cannot load the model from" in out


def test_a_text_file_saved_as_the_model_is_named_as_no_pickle(tmp_path):
    """A text file (an HTML error page, say) under the model's name: unpickling says only
    ``KeyError: 60``; the load error names the file and what it is not."""
    folder = tmp_path / "page"
    folder.mkdir()
    (folder / "model.joblib").write_text("<html><body>403 Forbidden</body></html>\n")
    out = start_failure(folder)
    assert "ModelLoadError" in out or "cannot load the model from" in out
    assert "model.joblib is not a joblib or pickle file" in out
    assert "b'<html>" in out
    assert "KeyError: 60" not in out


def test_no_model_file_lists_what_the_folder_holds(tmp_path):
    (tmp_path / "README.md").write_text("nothing here")
    out = start_failure(tmp_path)
    assert "no model file" in out
    assert "README.md" in out


def test_several_pickles_without_model_file_is_an_error(sklearn_models, tmp_path):
    for name in ("a.pkl", "b.joblib"):
        (tmp_path / name).write_bytes((sklearn_models["iris"] / "model.joblib").read_bytes())
    out = start_failure(tmp_path)
    assert "a.pkl, b.joblib" in out
    assert "model_file" in out


def test_unknown_method_fails_at_start_up(sklearn_models):
    out = start_failure(sklearn_models["iris"], method="explain")
    assert "method='explain'" in out
    assert "predict_proba" in out


def test_method_the_estimator_lacks_fails_at_start_up(sklearn_models):
    out = start_failure(sklearn_models["svc"], method="predict_proba")
    assert "SVC" in out
    assert "decision_function" in out
