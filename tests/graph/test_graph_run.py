"""``modelshelf graph run`` on the manifests in manifests/seldon/: real server processes per node,
a real front door, real HTTP requests; models on disk or on the session's S3 server."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient
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
from prometheus import sample, scrape

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


# ---------------------------------------------------------------- feedback and the gateway prefix
# Feedback and the gateway's /seldon/NAMESPACE/NAME/ prefix, asked with the real SeldonClient as a
# user would through Istio or Ambassador. Two runs: the bandit graph (templates/router's
# epsilon-greedy MyRouter over two GraphUnit models, see components/bandit-graph.yaml) and
# scaler-graph.yaml (TRANSFORMER -> MODEL -> OUTPUT_TRANSFORMER). Which node got feedback is read
# from each node's own metrics port (seldon_api_model_feedback_total), which the run's log names.

COMPONENTS = Path(__file__).resolve().parent / "components"
BANDIT = COMPONENTS / "bandit-graph.yaml"
FEEDBACK_TOTAL = "seldon_api_model_feedback_total"


@pytest.fixture(scope="module")
def doors(tmp_path_factory, chain_models):
    """The bandit graph and the scaler graph, running at once. graph run starts only modelshelf
    images, so the bandit's images pick folders of a servers dir holding the test components."""
    servers = tmp_path_factory.mktemp("servers")
    (servers / "xgboostserver").mkdir()
    shutil.copy(REPO / "templates" / "router" / "MyRouter.py", servers / "xgboostserver")
    (servers / "sklearnserver").mkdir()
    shutil.copy(COMPONENTS / "GraphUnit.py", servers / "sklearnserver")
    contexts = {
        "bandit": running_graph(BANDIT, f"--servers-dir={servers}"),
        "scaler": running_graph(
            SELDON / "scaler-graph.yaml",
            *[f"--model-uri={name}={path}" for name, path in chain_models.items()],
        ),
    }
    with entered_in_parallel(contexts) as running:
        yield running


def seldon_client(door, **options) -> SeldonClient:
    return SeldonClient(
        gateway_endpoint=f"127.0.0.1:{door.http_port}",
        transport="rest",
        client_return_type="proto",  # every answer must parse as a SeldonMessage
        **options,
    )


def feedback_counts(door) -> dict[str, float]:
    """Feedback requests each node has answered, from its metrics port named in the run's log."""
    counts = {}
    for node, port in re.findall(r"\[([\w-]+)\] started .* metrics (\d+),", door.log()):
        page = scrape(SimpleNamespace(metrics_port=int(port), client=door.client))
        counts[node] = sample(page, FEEDBACK_TOTAL, model_name=node) or 0.0
    return counts


