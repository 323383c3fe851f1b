"""``modelshelf graph run`` on every InferenceService in manifests/kserve/: the runtime KServe
would select, the model fetched (from S3 with the storage secret where the manifest says so),
real servers, a real front door; KServe V1 over HTTP and V2 through tritonclient, each answer
equal to the model's own output."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest

from microservice import (
    BIN,
    REPO,
    entered_in_parallel,
    free_port,
    run_to_exit,
    running_command,
)
from models import IRIS_X, IRIS_Y, assert_same_predictions, rows
from modelshelf.supervision import descendants

KSERVE = REPO / "manifests" / "kserve"
TEMPLATE = REPO / "templates" / "kserve-model"
READY_TIMEOUT = 180
X = rows(3)


@contextlib.contextmanager
def running_isvc(manifest: Path, *extra: str, env: dict | None = None) -> Iterator:
    """``graph run`` until its front door says ready; SIGTERM must end it cleanly, leaving no
    process behind."""
    port = free_port()
    command = [str(BIN / "modelshelf"), "graph", "run", str(manifest), "--port", str(port), *extra]
    with running_command(
        command, REPO, env, port, ready_timeout=READY_TIMEOUT, health_path="/v2/health/ready"
    ) as door:
        started = descendants(door.process.pid)
        yield door
        door.process.send_signal(signal.SIGTERM)
        assert door.process.wait(60) == 0, door.log()[-3000:]
    left = [pid for pid in started if Path(f"/proc/{pid}").exists() and _running(pid)]
    assert not left, f"still running after graph run stopped: {left}"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def kserve_secret(s3_server, tmp_path_factory) -> Path:
    """The storage secret as KServe users write it: keys in data, the endpoint in annotations."""
    host = s3_server.endpoint.removeprefix("http://")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "models-s3-credentials",
            "annotations": {
                "serving.kserve.io/s3-endpoint": host,
                "serving.kserve.io/s3-usehttps": "0",
            },
        },
        "data": {
            k: base64.b64encode(s3_server.env[k].encode()).decode()
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        },
    }
    path = tmp_path_factory.mktemp("kserve-secret") / "secret.yaml"
    path.write_text(json.dumps(secret))
    return path


@pytest.fixture(scope="module")
def models(sklearn_models, s3_server, tmp_path_factory) -> dict[str, tuple[str, object]]:
    """Per format: the URI to serve and the in-process model to compare with."""
    import lightgbm
    import mlflow.sklearn
    import xgboost
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("kserve-models")
    booster = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(IRIS_X, IRIS_Y == "setosa")
    (root / "xgb").mkdir()
    booster.save_model(root / "xgb" / "model.json")
    (root / "lgb").mkdir()
    classifier = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(IRIS_X, IRIS_Y)
    classifier.booster_.save_model(root / "lgb" / "model.txt")
    regression = LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS_Y)
    mlflow.sklearn.save_model(regression, root / "mlflow")
    return {
        "sklearn-s3": (
            s3_server.upload_folder(sklearn_models["iris"], "kserve-sklearn", "iris"),
            joblib.load(sklearn_models["iris"] / "model.joblib"),
        ),
        "sklearn": (
            str(sklearn_models["iris"]),
            joblib.load(sklearn_models["iris"] / "model.joblib"),
        ),
        "xgboost": (str(root / "xgb"), booster),
        "mlflow": (str(root / "mlflow"), regression),
        "lightgbm": (
            str(root / "lgb"),
            lightgbm.Booster(model_file=str(root / "lgb" / "model.txt")),
        ),
    }


#: manifest -> (model, what the model's own output is)
RUNS = {
    "sklearn-iris": "sklearn-s3",
    "sklearn-iris-v2": "sklearn",
    "sklearn-iris-grpc": "sklearn",
    "sklearn-iris-autoscaling": "sklearn",
    "sklearn-iris-transformer": "sklearn",
    "xgboost-iris": "xgboost",
    "xgboost-iris-v2": "xgboost",
    "mlflow-iris": "mlflow",
    "lightgbm-iris": "lightgbm",
}


def own_output(kind: str, model: object) -> np.ndarray:
    if kind.startswith("sklearn"):
        return model.predict(X)  # the runtime's PREDICT_PROBA=false: labels, as KServe's server
    if kind == "xgboost":
        return model.predict_proba(X)[:, 1]  # the booster's own predict: P(class 1)
    if kind == "lightgbm":
        return model.predict(X)  # the multiclass booster's own predict: one P per class
    return model.predict(X)  # pyfunc: the labels


@pytest.fixture(scope="module")
def services(models, kserve_secret) -> Iterator[dict]:
    """Every InferenceService example under graph run, started at once."""
    no_aws = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": ""}
    contexts = {}
    for name, kind in RUNS.items():
        uri = models[kind][0]
        extra = [f"--model-uri={uri}", f"--secret={kserve_secret}"]
        if name.endswith("transformer"):
            extra.append(f"--container-dir=transformer={TEMPLATE}")
        contexts[name] = running_isvc(KSERVE / f"{name}.yaml", *extra, env=no_aws)
    with entered_in_parallel(contexts) as doors:
        yield doors


@pytest.mark.parametrize("name", [n for n in RUNS if not n.endswith("transformer")])
def test_v1_and_v2_answers_equal_the_models_own(services, models, name):
    import tritonclient.http as httpclient

    door = services[name]
    kind = RUNS[name]
    expected = own_output(kind.removesuffix("-s3"), models[kind][1])
    assert f"{name}: runtime ClusterServingRuntime modelshelf-{kind.split('-')[0]}" in door.log()
    answer = door.post(f"/v1/models/{name}:predict", {"instances": X.tolist()})
    assert answer.status_code == 200, answer.text
    assert_same_predictions(np.array(answer.json()["predictions"]), expected)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{door.http_port}")
    assert client.is_server_ready() and client.is_model_ready(name)
    tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=True)
    result = client.infer(name, [tensor])
    output = result.get_response()["outputs"][0]["name"]
    ours = result.as_numpy(output)
    if ours.dtype == object:  # BYTES: labels
        ours = np.array([value.decode() for value in ours.ravel()]).reshape(ours.shape)
    assert_same_predictions(ours, expected)


def test_grpc_v2_reaches_the_predictor(services, models):
    import tritonclient.grpc as grpcclient

    door = services["sklearn-iris-grpc"]
    port = re.search(r"V2 gRPC on 127\.0\.0\.1:(\d+)", door.log()).group(1)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = grpcclient.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X)
    result = client.infer("sklearn-iris-grpc", [tensor])
    output = result.get_response().outputs[0].name
    labels = [value.decode() for value in result.as_numpy(output)]
    assert labels == models["sklearn"][1].predict(X).tolist()
    client.close()


def test_routing_by_host_and_path_as_kserves_ingress(services, models):
    door = services["sklearn-iris-v2"]
    body = {"instances": X.tolist()}
    expected = models["sklearn"][1].predict(X)
    path = "/v1/models/sklearn-iris-v2:predict"
    by_host = door.client.post(
        path, json=body, headers={"Host": "sklearn-iris-v2.default.example.com"}
    )
    by_path = door.post(f"/serving/default/sklearn-iris-v2{path}", body)
    for answer in (by_host, by_path):
        assert answer.status_code == 200, answer.text
        assert_same_predictions(np.array(answer.json()["predictions"]), expected)
    elsewhere = door.client.get("/v2/health/ready", headers={"Host": "other.team.example.com"})
    assert elsewhere.status_code == 404
    assert door.get("/v2/health/ready").json() == {"ready": True}
    assert door.get("/v2/health/live").json() == {"live": True}


def test_transformer_in_front_of_the_predictor(services, models):
    door = services["sklearn-iris-transformer"]
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    records = [dict(zip(names, row, strict=True)) for row in X.tolist()]
    answer = door.post("/v1/models/sklearn-iris-transformer:predict", {"instances": records})
    assert answer.status_code == 200, answer.text
    classes = ["setosa", "versicolor", "virginica"]
    probabilities = models["sklearn"][1].predict_proba(X)
    labels = [classes[i] for i in probabilities.argmax(axis=1)]
    assert answer.json() == {"predictions": labels}
    assert "[transformer] started on" in door.log()
    # the transformer takes the most probable class: PREDICT_PROBA=true in the predictor's env
    # (the InferenceService's) overrides the runtime's false, as on KServe
    port = re.search(r"\[predictor\] started on http (\d+)", door.log()).group(1)
    path = "/v1/models/sklearn-iris-transformer:predict"
    predictor = httpx.post(f"http://127.0.0.1:{port}{path}", json={"instances": X.tolist()})
    assert predictor.status_code == 200, predictor.text
    assert_same_predictions(np.array(predictor.json()["predictions"]), probabilities)


def test_ready_reflects_every_component(services):
    """The transformer answers, but its predictor is frozen: the front door is not ready."""
    door = services["sklearn-iris-transformer"]
    assert httpx.get(f"{door.url}/v2/health/ready").json() == {"ready": True}
    predictor = int(re.search(r"\[predictor\] started on .* pid (\d+)", door.log()).group(1))
    frozen_pids = [predictor, *descendants(predictor)]  # the launcher runs serve in its own group
    for pid in frozen_pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        frozen = httpx.get(f"{door.url}/v2/health/ready", timeout=30)
        assert frozen.status_code == 503 and frozen.json() == {"ready": False}
    finally:
        for pid in frozen_pids:
            os.kill(pid, signal.SIGCONT)
    assert httpx.get(f"{door.url}/v2/health/ready", timeout=30).status_code == 200


def _graph_run_to_exit(manifest: Path, *extra: str, timeout: float = 60):
    """``graph run`` that is expected to stop on its own (a refusal, a failed fetch); a
    ``--port`` in ``extra`` replaces the free one."""
    return run_to_exit(
        [
            str(BIN / "modelshelf"),
            "graph",
            "run",
            str(manifest),
            "--port",
            str(free_port()),
            *extra,
        ],
        REPO,
        timeout=timeout,
    )


def test_a_storage_uri_that_is_not_there_stops_at_the_fetch(s3_server, kserve_secret):
    result = _graph_run_to_exit(
        KSERVE / "sklearn-iris.yaml",
        "--model-uri=s3://kserve-sklearn/missing",
        f"--secret={kserve_secret}",
        timeout=120,
    )
    assert result.returncode == 1
    assert "could not fetch storageUri s3://kserve-sklearn/missing" in result.stdout


def test_no_runtime_for_the_format_is_refused_with_the_reason(tmp_path):
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text(
        (KSERVE / "sklearn-iris-v2.yaml").read_text().replace("name: sklearn\n", "name: onnx\n")
    )
    result = _graph_run_to_exit(manifest)
    assert result.returncode == 2
    assert "no runtime supports format onnx:1 with protocol v2" in result.stdout


def test_a_document_that_is_not_an_object_is_named_not_a_traceback(tmp_path):
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text((KSERVE / "sklearn-iris-v2.yaml").read_text() + "\n---\njust a string\n")
    result = _graph_run_to_exit(manifest)
    assert result.returncode == 2
    assert "invalid manifest: kind: None is not one this project validates" in result.stdout
    assert "Traceback" not in result.stdout


def test_two_model_uris_for_an_inference_service_are_refused():
    result = _graph_run_to_exit(
        KSERVE / "sklearn-iris-v2.yaml", "--model-uri=/tmp/one", "--model-uri=predictor=/tmp/two"
    )
    assert result.returncode == 2
    assert (
        "--model-uri given 2 times (/tmp/one, /tmp/two): an InferenceService serves one model"
    ) in result.stdout


def test_a_role_other_than_the_predictor_in_model_uri_is_refused():
    """``transformer=DIR`` (or a typo) is no URI: refused, naming what to give instead."""
    result = _graph_run_to_exit(KSERVE / "sklearn-iris-v2.yaml", "--model-uri=transformer=/tmp/x")
    assert result.returncode == 2
    assert "--model-uri transformer=…: an InferenceService's model is its predictor's" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--port", "99999", "'99999' is not a port: a whole number 1-65535"),
        ("--ready-timeout", "-1", "'-1' is not a time: a number of seconds above 0"),
    ],
)
def test_a_port_or_timeout_out_of_range_is_refused_before_anything_starts(flag, value, words):
    result = _graph_run_to_exit(KSERVE / "sklearn-iris-v2.yaml", flag, value)
    assert result.returncode == 2
    assert words in result.stdout + result.stderr
