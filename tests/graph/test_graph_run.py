"""``modelshelf graph run`` on the manifests in manifests/seldon/: real server processes per node,
a real front door, real HTTP requests; models on disk or on the session's S3 server."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from microservice import (
    BIN,
    REPO,
    SERVERS,
    entered_in_parallel,
    free_port,
    run_to_exit,
    running_command,
)
from models import IRIS_X, IRIS_Y, assert_same_predictions, rows, save
from modelshelf import cli
from modelshelf.supervision import descendants

SELDON = REPO / "manifests" / "seldon"
READY_TIMEOUT = 150


def graph_command(manifest: Path, port: int, *extra: str) -> list[str]:
    return [str(BIN / "modelshelf"), "graph", "run", str(manifest), "--port", str(port), *extra]


@contextlib.contextmanager
def running_graph(
    manifest: Path, *extra: str, env: dict | None = None, crash_a_node: bool = False
) -> Iterator:
    """``modelshelf graph run`` until its front door is ready. Afterwards, check that SIGTERM
    ended it cleanly -- or, with ``crash_a_node``, that a node's server dying stopped the run --
    and that none of the node processes (and their children) is left running."""
    port = free_port()
    with running_command(
        graph_command(manifest, port, *extra),
        REPO,
        env=env,
        http_port=port,
        ready_timeout=READY_TIMEOUT,
        health_path="/ready",
    ) as door:
        launchers = [int(pid) for pid in re.findall(r"\bpid (\d+)", door.log())]
        nodes = descendants(door.process.pid)
        assert len(nodes) >= 3 * len(launchers), door.log()[-3000:]
        yield door
        if crash_a_node:  # the server under the node's entry point dies, as on a crash
            for pid in descendants(launchers[0]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert door.process.wait(60) == 1, door.log()[-3000:]
            assert "stopping the graph" in door.log()
        else:
            door.process.send_signal(signal.SIGTERM)
            assert door.process.wait(60) == 0, door.log()[-3000:]
    left = [pid for pid in nodes if _alive(pid)]
    assert not left, f"still running after graph run stopped: {left}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def predict(door, payload: dict):
    return door.post("/api/v1.0/predictions", payload)


def ndarray(values) -> dict:
    return {"data": {"ndarray": np.asarray(values).tolist()}}


def answer_array(body: dict) -> np.ndarray:
    data = body["data"]
    if "ndarray" in data:
        return np.array(data["ndarray"])
    return np.array(data["tensor"]["values"]).reshape(data["tensor"]["shape"])


# ---------------------------------------------------------------- every manifest, started at once


def needs_server(folder: str) -> bool:
    return (SERVERS / folder).is_dir()


@pytest.fixture(scope="module")
def chain_models(tmp_path_factory) -> dict[str, Path]:
    """scaler -> classifier -> scaler, the output scaler fitted on the classifier's outputs."""
    root = tmp_path_factory.mktemp("graph-models")
    scaler_in = StandardScaler().fit(IRIS_X)
    scaled = scaler_in.transform(IRIS_X)
    classifier = LogisticRegression(max_iter=1000).fit(scaled, IRIS_Y)
    scaler_out = StandardScaler().fit(classifier.predict_proba(scaled))
    return {
        "scaler-in": save(scaler_in, root / "scaler-in"),
        "classifier": save(classifier, root / "classifier"),
        "scaler-out": save(scaler_out, root / "scaler-out"),
    }


@pytest.fixture(scope="module")
def s3_secret(s3_server, tmp_path_factory) -> Path:
    """The manifests' Secret, holding the local S3 server's endpoint and keys."""
    wanted = {k: v for k, v in s3_server.env.items() if k != "AWS_DEFAULT_REGION"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "models-s3-credentials"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in wanted.items()},
    }
    path = tmp_path_factory.mktemp("secret") / "secret.yaml"
    path.write_text(json.dumps(secret))
    return path


def without_aws_env() -> dict[str, str]:
    """The test's environment minus AWS settings: the credentials must come from the secret."""
    return {k: "" for k in os.environ if k.startswith("AWS_")} | {"AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def served_models(tmp_path_factory, sklearn_models, s3_server) -> dict[str, tuple[str, object]]:
    """Per manifest: the model URI to serve and the in-process model to compare with."""
    root = tmp_path_factory.mktemp("served")
    served = {
        "sklearn": (
            s3_server.upload_folder(sklearn_models["iris"], "graph-sklearn", "iris"),
            joblib.load(sklearn_models["iris"] / "model.joblib"),
        )
    }
    if needs_server("xgboostserver"):
        import xgboost

        booster = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(IRIS_X, IRIS_Y == "setosa")
        (root / "xgb").mkdir()
        booster.save_model(root / "xgb" / "model.json")
        served["xgboost"] = (str(root / "xgb"), booster)
    if needs_server("mlflowserver"):
        import mlflow.sklearn

        model = LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS_Y)
        mlflow.sklearn.save_model(model, root / "mlflow")
        served["mlflow"] = (s3_server.upload_folder(root / "mlflow", "graph-mlflow", "iris"), model)
    return served


