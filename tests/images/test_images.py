"""The images, built by ``make images``, run as real containers (podman): a prediction over HTTP
from the host, the metadata endpoint, a graceful stop (exit 0 within 10 s, the in-flight request
answered), read-only root filesystem and uid 8888, a model from S3, and the storage initializer.

Opt-in: ``make test-images`` builds the images and sets MODELSHELF_TEST_IMAGES=1; plain
``make test`` skips this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest

from containers import engine, image, image_exists, parameters, running_container
from microservice import SERVERS, free_port, wait_for_text
from models import IRIS_COLUMNS, rows
from modelshelf import registry

if os.environ.get("MODELSHELF_TEST_IMAGES") != "1":
    pytest.skip("image tests run with make test-images", allow_module_level=True)

SLOW_MODEL = """
import time


class SlowModel:
    def predict(self, X, names=None, meta=None):
        print("SlowModel: in predict", flush=True)  # tests stop the container after this line
        time.sleep(2)
        return X
"""
SERVER_IMAGES = [server.name for server in registry.SERVERS]
IMAGES = ["base", "storage-initializer", *SERVER_IMAGES]


def require(name: str) -> None:
    """Fail when an image that should exist was not built; skip one whose server isn't here."""
    if name in SERVER_IMAGES and not (SERVERS / name).is_dir():
        pytest.skip(f"servers/{name} does not exist yet")
    if not image_exists(name):
        pytest.fail(f"image {image(name)} is missing: run make images")


def readable_copy(folder: Path, dest: Path) -> Path:
    """A copy any uid can read (uid 8888 in the container; pytest's folders are 0700)."""
    shutil.copytree(folder, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def published(port: int, container_port: int = 9000) -> list[str]:
    return ["-p", f"127.0.0.1:{port}:{container_port}"]


@pytest.fixture(scope="module")
def iris_folder(sklearn_models, tmp_path_factory) -> Path:
    return readable_copy(sklearn_models["iris"], tmp_path_factory.mktemp("mounted") / "iris")


@pytest.mark.parametrize("name", IMAGES)
def test_image_runs_as_8888_with_labels_and_seldon_ports(name):
    require(name)
    config = json.loads(
        engine("image", "inspect", "--format", "{{json .Config}}", image(name)).stdout
    )
    assert config["User"] == "8888"
    labels = config["Labels"]
    for key in ("title", "version", "source", "description"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.title"] == f"modelshelf-{name}"
    if name != "storage-initializer":
        assert set(config["ExposedPorts"]) == {"9000/tcp", "9500/tcp", "6000/tcp"}
        assert config["Entrypoint"] == ["modelshelf", "run"]


def test_sklearnserver_serves_mounted_model_read_only_as_8888_and_stops_gracefully(iris_folder):
    require("sklearnserver")
    port = free_port()
    run_args = [
        *published(port),
        "-v",
        f"{iris_folder}:/mnt/models:ro",
        "--read-only",
        "--user",
        "8888",
    ]
    with running_container("sklearnserver", port, run_args) as server:
        X = rows(3)
        response = server.post("/api/v1.0/predictions", {"data": {"ndarray": X.tolist()}})
        assert response.status_code == 200, server.logs()
        data = response.json()["data"]
        model = joblib.load(iris_folder / "model.joblib")
        np.testing.assert_allclose(np.array(data["ndarray"]), model.predict_proba(X), rtol=1e-9)
        assert data["names"] == ["setosa", "versicolor", "virginica"]

        bad = server.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}})
        assert bad.status_code == 400
        assert "expected 4 features" in bad.text

        metadata = server.get("/api/v1.0/metadata").json()
        assert metadata["platform"] == "sklearn"
        assert "scikit-learn version" in metadata["custom"]

        code, seconds = server.stop()
        assert code == 0, server.logs()
        assert seconds < 10, server.logs()


@pytest.mark.parametrize("frontend", ["modelshelf", "seldon"])
def test_stop_answers_the_in_flight_request_then_exits_0(tmp_path, frontend):
    require("base")
    folder = tmp_path / "server"
    folder.mkdir()
    (folder / "SlowModel.py").write_text(SLOW_MODEL)
    folder = readable_copy(folder, tmp_path / "mounted")
    port = free_port()
    run_args = [
        *published(port),
        "-v",
        f"{folder}:/opt/modelshelf/server:ro",
        "-e",
        "MODEL_NAME=SlowModel",
        "-e",
        "PREDICTIVE_UNIT_PARAMETERS=[]",
        "-e",
        f"MODELSHELF_FRONTEND={frontend}",
        "--read-only",
    ]
    with running_container("base", port, run_args) as server:
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(
                server.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}})
            )
        )
        request.start()
        wait_for_text(server.logs, "SlowModel: in predict")
        code, seconds = server.stop()
        request.join(timeout=15)
        logs = server.logs()
    assert code == 0, logs
    assert seconds < 10, logs
    assert [a.status_code for a in answers] == [200], logs
    assert answers[0].json()["data"]["ndarray"] == [[1.0, 2.0]]


def test_sklearnserver_loads_from_s3_on_the_operators_ports(s3_server, sklearn_models):
    require("sklearnserver")
    uri = s3_server.upload_folder(sklearn_models["iris"], "images", "iris")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **s3_server.env,
        "PREDICTIVE_UNIT_PARAMETERS": parameters(model_uri=uri),
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(http_port),
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(grpc_port),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics_port),
        "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",  # as the operator sets it
    }
    run_args = ["--network", "host", "--read-only"]
    for key, value in env.items():
        run_args += ["-e", f"{key}={value}"]
    with running_container("sklearnserver", http_port, run_args) as server:
        response = server.post("/api/v1.0/predictions", {"data": {"ndarray": rows(1).tolist()}})
        assert response.status_code == 200, server.logs()
        assert response.json()["data"]["names"] == ["setosa", "versicolor", "virginica"]
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/prometheus", timeout=10)
        assert metrics.status_code == 200
        code, seconds = server.stop()
        assert code == 0, server.logs()
        assert seconds < 10


