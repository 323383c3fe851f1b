"""The same requests to ``seldon-core-microservice`` and to ``modelshelf serve``: same answers.

For each class (our SKLearn, XGBoost and MLflow servers, and a small user class of every service
type) both front ends run side by side; every case below goes to both and the
status, the content type and the body (parsed JSON: same keys, equal numbers) must match;
but an unknown path, a 404 for every class on purpose (``UNKNOWN_PATHS``).
"""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from frontends import COMPONENTS, MODELSHELF, SELDON, Launch, finish, running, start
from prometheus_client.parser import text_string_to_metric_families

import models
from microservice import SERVERS, Microservice, seldon_parameters, wait_until_healthy

ND = {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}
ND2 = {"data": {"names": ["a", "b", "c", "d"], "ndarray": [[5.1, 3.5, 1.4, 0.2], [6, 3, 4.8, 1]]}}
TENSOR = {"data": {"tensor": {"shape": [2, 4], "values": [5.1, 3.5, 1.4, 0.2, 6.0, 3.0, 4.8, 1.8]}}}
META = {
    "meta": {"puid": "abc123", "tags": {"caller": "test"}, "requestPath": {"up": "img:1"}},
    "data": {"ndarray": [[1, 2, 3, 4]]},
}
FEEDBACK = {
    "request": ND,
    "response": {"data": {"ndarray": [[0.1, 0.9]]}, "meta": {"routing": {"router": 1}}},
    "reward": 1.0,
}
BOTH = ThreadPoolExecutor(1, thread_name_prefix="seldon-request")
# Enough rows for modelshelf's C conversions (modelshelf.serve.ndarray.MIN_ROWS) to apply.
ROWS = [[5.1 + i / 7, 3.5 - i / 3, 1.4 * i, 0.2 + i] for i in range(24)]
INT_ROWS = [[i, 2 * i, 3, 4] for i in range(12)]


def rows_then(last: list) -> dict:
    """Eleven good rows, then ``last``: the odd one is found after the first rows passed."""
    return {"data": {"ndarray": [*ROWS[:11], last]}}


def post(path: str, payload: object, **kwargs: object) -> tuple:
    return ("POST", path, {"json": payload, **kwargs})


def raw(path: str, content: str | bytes, content_type: str = "application/json") -> tuple:
    return ("POST", path, {"content": content, "headers": {"content-type": content_type}})