@pytest.fixture(scope="module")
def graphs(chain_models, served_models, s3_secret):
    """Every manifest under ``modelshelf graph run``, all started at once (they load in parallel).
    The S3 ones get their credentials only from the secret file, as the init container would.
    The sklearn one ends with its server killed: the run must stop by itself, leaving nothing."""
    secret = f"--secret={s3_secret}"
    runs = {
        "scaler": (
            "scaler-graph.yaml",
            [f"--model-uri={name}={path}" for name, path in chain_models.items()],
            None,
        ),
        "sklearn": (
            "sklearn-iris.yaml",
            [f"--model-uri=classifier={served_models['sklearn'][0]}", secret],
            without_aws_env(),
        ),
    }
    if "xgboost" in served_models:
        runs["xgboost"] = (
            "xgboost-iris.yaml",
            [f"--model-uri=classifier={served_models['xgboost'][0]}"],
            None,
        )
    if "mlflow" in served_models:
        runs["mlflow"] = (
            "mlflow-s3.yaml",
            [f"--model-uri=classifier={served_models['mlflow'][0]}", secret],
            without_aws_env(),
        )
    contexts = {
        name: running_graph(SELDON / manifest, *extra, env=env, crash_a_node=name == "sklearn")
        for name, (manifest, extra, env) in runs.items()
    }
    with entered_in_parallel(contexts) as doors:
        yield doors


def test_scaler_graph_equals_the_estimators_chained_in_process(graphs, chain_models):
    scaler_in, classifier, scaler_out = (
        joblib.load(chain_models[name] / "model.joblib")
        for name in ("scaler-in", "classifier", "scaler-out")
    )
    X = rows(5)
    response = predict(graphs["scaler"], ndarray(X))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = scaler_out.transform(classifier.predict_proba(scaler_in.transform(X)))
    assert_same_predictions(answer_array(body), expected)
    assert body["meta"]["requestPath"] == {
        "scaler-in": "modelshelf/sklearnserver:0.1.0",
        "scaler-out": "modelshelf/sklearnserver:0.1.0",
        "classifier": "modelshelf/sklearnserver:0.1.0",
    }
    assert body["meta"]["puid"]


def test_seldon_client_through_the_front_door(graphs, chain_models):
    from google.protobuf import json_format
    from seldon_core.seldon_client import SeldonClient

    scaler_in, classifier, scaler_out = (
        joblib.load(chain_models[name] / "model.joblib")
        for name in ("scaler-in", "classifier", "scaler-out")
    )
    X = rows(2)
    client = SeldonClient(
        gateway="istio",
        gateway_endpoint=f"127.0.0.1:{graphs['scaler'].http_port}",
        client_return_type="proto",  # the answer must parse as a SeldonMessage
    )
    result = client.predict(data=X, gateway_prefix="", transport="rest")
    assert result.success, result.msg
    body = json_format.MessageToDict(result.response)
    expected = scaler_out.transform(classifier.predict_proba(scaler_in.transform(X)))
    assert_same_predictions(answer_array(body), expected)
    assert set(body["meta"]["requestPath"]) == {"scaler-in", "scaler-out", "classifier"}


