"""Our servers' own custom metrics reach seldon-core's metrics port (``/prometheus``)."""

from __future__ import annotations

import time

import pytest

from microservice import BIN, SERVERS, free_port, running_command, seldon_parameters
from models import rows
from modelshelf.server import METRICS_INTERVAL
from prometheus import sample, scrape

#: The path the Seldon operator sets (seldon-core's own default is /metrics).
METRICS_ENV = {"PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus"}


@pytest.fixture(scope="module")
def iris(sklearn_models):
    """SKLearnServer, REST only (GRPC_WORKERS=0): the metrics do not depend on the transport."""
    http_port, metrics_port = free_port(), free_port()
    command = [
        str(BIN / "seldon-core-microservice"),
        "SKLearnServer",
        "--parameters",
        seldon_parameters(model_uri=sklearn_models["iris"]),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
    ]
    env = {**METRICS_ENV, "GRPC_WORKERS": "0"}
    cwd = SERVERS / "sklearnserver"
    with running_command(command, cwd, env, http_port, None, metrics_port, 120) as service:
        yield service


def test_predictions_per_model_method_and_load_time(iris):
    payload = {"data": {"ndarray": rows(2).tolist()}}
    assert iris.post("/api/v1.0/predictions", payload).status_code == 200
    text = scrape(iris)
    assert sample(text, "modelshelf_predictions_total", model_method="predict_proba") == 1
    load_seconds = sample(text, "modelshelf_model_load_seconds")
    assert load_seconds is not None and 0 < load_seconds < 60

    for _ in range(3):  # within the interval: counted, handed over with a later request
        assert iris.post("/api/v1.0/predictions", payload).status_code == 200
    time.sleep(METRICS_INTERVAL + 0.1)
    assert iris.post("/api/v1.0/predictions", payload).status_code == 200
    text = scrape(iris)
    assert sample(text, "modelshelf_predictions_total", model_method="predict_proba") == 5


def test_failed_requests_are_not_counted_as_predictions(iris):
    before = sample(scrape(iris), "modelshelf_predictions_total", model_method="predict_proba")
    bad = {"data": {"ndarray": [[1.0, 2.0]]}}
    for _ in range(3):
        assert iris.post("/api/v1.0/predictions", bad).status_code == 400
    time.sleep(METRICS_INTERVAL + 0.1)
    good = {"data": {"ndarray": rows(1).tolist()}}
    assert iris.post("/api/v1.0/predictions", good).status_code == 200
    after = sample(scrape(iris), "modelshelf_predictions_total", model_method="predict_proba")
    assert after == before + 1