CASES: dict[str, tuple] = {
    "ndarray": post("/api/v1.0/predictions", ND),
    "ndarray names 2 rows": post("/api/v1.0/predictions", ND2),
    "tensor": post("/api/v1.0/predictions", TENSOR),
    "ints": post("/api/v0.1/predictions", {"data": {"ndarray": [[1, 2, 3, 4]]}}),
    "strings ndarray": post("/predict", {"data": {"ndarray": [["a", "b", "c", "d"]]}}),
    "strData": post("/api/v1.0/predictions", {"strData": "hello world"}),
    "jsonData": post("/api/v1.0/predictions", {"jsonData": {"x": [1, 2], "y": "z"}}),
    "jsonData raising ValueError": post("/api/v1.0/predictions", {"jsonData": {"fail": 3}}),
    "jsonData numpy scalar out": post("/api/v1.0/predictions", {"jsonData": {"numpy": 3}}),
    "jsonData null": post("/api/v1.0/predictions", {"jsonData": {"x": None}}),
    "jsonData integers beyond 64 bits": post(
        "/api/v1.0/predictions", {"jsonData": {"x": [2**64, -(2**63) - 1, 2**63]}}
    ),
    "infinite output": post("/api/v1.0/predictions", {"data": {"ndarray": [[1e308, 1, 2, 3]]}}),
    "binData": post("/api/v1.0/predictions", {"binData": base64.b64encode(b"\x00bin").decode()}),
    "meta tags puid requestPath": post("/api/v1.0/predictions", META),
    "empty data": post("/api/v1.0/predictions", {"data": {}}),
    "no data": post("/api/v1.0/predictions", {"something": 1}),
    "ragged ndarray": post("/api/v1.0/predictions", {"data": {"ndarray": [[1, 2], [3]]}}),
    # Many rows: what modelshelf converts in C must read and answer as seldon-core does.
    "rows": post("/api/v1.0/predictions", {"data": {"names": list("abcd"), "ndarray": ROWS}}),
    "rows of ints": post("/api/v1.0/predictions", {"data": {"ndarray": INT_ROWS}}),
    "rows ints and floats": post("/predict", {"data": {"ndarray": INT_ROWS[:6] + ROWS[:6]}}),
    "rows of booleans": post("/predict", {"data": {"ndarray": [[True, False, True, True]] * 9}}),
    "rows ragged": post("/api/v1.0/predictions", rows_then([1, 2, 3])),
    "rows a list among numbers": post("/api/v1.0/predictions", rows_then([1.0, [2.0], 3.0, 4.0])),
    "rows of strings": post("/api/v1.0/predictions", {"data": {"ndarray": [list("abcd")] * 9}}),
    "rows a string among numbers": post("/api/v1.0/predictions", rows_then([1.0, "2", 3.0, 4.0])),
    "rows with a null": post("/api/v1.0/predictions", rows_then([1.0, None, 3.0, 4.0])),
    "rows too big for int64": post(
        "/api/v1.0/predictions", {"data": {"ndarray": [[2**64, 1.5, 1, 2]] * 9}}
    ),
    "rows nested deeper": post("/api/v1.0/predictions", {"data": {"ndarray": [ROWS[:2]] * 9}}),
    "rows that are strings": post("/api/v1.0/predictions", {"data": {"ndarray": ["abcd"] * 9}}),
    "rows empty": post("/api/v1.0/predictions", {"data": {"ndarray": [[]] * 9}}),
    "ndarray empty": post("/api/v1.0/predictions", {"data": {"ndarray": []}}),
    "rows infinite output": post("/api/v1.0/predictions", rows_then([1e308, 1, 2, 3])),
    "rows NaN": raw("/api/v1.0/predictions", json.dumps(rows_then([float("nan")] * 4))),
    "rows with meta": post("/api/v1.0/predictions", {**META, "data": {"ndarray": INT_ROWS}}),
    "bad tensor shape": post(
        "/api/v1.0/predictions", {"data": {"tensor": {"shape": [3, 4], "values": [1, 2]}}}
    ),
    "wrong feature count": post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}}),
    "not json": raw("/api/v1.0/predictions", "this is not json"),
    "json null": raw("/api/v1.0/predictions", "null"),
    "json list": raw("/api/v1.0/predictions", "[1, 2]"),
    "empty body": raw("/api/v1.0/predictions", ""),
    "NaN": raw("/api/v1.0/predictions", '{"data": {"ndarray": [[NaN, 1, 2, 3]]}}'),
    "text/plain json": raw("/api/v1.0/predictions", json.dumps(ND), "text/plain"),
    "charset json": raw("/api/v1.0/predictions", json.dumps(ND), "application/json; charset=utf-8"),
    "vendor +json": raw("/api/v1.0/predictions", json.dumps(ND), "application/vnd.x+json"),
    "form json=": ("POST", "/predict", {"data": {"json": json.dumps(ND)}}),
    "form without json": ("POST", "/predict", {"data": {"other": "1"}}),
    "query json=": ("GET", "/predict?json=" + json.dumps(ND), {}),
    "multipart strData": ("POST", "/predict", {"files": {"strData": ("s.txt", b"from a file")}}),
    "cors origin": post("/api/v1.0/predictions", ND, headers={"origin": "http://x.example"}),
    "transform-input": post("/transform-input", ND2),
    "transform-input strData": post("/transform-input", {"strData": "text"}),
    "transform-output": post("/transform-output", TENSOR),
    "transform-output meta": post("/transform-output", META),
    "route": post("/route", ND),
    "route odd": post("/route", {"data": {"ndarray": [[3, 0, 0, 0]]}}),
    "aggregate": post(
        "/aggregate", {"seldonMessages": [ND, {"data": {"ndarray": [[1, 1, 1, 1]]}}]}
    ),
    "aggregate tensors": post("/aggregate", {"seldonMessages": [TENSOR, TENSOR]}),
    "aggregate bad": post("/aggregate", ND),
    "send-feedback": post("/send-feedback", FEEDBACK),
    "feedback v1": post("/api/v1.0/feedback", FEEDBACK),
    "feedback bad": post("/api/v1.0/feedback", {"reward": "x"}),
    "ping": ("GET", "/health/ping", {}),
    "status": ("GET", "/health/status", {}),
    "status v1": ("GET", "/api/v1.0/health/status", {}),
    "metadata": ("GET", "/metadata", {}),
    "metadata v1": ("GET", "/api/v1.0/metadata", {}),
    "seldon.json": ("GET", "/seldon.json", {}),
    "unknown path": ("GET", "/no/such/path", {}),
    "POST to an unknown path": post("/no/such/path", ND),
    "GET on POST-only": ("GET", "/api/v1.0/predictions", {}),
    "PUT predict": ("PUT", "/predict", {"json": ND}),
}

