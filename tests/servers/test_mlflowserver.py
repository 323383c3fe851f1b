"""MLFlowServer as Seldon runs it: ``before-run``, then ``seldon-core-microservice``, on models
logged to a real MLflow tracking server whose artifacts are in S3 (moto), from ``models:/`` and
``s3://`` URIs; predictions compared with MLflow's own in-process results."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

from microservice import SERVERS, run_to_exit, running_microservice, seldon_parameters
from mlflow_tracking import TINY_PACKAGE, client_environment
from models import IRIS_COLUMNS, rows

pytestmark = pytest.mark.timeout(600)

SERVER = "MLFlowServer"
FOLDER = SERVERS / "mlflowserver"
BEFORE_RUN = FOLDER / "before-run"


def pip_freeze() -> str:
    command = [sys.executable, "-m", "pip", "freeze", "--all"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def frozen_venv():
    before = pip_freeze()
    yield before
    after = pip_freeze()
    changed = set(before.splitlines()) ^ set(after.splitlines())
    assert after == before, f"the test's own virtualenv changed: {sorted(changed)}"


@pytest.fixture(scope="module")
def server_env(mlflow_tracking, mlflow_models, tmp_path_factory):
    """What the pod would have: tracking and S3 settings, a writable env folder and cache."""
    root = tmp_path_factory.mktemp("mlflow-pod")
    return {
        **mlflow_tracking.env,
        "MODELSHELF_ENV_DIR": str(root / "env"),
        "MODELSHELF_MODEL_CACHE": str(root / "cache"),
        "MODELSHELF_WHEELS_DIR": str(mlflow_models["wheels"]),
        "MODELSHELF_ENV_OFFLINE": "1",
    }


def before_run(env: dict[str, str], **parameters: object) -> subprocess.CompletedProcess:
    run_env = {**env, "PREDICTIVE_UNIT_PARAMETERS": seldon_parameters(**parameters)}
    return run_to_exit([str(BEFORE_RUN)], FOLDER, timeout=300, env=run_env)


#: name -> (logged model, URI kind, extra parameters): each served by its own process.
DEPLOYMENTS = {
    "classifier": ("classifier", "alias", {"method": "predict_proba"}),
    "doubler": ("doubler", "s3", {}),
    "scaler": ("scaler", "models", {}),
    "xgboost": ("xgboost", "s3", {"predict_method": "predict_proba"}),
}


def model_uri(logged, kind: str) -> str:
    if kind == "alias":
        return f"models:/{logged.name}@champion"
    return logged.models_uri if kind == "models" else logged.s3_uri


@pytest.fixture(scope="module")
def deployed(mlflow_models, server_env, frozen_venv):
    """Each deployment's before-run output and its running server; deployments side by side."""
    reports, inodes, entered = {}, {}, {}
    lock = threading.Lock()
    cache = Path(server_env["MODELSHELF_MODEL_CACHE"])

    def deploy(key: str) -> None:
        model, kind, extra = DEPLOYMENTS[key]
        uri = model_uri(mlflow_models[model], kind)
        result = before_run(server_env, model_uri=uri, **extra)
        assert result.returncode == 0, result.stdout[-3000:]
        with lock:
            reports[key] = result.stdout
            for path in cache.rglob("MLmodel"):  # as before-run left them
                inodes.setdefault(path, path.stat().st_ino)
        context = running_microservice(
            SERVER, seldon_parameters(model_uri=uri, **extra), env=server_env, ready_timeout=400
        )
        service = context.__enter__()
        with lock:
            entered[key] = (context, service)

    try:
        with ThreadPoolExecutor(len(DEPLOYMENTS)) as pool:
            futures = {key: pool.submit(deploy, key) for key in DEPLOYMENTS}
        errors = [f"{key}: {f.exception()}" for key, f in futures.items() if f.exception()]
        assert not errors, "\n".join(errors)
        services = {key: service for key, (_, service) in entered.items()}
        yield {"reports": reports, "services": services, "cache_inodes": inodes}
    finally:  # stopped side by side too: each may take its SIGTERM grace period
        with ThreadPoolExecutor(max(1, len(entered))) as pool:
            for context, _ in entered.values():
                pool.submit(context.__exit__, None, None, None)


