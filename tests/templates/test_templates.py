"""Each template under a real seldon-core-microservice, as its .s2i/environment says to run it."""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from microservice import (
    BIN,
    REPO,
    free_port,
    run_to_exit,
    running_command,
    seldon_parameters,
)
from prometheus import sample, scrape
from redisserver import running_redis

TEMPLATES = REPO / "templates"
#: The environment the Seldon operator gives a graph container (metrics path included).
OPERATOR_ENV = {
    "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
    "SELDON_DEPLOYMENT_ID": "templates-test",
    "PREDICTOR_ID": "default",
    "GRPC_WORKERS": "0",  # REST is what these tests speak; one process fewer to start
}
#: The router runs under seldon-core-microservice; the stateless templates under the default
#: front end (modelshelf serve): both take the same class, and both call its load().
SELDON_FRONTEND = {"MODELSHELF_FRONTEND": "seldon"}
LAUNCHER = [str(BIN / "modelshelf"), "run"]


def s2i_environment(folder: Path) -> dict[str, str]:
    lines = (folder / ".s2i" / "environment").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def launcher_env(name: str, parameters: str, extra: dict | None = None) -> dict[str, str]:
    """The container's environment: the template's .s2i/environment, what the operator adds."""
    return {
        **s2i_environment(TEMPLATES / name),
        **OPERATOR_ENV,
        "PREDICTIVE_UNIT_ID": name,
        "PREDICTIVE_UNIT_PARAMETERS": parameters,
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(free_port()),
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(free_port()),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(free_port()),
        **(extra or {}),
    }


@contextlib.contextmanager
def running_template(name: str, parameters: str = "[]", env: dict | None = None) -> Iterator:
    """``modelshelf run`` (the images' entry point) in the template's folder."""
    full_env = launcher_env(name, parameters, env)
    with running_command(
        LAUNCHER,
        TEMPLATES / name,
        full_env,
        int(full_env["PREDICTIVE_UNIT_HTTP_SERVICE_PORT"]),
        None,
        int(full_env["PREDICTIVE_UNIT_METRICS_SERVICE_PORT"]),
        ready_timeout=120,
        health_path="/health/ping",
    ) as service:
        yield service


def ndarray(body: dict) -> np.ndarray:
    return np.array(body["data"]["ndarray"])


def prometheus_sample(
    service, name: str, expected: float, timeout: float = 10, **labels: str
) -> float | None:
    """The sample once it equals ``expected`` (or the last one read after ``timeout``): custom
    metrics reach the metrics process asynchronously (a queue under ``modelshelf serve``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = sample(scrape(service), name, **labels)
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


#: The stateless templates and their parameters, started side by side once for the module.
STATELESS = {
    "model": seldon_parameters(weight=2.0),
    "transformer": seldon_parameters(offset=1.0, scale=2.0),
    "combiner": "[]",
    "outlier-detector": seldon_parameters(threshold=3.0),
}


@pytest.fixture(scope="module")
def templates() -> Iterator[dict]:
    """Start them concurrently and stop them concurrently: both are mostly waiting."""
    managers = {name: running_template(name, params) for name, params in STATELESS.items()}
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = {name: pool.submit(cm.__enter__) for name, cm in managers.items()}
        started = [name for name, future in futures.items() if future.exception() is None]
        try:
            for future in futures.values():
                future.result()  # the first start-up failure, if any
            yield {name: futures[name].result() for name in started}
        finally:
            stops = [pool.submit(managers[name].__exit__, None, None, None) for name in started]
            for stop in stops:
                stop.result()


def test_model_predicts_with_its_parameters_tags_and_metrics(templates):
    svc = templates["model"]
    X = [[1.0, 2.0], [3.0, 4.0]]
    for path in ("/predict", "/api/v1.0/predictions"):
        response = svc.post(path, {"data": {"ndarray": X}})
        assert response.status_code == 200, response.text
        body = response.json()
        np.testing.assert_array_equal(ndarray(body), [[6.0], [14.0]])
        assert body["data"]["names"] == ["score"]
        assert body["meta"]["tags"] == {"model": "MyModel"}
    assert prometheus_sample(svc, "mymodel_rows_scored", 4) == 4


def test_transformer_answers_transform_input_and_output(templates):
    svc = templates["transformer"]
    body = svc.post("/transform-input", {"data": {"ndarray": [[1.0, 3.0]]}}).json()
    np.testing.assert_array_equal(ndarray(body), [[0.0, 1.0]])
    body = svc.post("/transform-output", {"data": {"ndarray": [[0.12345]]}}).json()
    np.testing.assert_array_equal(ndarray(body), [[0.123]])


def test_combiner_averages_its_childrens_outputs(templates):
    svc = templates["combiner"]
    messages = [{"data": {"ndarray": [[1.0, 2.0]]}}, {"data": {"ndarray": [[3.0, 6.0]]}}]
    response = svc.post("/aggregate", {"seldonMessages": messages})
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(ndarray(response.json()), [[2.0, 4.0]])


def test_outlier_detector_passes_the_request_on_and_tags_scores(templates):
    svc = templates["outlier-detector"]
    X = [[0.5, -1.0], [10.0, 0.0]]
    body = svc.post("/transform-input", {"data": {"ndarray": X}}).json()
    np.testing.assert_array_equal(ndarray(body), X)
    assert body["meta"]["tags"]["outlierScore"] == [1.0, 10.0]
    assert prometheus_sample(svc, "outliers_detected_total", 1) == 1


def feedback(branch: int, reward: float, full: bool = True) -> dict:
    """Seldon's Feedback message; ``full=False``: only the routing and the reward (README)."""
    message = {"response": {"meta": {"routing": {"router": branch}}}, "reward": reward}
    if full:
        message["request"] = {"data": {"ndarray": [[1.0, 2.0]]}}
        message["response"]["data"] = {"ndarray": [[0.0]]}
    return message