#: The one answer ``modelshelf serve`` changes on purpose: a path no route serves is a 404 for
#: every class, as our classes' guard answers it under seldon-core too. For a class without the
#: guard seldon-core's catch-all handler makes it a 500 (text "404 Not Found", or for a POST
#: "405 Method Not Allowed": its static files rule takes every path for GET), which a client
#: cannot tell from a failing model.
UNKNOWN_PATHS = frozenset({"unknown path", "POST to an unknown path"})


def _not_found(method: str, path: str) -> tuple:
    """Our guard's answer to a path no route serves."""
    info = f"{method} {path}: Not Found"
    status = {"code": -1, "info": info, "reason": "MICROSERVICE_NOT_FOUND", "status": 1}
    return 404, "application/json", {"status": status}


IRIS = SERVERS / "sklearnserver"
LAUNCHES = {
    "SKLearnServer": lambda m: Launch(
        "SKLearnServer", IRIS, seldon_parameters(model_uri=m["iris"]), "MODEL"
    ),
    "XGBoostServer": lambda m: Launch(
        "XGBoostServer", SERVERS / "xgboostserver", seldon_parameters(model_uri=m["xgboost"])
    ),
    "MLFlowServer": lambda m: Launch(
        "MLFlowServer", SERVERS / "mlflowserver", seldon_parameters(model_uri=m["mlflow"])
    ),
    "ScoringModel": lambda m: Launch(
        "ScoringModel", COMPONENTS, seldon_parameters(factor=3.0), "MODEL", grpc=True
    ),
    "EvenOddRouter": lambda m: Launch("EvenOddRouter", COMPONENTS, service_type="ROUTER"),
    "ShiftTransformer": lambda m: Launch(
        "ShiftTransformer", COMPONENTS, service_type="TRANSFORMER"
    ),
    "ScaleOutputTransformer": lambda m: Launch(
        "ScaleOutputTransformer", COMPONENTS, service_type="OUTPUT_TRANSFORMER"
    ),
    "MeanCombiner": lambda m: Launch("MeanCombiner", COMPONENTS, service_type="COMBINER"),
    "DistanceOutlierDetector": lambda m: Launch(
        "DistanceOutlierDetector", COMPONENTS, seldon_parameters(threshold=4.0), "OUTLIER_DETECTOR"
    ),
}