@pytest.fixture(scope="module")
def in_process(mlflow_models, mlflow_tracking):
    """MLflow's own in-process models, for the expected results."""
    import mlflow

    with client_environment(mlflow_tracking.env):
        return {
            "classifier": mlflow.sklearn.load_model(mlflow_models["classifier"].models_uri),
            "scaler": mlflow.sklearn.load_model(mlflow_models["scaler"].models_uri),
            "xgboost": mlflow.pyfunc.load_model(mlflow_models["xgboost"].models_uri),
            "xgboost_raw": mlflow.xgboost.load_model(mlflow_models["xgboost"].models_uri),
        }


def ndarray(values, names=None) -> dict:
    data = {"ndarray": np.asarray(values).tolist()}
    if names is not None:
        data["names"] = list(names)
    return {"data": data}


def test_before_run_installs_the_missing_wheel_and_reports_the_rest(deployed, server_env):
    doubler = deployed["reports"]["doubler"]
    assert f"installed  {TINY_PACKAGE}==0.1.0" in doubler
    assert "satisfied  numpy==" in doubler
    assert "satisfied  scikit-learn==" in deployed["reports"]["classifier"]
    plain = subprocess.run([sys.executable, "-c", f"import {TINY_PACKAGE}"], capture_output=True)
    assert plain.returncode != 0, "the wheel must land in MODELSHELF_ENV_DIR only"


def test_before_run_again_installs_nothing(deployed, server_env, mlflow_models):
    again = before_run(server_env, model_uri=mlflow_models["doubler"].s3_uri)
    assert again.returncode == 0, again.stdout
    assert "0 installed" in again.stdout and f"satisfied  {TINY_PACKAGE}==0.1.0" in again.stdout


def test_the_server_does_not_download_again(deployed):
    for path, inode in deployed["cache_inodes"].items():
        assert path.stat().st_ino == inode, f"{path} was downloaded again"
    assert len(deployed["cache_inodes"]) == len(DEPLOYMENTS)


def test_resolving_and_loading_a_registry_model_leaves_mlflow_telemetry_off(
    mlflow_models, server_env, tmp_path
):
    """MLflow >= 3.2 starts telemetry when imported (a thread fetching its config, which
    gives up quietly here, offline), unless told not to or it sees CI or pytest: in a clean
    environment, resolving an alias and loading the model start no such thread."""
    uri = model_uri(mlflow_models["classifier"], "alias")
    code = (
        "import sys, threading\n"
        "started = []\n"
        "start = threading.Thread.start\n"
        "threading.Thread.start = lambda thread: (started.append(thread.name), start(thread))[1]\n"
        "from modelshelf.environment.model_location import model_folder\n"
        "from modelshelf.frameworks.mlflow import MLFlowServer\n"
        "folder = model_folder(sys.argv[1])\n"
        "server = MLFlowServer(str(folder))\n"
        "server.load()\n"
        "print(sorted(set(started)))\n"
    )
    env = {
        **server_env,
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MODELSHELF_MODEL_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, uri],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    threads = done.stdout.strip().splitlines()[-1]
    assert threads.startswith("["), done.stdout
    assert "Telemetry" not in threads


def test_classifier_from_an_alias_predicts_probabilities_by_column_name(deployed, in_process):
    svc = deployed["services"]["classifier"]
    X = rows(3)
    order = [2, 0, 3, 1]
    body = svc.post("/api/v1.0/predictions", ndarray(X[:, order], [IRIS_COLUMNS[i] for i in order]))
    assert body.status_code == 200, body.text
    data = body.json()["data"]
    expected = in_process["classifier"].predict_proba(pd.DataFrame(X, columns=IRIS_COLUMNS))
    np.testing.assert_allclose(np.array(data["ndarray"]), expected, rtol=1e-12)
    assert data["names"] == ["setosa", "versicolor", "virginica"]