def route(svc) -> int:
    response = svc.post("/route", {"data": {"ndarray": [[1.0, 2.0]]}})
    assert response.status_code == 200, response.text
    return int(ndarray(response.json()).ravel()[0])


def test_bandit_router_learns_from_feedback_and_remembers_it_in_redis():
    """PERSISTENCE=1 is the router template's setting: ``modelshelf run`` turns it on."""
    assert s2i_environment(TEMPLATES / "router")["PERSISTENCE"] == "1"
    params = seldon_parameters(n_branches=2, epsilon=0.0)
    with running_redis() as redis_server:
        env = {**redis_server.env, **SELDON_FRONTEND, "PERSISTENCE_PERIOD": "0.2"}
        key = "modelshelf:state:templates-test:default:router"
        with running_template("router", params, env) as svc:
            assert route(svc) == 0  # nothing learned: the first branch
            response = svc.post("/send-feedback", feedback(branch=1, reward=1.0))
            assert response.status_code == 200, response.text
            assert route(svc) == 1  # the only branch with a reward
            assert prometheus_sample(svc, "myrouter_feedback", 1, branch="1") == 1
            deadline = time.monotonic() + 10
            saved = None
            while time.monotonic() < deadline:
                blob = redis_server.client().get(key)
                saved = pickle.loads(blob) if blob else None
                if saved and saved["pulls"] == [0, 1]:
                    break
                time.sleep(0.1)
            assert saved == {"pulls": [0, 1], "rewards": [0.0, 1.0]}

        with running_template("router", params, env) as svc:
            assert route(svc) == 1  # restored from Redis, before any new feedback
            for branch, reward in ((1, 0.0), (1, 0.0), (0, 1.0)):
                response = svc.post("/send-feedback", feedback(branch, reward, full=False))
                assert response.status_code == 200, response.text
            assert route(svc) == 0  # mean 1.0 beats 1/3


def test_persistent_router_stops_at_start_when_redis_is_unreachable():
    port = free_port()  # nothing listens there
    redis_env = {
        "REDIS_SERVICE_HOST": "127.0.0.1",
        "REDIS_SERVICE_PORT": str(port),
        **SELDON_FRONTEND,
    }
    env = launcher_env("router", "[]", redis_env)
    result = run_to_exit(LAUNCHER, TEMPLATES / "router", 120, env)
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"Redis at 127.0.0.1:{port}" in result.stdout
    assert "REDIS_SERVICE_HOST" in result.stdout


#: The Seldon component templates (kserve-model, the KServe-style package, has its own test).
SELDON_TEMPLATES = sorted(p.name for p in TEMPLATES.iterdir() if (p / ".s2i").is_dir())


@pytest.mark.parametrize("name", SELDON_TEMPLATES)
def test_template_files_agree_with_each_other(name):
    """Class = file name = MODEL_NAME; Dockerfile ENV = .s2i/environment; a valid manifest."""
    folder = TEMPLATES / name
    environment = s2i_environment(folder)
    model_name = environment["MODEL_NAME"]
    source = (folder / f"{model_name}.py").read_text()
    assert f"class {model_name}" in source
    assert set(environment) == {"MODEL_NAME", "API_TYPE", "SERVICE_TYPE", "PERSISTENCE"}
    dockerfile = (folder / "Dockerfile").read_text()
    env_line = next(line for line in dockerfile.splitlines() if line.startswith("ENV "))
    assert dict(pair.split("=", 1) for pair in env_line.split()[1:]) == environment
    assert f"COPY {model_name}.py" in dockerfile
    assert "requirements.txt" in dockerfile
    assert (folder / "requirements.txt").is_file()

    crd = pytest.importorskip("modelshelf.graph.crd", reason="the CRD validator")
    manifest = pytest.importorskip("modelshelf.graph.manifest", reason="the graph checks")
    (deployment,) = crd.load_file(folder / "seldondeployment.yaml")
    assert crd.validate_object(deployment) == []
    assert manifest.deployment_problems(deployment) == []
    graph = deployment["spec"]["predictors"][0]["graph"]
    graph_type = {"OUTLIER_DETECTOR": "TRANSFORMER"}.get(environment["SERVICE_TYPE"])
    nodes = _nodes(graph)
    assert (graph_type or environment["SERVICE_TYPE"]) in {node["type"] for node in nodes}


def _nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("children", []) for n in _nodes(child))]


@pytest.mark.parametrize("frontend", ["seldon", "modelshelf"])
def test_launcher_serves_a_persistent_subclass_only_when_persistence_is_1(frontend):
    from modelshelf.launcher import LaunchSettings

    folder = TEMPLATES / "router"
    for flag, served in (("1", "modelshelf.persistence.MyRouter"), ("0", "MyRouter")):
        env = {**s2i_environment(folder), "PERSISTENCE": flag, "MODELSHELF_FRONTEND": frontend}
        command = LaunchSettings.from_environ(env, folder).frontend_step().command
        assert command[command.index("--service-type") - 1] == served