class Pairs:
    """Each class under both front ends, started one class ahead of the tests that use it
    (start-up is most of this suite's time), at most two classes' servers alive at once."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self.order = list(LAUNCHES)
        self.started: dict[str, list[Microservice]] = {}

    def _start(self, name: str) -> None:
        if name not in self.started:
            launch = LAUNCHES[name](self.folders)
            self.started[name] = [start(launch, f) for f in (SELDON, MODELSHELF)]

    def get(self, name: str) -> list[Microservice]:
        self._start(name)
        following = self.order.index(name) + 1
        if following < len(self.order):
            self._start(self.order[following])
        for service in self.started[name]:
            wait_until_healthy(service, 180, "/health/ping")
        return self.started[name]

    def release(self, name: str) -> None:
        for service in self.started.pop(name, []):
            finish(service)


class ModelFolders(dict):
    """The sklearn fixture's folders, plus XGBoost and MLflow models saved on first use (so
    MLflow's slow import overlaps the first servers' start-up)."""

    def __init__(self, sklearn_models: dict[str, Path], root: Path) -> None:
        super().__init__(sklearn_models)
        self.root = root

    def __missing__(self, key: str) -> Path:
        if key == "xgboost":
            import xgboost_models

            booster = xgboost_models.iris_softprob()
            self[key] = xgboost_models.save_booster(booster, self.root / "xgboost")
        elif key == "mlflow":
            import mlflow.sklearn

            self[key] = self.root / "mlflow"
            requirements = ["scikit-learn", "numpy"]
            mlflow.sklearn.save_model(
                models.iris_classifier(), self[key], pip_requirements=requirements
            )
        else:
            raise KeyError(key)
        return self[key]


@pytest.fixture(scope="module")
def pairs(sklearn_models, tmp_path_factory):
    found = Pairs(ModelFolders(sklearn_models, tmp_path_factory.mktemp("serve-differential")))
    try:
        yield found
    finally:
        for name in list(found.started):
            found.release(name)


@pytest.fixture(scope="module", params=list(LAUNCHES))
def pair(request, pairs):
    try:
        yield pairs.get(request.param)
    finally:
        pairs.release(request.param)


def _without_timings(value: object) -> object:
    """Without what depends on timing: our servers' own metrics (``modelshelf_*``: handed over
    at most once a second, whichever request comes next) and anything timed (``*_seconds``)."""
    if isinstance(value, dict):
        if str(value.get("key", "")).endswith("_seconds") and "value" in value:
            return {**value, "value": "<timing>"}
        kept = {k: _without_timings(v) for k, v in value.items()}
        if kept.get("metrics") == [] and value["metrics"] != []:
            del kept["metrics"]
        return kept
    if isinstance(value, list):
        return [_without_timings(v) for v in value if not _is_own_metric(v)]
    return value


def _is_own_metric(value: object) -> bool:
    return isinstance(value, dict) and str(value.get("key", "")).startswith("modelshelf_")


def _answer(response: httpx.Response) -> tuple:
    content_type = response.headers.get("content-type", "").split(";")[0]
    if content_type == "application/json":
        # NaN != NaN: compare the constants Flask writes (NaN, Infinity) as they are spelt.
        parsed = json.loads(response.content, parse_constant=lambda name: f"<{name}>")
        body: object = _without_timings(parsed)
    else:
        body = response.content
    return response.status_code, content_type, body


@pytest.mark.parametrize("case", list(CASES))
def test_same_answer(pair, case):
    method, path, kwargs = CASES[case]
    seldon, ours = pair
    # Both at once (each server still sees the suite's requests in the same order).
    expected_call = BOTH.submit(seldon.client.request, method, path, **kwargs)
    found = ours.client.request(method, path, **kwargs)
    expected = expected_call.result()
    wanted = _answer(expected)
    if case in UNKNOWN_PATHS and wanted[0] == 500:  # a class without our guard
        assert "404 Not Found" in expected.text or "405 Method" in expected.text, expected.text
        wanted = _not_found(method, path)
    assert _answer(found) == wanted, (expected.text[:500], found.text[:500])
    for header in ("access-control-allow-origin",):
        assert found.headers.get(header) == expected.headers.get(header)


def _samples(text: str) -> dict:
    """Custom metrics by (name, labels but the worker's pid) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("modelshelf_"):
                continue
            labels = {k: v for k, v in sample.labels.items() if k != "worker_id"}
            timing = "_seconds" in sample.name
            found[(sample.name, tuple(sorted(labels.items())))] = None if timing else sample.value
    return found


def test_same_metrics(pair):
    """After the same requests, the metrics ports expose the same custom metrics."""
    seldon, ours = pair
    for service in pair:
        for _ in range(3):
            service.post("/api/v1.0/predictions", ND)
        service.post("/send-feedback", FEEDBACK)
    expected = _samples(httpx.get(f"http://127.0.0.1:{seldon.metrics_port}/metrics").text)
    deadline = time.monotonic() + 10
    while True:  # the metrics process folds workers' updates in as they arrive
        found = _samples(httpx.get(f"http://127.0.0.1:{ours.metrics_port}/metrics").text)
        if found == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found == expected


def test_same_grpc_answers(pair):
    """seldon-core's own gRPC services, through SeldonClient, on both (where gRPC runs)."""
    from google.protobuf import json_format
    from seldon_core.seldon_client import SeldonClient

    seldon, _ = pair
    if not seldon.grpc_port:
        pytest.skip("this class runs without gRPC in the differential suite")
    answers = []
    for service in pair:
        client = SeldonClient(microservice_endpoint=f"127.0.0.1:{service.grpc_port}")
        X = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.8, 1.8]])
        result = client.microservice(data=X, method="predict", transport="grpc")
        assert result.success, result.msg
        answers.append(json_format.MessageToDict(result.response))
    assert _without_timings(answers[0]) == _without_timings(answers[1])


def test_a_class_with_its_own_error_pages_keeps_them():
    """A class whose blueprint answers 404s itself, and serves a route of its own: both front
    ends give its answers (``modelshelf serve`` makes an unknown path its 404 only for a class
    that did not choose one)."""
    launch = Launch("OwnErrorPagesModel", COMPONENTS)
    with running(launch, [SELDON, MODELSHELF]) as (seldon, ours):
        for method, path in [
            ("GET", "/no/such/path"),
            ("POST", "/no/such/path"),
            ("GET", "/custom"),
        ]:
            expected = seldon.client.request(method, path)
            found = ours.client.request(method, path)
            assert _answer(found) == _answer(expected), (method, path, found.text)
        assert _answer(ours.client.get("/no/such/path")) == (
            404,
            "application/json",
            {"mine": "no such page"},
        )