def feedback_counts_become(door, expected: dict[str, float], timeout: float = 30) -> dict:
    """The counts once they equal ``expected`` (a node's metrics may lag its answer), or as
    they are at the deadline."""
    deadline = time.monotonic() + timeout
    while (counts := feedback_counts(door)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return counts


def client_answer(result) -> dict:
    assert result.success, result.msg
    return json_format.MessageToDict(result.response)


def test_router_learns_from_feedback_sent_through_the_gateway(doors):
    """epsilon 0: the router picks the best mean reward (ties: the first child). A reward of -1
    for the branch it chose makes the other one the best; the feedback reached that branch's
    model and the router, not the other model."""
    door = doors["bandit"]
    seldon = seldon_client(door, gateway="istio", namespace="models", deployment_name="bandit")
    X = np.array([[1.0, 5.0]])
    before = feedback_counts(door)
    first = seldon.predict(data=X)
    body = client_answer(first)
    chosen = body["meta"]["routing"]["router"]
    factor = {0: 2.0, 1: 3.0}
    np.testing.assert_array_equal(answer_array(body), X * factor[chosen])

    result = seldon.feedback(
        prediction_request=first.request, prediction_response=first.response, reward=-1.0
    )
    client_answer(result)  # a SeldonMessage, from the router
    rewarded = "double" if chosen == 0 else "triple"
    expected = {**before, "router": before["router"] + 1, rewarded: before[rewarded] + 1}
    assert feedback_counts_become(door, expected) == expected  # not the other model

    body = client_answer(seldon.predict(data=X))
    assert body["meta"]["routing"]["router"] == 1 - chosen
    np.testing.assert_array_equal(answer_array(body), X * factor[1 - chosen])


def test_feedback_goes_to_the_model_and_not_to_the_transformers(doors):
    """scaler-graph's manifest has no namespace: any namespace, or none, reaches it."""
    door = doors["scaler"]
    seldon = seldon_client(door, gateway="ambassador", deployment_name="scaler-graph")
    first = seldon.predict(data=rows(2))
    client_answer(first)
    before = feedback_counts(door)
    assert set(before) == {"scaler-in", "scaler-out", "classifier"}
    result = seldon.feedback(
        prediction_request=first.request, prediction_response=first.response, reward=1.0
    )
    client_answer(result)
    expected = {**before, "classifier": before["classifier"] + 1}
    assert feedback_counts_become(door, expected) == expected
    elsewhere = seldon_client(
        door, gateway="istio", namespace="team-a", deployment_name="scaler-graph"
    )
    client_answer(elsewhere.predict(data=rows(1)))


def test_another_deployment_or_namespace_is_not_found(doors):
    door = doors["bandit"]
    here = seldon_client(door, gateway="ambassador", namespace="models", deployment_name="bandit")
    client_answer(here.predict(data=np.array([[0.0, 1.0]])))
    for options in (
        {"namespace": "models", "deployment_name": "scaler-graph"},
        {"namespace": "staging", "deployment_name": "bandit"},  # the manifest says models
        {"deployment_name": "other"},
    ):
        seldon = seldon_client(door, gateway="istio", **options)
        result = seldon.predict(data=np.array([[0.0, 1.0]]))
        assert not result.success and result.msg.startswith("404"), (options, result.msg)
        assert not seldon.feedback(prediction_request=result.request, reward=1.0).success
    response = door.post("/seldon/models/other/api/v1.0/predictions", {"data": {"ndarray": [[0]]}})
    assert response.status_code == 404
    assert "this front door serves models/bandit" in response.json()["status"]["info"]
    response = door.post("/api/v1.0/predictions", {"data": {"ndarray": [[0.0, 1.0]]}})
    assert response.status_code == 200, response.text  # no prefix: as before


def test_feedback_naming_a_child_that_does_not_exist_is_refused(doors):
    door = doors["bandit"]
    before = feedback_counts(door)
    feedback = {
        "request": {"data": {"ndarray": [[0.0, 1.0]]}},
        "response": {"data": {"ndarray": [[0.0, 2.0]]}, "meta": {"routing": {"router": 5}}},
        "reward": 1.0,
    }
    response = door.post("/seldon/models/bandit/api/v1.0/feedback", feedback)
    assert response.status_code == 400, response.text
    assert response.json()["status"]["info"] == (
        "response.meta.routing.router: 5 is not a child of 'router': expected -1 (all) or 0..1"
    )
    assert feedback_counts(door) == before
    feedback["response"]["meta"]["routing"]["router"] = 1
    response = door.post("/api/v1.0/feedback", {**feedback, "reward": "much"})
    assert response.status_code == 400, response.text  # the node's own check, named
    assert response.json()["status"]["info"].startswith("node 'triple': ")
    assert feedback_counts(door) == before
    # the same feedback with a reward it reads reaches the router and 'triple': the counts move
    # when a feedback is taken, so the two refused ones above were not (a reward of 0 is not
    # counted by seldon-core's metrics)
    response = door.post("/api/v1.0/feedback", {**feedback, "reward": 1.0})
    assert response.status_code == 200, response.text
    expected = {**before, "router": before["router"] + 1, "triple": before["triple"] + 1}
    assert feedback_counts_become(door, expected) == expected