def fetch_in_container(s3_server, uri: str, dest: Path) -> subprocess.CompletedProcess:
    """The storage initializer as an init container: ``[URI, /mnt/models]``, credentials from
    the environment, the provision folder (an emptyDir: any uid may write) at /mnt/models."""
    dest.mkdir()
    dest.chmod(0o777)
    args = ["run", "--rm", "--network", "host", "--read-only", "-v", f"{dest}:/mnt/models"]
    for key, value in s3_server.env.items():
        args += ["-e", f"{key}={value}"]
    return engine(*args, image("storage-initializer"), uri, "/mnt/models", check=False)


def test_storage_initializer_fetches_from_s3_into_mnt_models(s3_server, sklearn_models, tmp_path):
    require("storage-initializer")
    model = tmp_path / "model"
    shutil.copytree(sklearn_models["iris"], model)
    (model / "metadata.yaml").write_text("name: iris\nversions: [v1]\n")
    uri = s3_server.upload_folder(model, "images", "initializer/iris")
    result = fetch_in_container(s3_server, uri, tmp_path / "provision-location")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("model.joblib", "metadata.yaml"):
        assert (tmp_path / "provision-location" / name).read_bytes() == (model / name).read_bytes()

    missing = fetch_in_container(s3_server, uri + "-nope", tmp_path / "missing")
    assert missing.returncode == 1
    assert "iris-nope" in missing.stderr


def test_storage_initializer_fetches_a_folder_holding_one_file(s3_server, sklearn_models, tmp_path):
    """The commonest model folder (one model.joblib) is a folder, not an archive to unpack."""
    require("storage-initializer")
    uri = s3_server.upload_folder(sklearn_models["iris"], "images", "initializer/single")
    result = fetch_in_container(s3_server, uri, tmp_path / "provision-location")
    assert result.returncode == 0, result.stdout + result.stderr
    expected = (sklearn_models["iris"] / "model.joblib").read_bytes()
    assert (tmp_path / "provision-location" / "model.joblib").read_bytes() == expected


def serve_and_stop(name: str, model_folder: Path, payload: dict) -> tuple[dict, dict]:
    """Run server image ``name`` on ``model_folder`` (read-only, as uid 8888, read-only root):
    the prediction's and the metadata's bodies, after checking the graceful stop."""
    port = free_port()
    run_args = [
        *published(port),
        "-v",
        f"{model_folder}:/mnt/models:ro",
        "--read-only",
        "--user",
        "8888",
    ]
    with running_container(name, port, run_args, ready_timeout=240) as server:
        response = server.post("/api/v1.0/predictions", payload)
        assert response.status_code == 200, response.text + server.logs()
        metadata = server.get("/api/v1.0/metadata").json()
        code, seconds = server.stop()
        assert code == 0, server.logs()
        assert seconds < 10, server.logs()
    return response.json(), metadata


def test_xgboostserver_serves_a_booster(tmp_path):
    require("xgboostserver")
    import xgboost as xgb

    from xgboost_models import iris_softprob, save_booster

    booster = iris_softprob()
    folder = readable_copy(save_booster(booster, tmp_path / "booster"), tmp_path / "mounted")
    X = rows(2)
    body, metadata = serve_and_stop("xgboostserver", folder, {"data": {"ndarray": X.tolist()}})
    np.testing.assert_allclose(
        np.array(body["data"]["ndarray"]),
        booster.predict(xgb.DMatrix(X, feature_names=IRIS_COLUMNS)),
        rtol=1e-6,
    )
    assert metadata["platform"] == "xgboost"


def test_lightgbmserver_serves_a_booster(tmp_path):
    require("lightgbmserver")
    import lightgbm as lgb
    from sklearn.datasets import load_iris

    iris = load_iris()
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(iris.data, iris.target)
    (tmp_path / "booster").mkdir()
    model.booster_.save_model(tmp_path / "booster" / "model.txt")
    folder = readable_copy(tmp_path / "booster", tmp_path / "mounted")
    X = rows(2)
    body, metadata = serve_and_stop("lightgbmserver", folder, {"data": {"ndarray": X.tolist()}})
    want = lgb.Booster(model_file=str(folder / "model.txt")).predict(X)
    np.testing.assert_array_equal(np.array(body["data"]["ndarray"]), want)
    assert metadata["platform"] == "lightgbm"


MLFLOW_MODEL_CODE = """
import mlflow
from mlflow.pyfunc import PythonModel


class Doubler(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


mlflow.models.set_model(Doubler())
"""


def test_mlflowserver_runs_before_run_and_serves_a_pyfunc_model(tmp_path):
    require("mlflowserver")
    import mlflow.pyfunc

    code = tmp_path / "doubler.py"
    code.write_text(MLFLOW_MODEL_CODE)
    saved = tmp_path / "doubler"
    mlflow.pyfunc.save_model(path=str(saved), python_model=str(code))
    # Saved with full mlflow, so its requirements say mlflow==X: the image has only
    # mlflow-skinny, which the environment builder counts as the server's mlflow.
    assert "mlflow==" in (saved / "requirements.txt").read_text()
    folder = readable_copy(saved, tmp_path / "mounted")
    body, metadata = serve_and_stop(
        "mlflowserver", folder, {"data": {"ndarray": [[1.0, 2.0], [3.0, 4.0]]}}
    )
    assert body["data"]["ndarray"] == [[2.0, 4.0], [6.0, 8.0]]
    assert metadata["platform"].startswith("mlflow")