def test_classifier_over_grpc(deployed, in_process):
    svc = deployed["services"]["classifier"]
    client = SeldonClient(microservice_endpoint=f"127.0.0.1:{svc.grpc_port}")
    X = rows(2)
    result = client.microservice(data=X, method="predict", transport="grpc")
    assert result.success, result.msg
    body = json_format.MessageToDict(result.response)
    got = np.array(body["data"]["tensor"]["values"]).reshape(2, 3)
    expected = in_process["classifier"].predict_proba(pd.DataFrame(X, columns=IRIS_COLUMNS))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


BAD = [
    ("wrong names", ndarray(rows(1), ["a", "b", "c", "d"]), "missing ['sepal_length'"),
    ("too few values", ndarray([[1.0, 2.0, 3.0]]), "expected 4 features per row"),
    ("signature violation", ndarray([["x", "y", "z", "w"]]), "cannot read 'x' as double"),
    ("ragged", {"data": {"ndarray": [[1, 2, 3, 4], [1]]}}, ""),
]


@pytest.mark.parametrize(("case", "payload", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_and_the_server_keeps_serving(deployed, case, payload, message):
    svc = deployed["services"]["classifier"]
    response = svc.post("/api/v1.0/predictions", payload)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert message in response.json()["status"]["info"]
    assert svc.post("/api/v1.0/predictions", ndarray(rows(1))).status_code == 200


def test_metadata_from_the_registry_and_signature(deployed, mlflow_models):
    meta = deployed["services"]["classifier"].get("/api/v1.0/metadata").json()
    assert (meta["name"], meta["versions"]) == ("modelshelf-classifier", ["1"])
    assert [i["name"] for i in meta["inputs"]] == IRIS_COLUMNS
    assert meta["custom"]["run id"] == mlflow_models["classifier"].run_id
    assert meta["platform"] == "mlflow-sklearn"


def test_python_model_needing_the_installed_wheel(deployed):
    svc = deployed["services"]["doubler"]
    X = rows(2)
    response = svc.post("/api/v1.0/predictions", ndarray(X))
    assert response.status_code == 200, (
        response.text + deployed["services"]["doubler"].log()[-2000:]
    )
    np.testing.assert_allclose(np.array(response.json()["data"]["ndarray"]), X * 2)


@pytest.mark.parametrize("path", ["/transform-input", "/transform-output"])
def test_scaler_as_transformer_and_output_transformer(deployed, in_process, path):
    svc = deployed["services"]["scaler"]
    X = rows(2)
    body = svc.post(path, ndarray(X)).json()
    np.testing.assert_allclose(
        np.array(body["data"]["ndarray"]), in_process["scaler"].transform(X), rtol=1e-12
    )
    assert body["data"]["names"] == ["x0", "x1", "x2", "x3"]


def test_xgboost_from_s3_with_predict_method(deployed, in_process):
    svc = deployed["services"]["xgboost"]
    X = rows(3)
    body = svc.post("/api/v1.0/predictions", ndarray(X)).json()
    np.testing.assert_allclose(
        np.array(body["data"]["ndarray"]), in_process["xgboost_raw"].predict_proba(X), rtol=1e-6
    )
    assert body["data"]["names"] == ["0", "1", "2"]
    labels = in_process["xgboost"].predict(X)
    assert np.argmax(body["data"]["ndarray"], axis=1).tolist() == np.asarray(labels).tolist()


def test_before_run_stops_start_up_on_a_missing_package(deployed, server_env, tmp_path):
    folder = next(p.parent for p in deployed["cache_inodes"] if "classifier" in str(p.parent))
    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / "requirements.txt").write_text("shelfmissing==9.9\n")
    result = before_run(server_env, model_uri=str(broken))
    assert result.returncode == 1
    assert "cannot install shelfmissing==9.9" in result.stdout
    # The installer's own message: pip's, or uv's when uv resolves (the default when present).
    assert (
        "No matching distribution found for shelfmissing==9.9" in result.stdout
        or "shelfmissing was not found in the provided package locations" in result.stdout
    )
