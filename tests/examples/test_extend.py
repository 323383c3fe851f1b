"""examples/extend: SKLearnServer and MLFlowServer subclassed with pre/post-processing, metrics
and tags (one mixin, ``iris_steps.IrisSteps``, on either)."""

from __future__ import annotations

import re

import joblib
import numpy as np
import pytest
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

from microservice import (
    BIN,
    REPO,
    free_port,
    running_command,
    running_microservice,
    seldon_parameters,
)
from models import rows
from prometheus import scrape

EXAMPLE = REPO / "examples" / "extend"
SERVER = "MyIrisServer"


@pytest.fixture(scope="module")
def iris_model(sklearn_models):
    return joblib.load(sklearn_models["iris"] / "model.joblib")


@pytest.fixture(scope="module")
def server(sklearn_models):
    params = seldon_parameters(model_uri=sklearn_models["iris"], input_unit="mm")
    env = {"PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus"}
    with running_microservice(SERVER, params, cwd=EXAMPLE, env=env) as service:
        yield service


def expected(model, X_cm: np.ndarray) -> tuple[list[list[str]], list[float]]:
    """Labels (one per row) and their probabilities, computed in this process."""
    probabilities = model.predict_proba(X_cm)
    labels = [[str(model.classes_[row.argmax()])] for row in probabilities]
    return labels, probabilities.max(axis=1).tolist()


def test_predict_runs_pre_model_post_in_one_server(server, iris_model):
    X_cm = rows(3)
    response = server.post("/api/v1.0/predictions", {"data": {"ndarray": (X_cm * 10).tolist()}})
    assert response.status_code == 200, response.text
    body = response.json()
    labels, probability = expected(iris_model, X_cm)
    assert body["data"]["names"] == ["label"]
    assert body["data"]["ndarray"] == labels
    assert body["meta"]["tags"]["probability"] == pytest.approx(probability, rel=1e-12)
    assert body["meta"]["tags"]["input_unit"] == "mm"


def test_each_step_is_also_an_endpoint(server, iris_model):
    X_cm = rows(2)
    body = server.post("/transform-input", {"data": {"ndarray": (X_cm * 10).tolist()}}).json()
    np.testing.assert_allclose(np.array(body["data"]["ndarray"]), X_cm)
    probabilities = iris_model.predict_proba(X_cm)
    body = server.post("/transform-output", {"data": {"ndarray": probabilities.tolist()}}).json()
    assert body["data"]["ndarray"] == expected(iris_model, X_cm)[0]


def test_grpc_answers_the_same(server, iris_model):
    X_cm = rows(2)
    client = SeldonClient(microservice_endpoint=f"127.0.0.1:{server.grpc_port}")
    result = client.microservice(
        data=X_cm * 10, method="predict", transport="grpc", payload_type="ndarray"
    )
    assert result.success, result.msg
    body = json_format.MessageToDict(result.response)
    labels, probability = expected(iris_model, X_cm)
    assert body["data"]["ndarray"] == labels
    assert body["meta"]["tags"]["probability"] == pytest.approx(probability, rel=1e-12)


def test_inherited_input_checks_still_answer_400(server):
    response = server.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0, 3.0]]}})
    assert response.status_code == 400
    assert "expected 4 features per row, got 3" in response.json()["status"]["info"]


def test_own_and_inherited_metrics_reach_prometheus(server):
    X_mm = [[51.0, 35.0, 14.0, 2.0]] * 2  # two setosa rows
    assert server.post("/api/v1.0/predictions", {"data": {"ndarray": X_mm}}).status_code == 200
    text = scrape(server)
    setosa = re.search(r'iris_predictions_by_label_total\{[^}]*label="setosa"[^}]*\} (\S+)', text)
    assert setosa and float(setosa.group(1)) >= 2
    assert re.search(r'modelshelf_predictions_total\{[^}]*model_method="predict_proba"', text)
    assert "modelshelf_model_load_seconds{" in text


def test_packaging_files_name_the_class():
    environment = dict(
        line.split("=", 1) for line in (EXAMPLE / ".s2i" / "environment").read_text().split()
    )
    assert environment["MODEL_NAME"] == SERVER
    assert f"ENV MODEL_NAME={SERVER}" in (EXAMPLE / "Dockerfile").read_text()
    crd = pytest.importorskip("modelshelf.graph.crd", reason="the CRD validator")
    (deployment,) = crd.load_file(EXAMPLE / "seldondeployment.yaml")
    assert crd.validate_object(deployment) == []


@pytest.fixture(scope="module")
def mlflow_iris(iris_model, tmp_path_factory):
    """The same classifier as an MLflow model folder (sklearn flavor with pyfunc), written as
    ``mlflow.sklearn.save_model`` writes it: importing mlflow here would cost seconds."""
    import importlib.metadata
    import pickle
    import platform

    import sklearn

    folder = tmp_path_factory.mktemp("mlflow-iris")
    (folder / "model.pkl").write_bytes(pickle.dumps(iris_model))
    (folder / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.sklearn\n"
        "    model_path: model.pkl\n"
        "    predict_fn: predict\n"
        f"    python_version: {platform.python_version()}\n"
        "  sklearn:\n"
        "    code: null\n"
        "    pickled_model: model.pkl\n"
        "    serialization_format: pickle\n"
        f"    sklearn_version: {sklearn.__version__}\n"
        f"mlflow_version: {importlib.metadata.version('mlflow')}\n"
    )
    return folder


def test_mlflow_server_subclass_runs_the_same_steps(mlflow_iris, iris_model, tmp_path):
    http_port, metrics_port = free_port(), free_port()
    command = [
        str(BIN / "seldon-core-microservice"),
        "MyMLflowIrisServer",
        "--parameters",
        seldon_parameters(model_uri=mlflow_iris, input_unit="mm"),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
    ]
    # MLflow's default tracking store is ./mlruns: keep it out of the example's folder.
    env = {"GRPC_WORKERS": "0", "MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri()}
    with running_command(command, EXAMPLE, env, http_port, None, metrics_port, 120) as server:
        X_cm = rows(3)
        payload = {"data": {"ndarray": (X_cm * 10).tolist()}}
        response = server.post("/api/v1.0/predictions", payload)
        assert response.status_code == 200, response.text
        body = response.json()
        labels, probability = expected(iris_model, X_cm)
        assert body["data"]["names"] == ["label"]
        assert body["data"]["ndarray"] == labels
        # scikit-learn's own last bits differ between a row alone and in a batch (BLAS).
        assert body["meta"]["tags"]["probability"] == pytest.approx(probability, rel=1e-12)
        bad = server.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}})
        assert bad.status_code == 400, bad.text