def test_a_nodes_error_comes_back_with_its_status_and_message(graphs):
    door = graphs["scaler"]
    response = predict(door, ndarray([[1.0, 2.0, 3.0]]))
    assert response.status_code == 400, response.text
    info = response.json()["status"]["info"]
    assert info == "node 'scaler-in': expected 4 features per row, got 3"
    assert predict(door, {"data": {"ndarray": "x"}}).status_code == 400
    not_json = door.client.post(
        "/api/v1.0/predictions", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert predict(door, ndarray(rows(1))).status_code == 200


def test_metadata_of_every_node(graphs):
    meta = graphs["scaler"].get("/api/v1.0/metadata").json()
    assert set(meta["models"]) == {"scaler-in", "scaler-out", "classifier"}
    assert meta["models"]["classifier"]["platform"] == "sklearn"


def test_sklearn_manifest_with_the_model_on_s3(graphs, served_models):
    X = rows(3)
    body = predict(graphs["sklearn"], ndarray(X)).json()
    assert_same_predictions(answer_array(body), served_models["sklearn"][1].predict_proba(X))
    assert body["data"]["names"] == ["setosa", "versicolor", "virginica"]
    assert body["meta"]["requestPath"] == {"classifier": "modelshelf/sklearnserver:0.1.0"}


def test_xgboost_manifest(graphs, served_models):
    if "xgboost" not in graphs:
        pytest.skip("servers/xgboostserver does not exist yet")
    X = rows(3)
    response = predict(graphs["xgboost"], ndarray(X))
    assert response.status_code == 200, response.text
    expected = served_models["xgboost"][1].predict_proba(X)
    np.testing.assert_allclose(answer_array(response.json()).reshape(3, -1)[:, -1], expected[:, -1])
    assert response.json()["meta"]["requestPath"] == {
        "classifier": "modelshelf/xgboostserver:0.1.0"
    }


def test_mlflow_manifest_with_the_secret_and_the_model_on_s3(graphs, served_models):
    if "mlflow" not in graphs:
        pytest.skip("servers/mlflowserver does not exist yet")
    X = rows(3)
    response = predict(graphs["mlflow"], ndarray(X))
    assert response.status_code == 200, response.text
    expected = served_models["mlflow"][1].predict(X)
    assert np.ravel(answer_array(response.json())).tolist() == expected.tolist()
    assert response.json()["meta"]["requestPath"] == {"classifier": "modelshelf/mlflowserver:0.1.0"}


def test_a_model_uri_that_is_not_there_stops_the_run_at_the_fetch(s3_server, s3_secret):
    s3_server.client().create_bucket(Bucket="graph-empty")
    result = run_to_exit(
        graph_command(
            SELDON / "sklearn-iris.yaml",
            free_port(),
            "--model-uri=classifier=s3://graph-empty/no-such-model",
            f"--secret={s3_secret}",
        ),
        REPO,
        env=without_aws_env(),
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "node 'classifier' could not fetch modelUri s3://graph-empty/no-such-model" in (
        result.stdout
    )


# ---------------------------------------------------------------- refused before anything starts


def refused(manifest_text: str, tmp_path: Path, *extra: str) -> str:
    """``modelshelf graph run``'s error output, run in-process: it must refuse before it starts
    anything."""
    manifest = tmp_path / "graph.yaml"
    manifest.write_text(manifest_text)
    error = io.StringIO()
    with contextlib.redirect_stderr(error):
        code = cli.main(["graph", "run", str(manifest), "--port", str(free_port()), *extra])
    assert code == 2, error.getvalue()
    return error.getvalue()


def test_implementation_modelshelf_cannot_run_points_at_the_field(tmp_path):
    text = (SELDON / "scaler-graph.yaml").read_text()
    text = text.replace("implementation: SKLEARN_SERVER", "implementation: TENSORFLOW_SERVER")
    error = refused(text, tmp_path)
    assert (
        "spec.predictors[0].graph.children[0].children[0].implementation: 'TENSORFLOW_SERVER' "
        "cannot run here" in error
    )


def test_unknown_implementation_points_at_the_field(tmp_path):
    text = (SELDON / "sklearn-iris.yaml").read_text()
    error = refused(text.replace("SKLEARN_SERVER", "SKLEARN_SEVER"), tmp_path)
    assert "spec.predictors[0].graph.implementation: 'SKLEARN_SEVER' is not one of" in error


def test_foreign_image_points_at_the_node(tmp_path):
    text = (SELDON / "scaler-graph.yaml").read_text()
    text = text.replace(
        "- name: scaler-out\n                image: modelshelf/sklearnserver:0.1.0",
        "- name: scaler-out\n                image: example/custom-transformer:1.0",
    )
    error = refused(text, tmp_path)
    assert "spec.predictors[0].graph.children[0].name: container 'scaler-out' has image" in error


def test_schema_error_stops_graph_run(tmp_path):
    text = (SELDON / "sklearn-iris.yaml").read_text().replace("modelUri:", "modelUrl:")
    error = refused(text, tmp_path)
    assert "spec.predictors[0].graph: Additional properties are not allowed ('modelUrl'" in error


def test_model_uri_for_a_node_that_does_not_exist(tmp_path):
    text = (SELDON / "sklearn-iris.yaml").read_text()
    error = refused(text, tmp_path, "--model-uri=clasifier=/tmp")
    assert "no graph node named 'clasifier'" in error


def test_a_node_given_two_model_uris_is_refused_naming_both(tmp_path):
    """``--model-uri`` is repeatable, one per node: the same node twice was the last one
    silently winning."""
    text = (SELDON / "sklearn-iris.yaml").read_text()
    error = refused(
        text,
        tmp_path,
        "--model-uri=classifier=s3://a/one",
        "--model-uri=classifier=https://user:pw@host/two?sig=secret",
    )
    assert (
        "--model-uri names 'classifier' twice (s3://a/one, then "
        "https://<redacted>@host/two?sig=<redacted>): give each NODE once"
    ) in error
    assert "pw" not in error and "secret" not in error
