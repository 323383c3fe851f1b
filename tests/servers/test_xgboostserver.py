"""XGBoostServer under a real seldon-core-microservice, over HTTP and gRPC.

Each server process serves one format and one method; the in-process tests
(tests/frameworks/test_xgboost.py) cover every format x method combination.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

import xgboost_models as xm
from microservice import BIN, SERVERS, free_port, run_to_exit, running_microservice
from microservice import seldon_parameters as params
from models import IRIS_COLUMNS, IRIS_X
from modelshelf import openmp

SERVER = "XGBoostServer"
CLASSES = ["class_0", "class_1", "class_2"]
X = IRIS_X[::15]  # 10 rows (NaN has its own test: JSON proper has no NaN)


def ndarray(values, names=None) -> dict:
    data = {"ndarray": np.asarray(values).tolist()}
    if names:
        data["names"] = names
    return {"data": data}


def predict(service, payload) -> dict:
    response = service.post("/api/v1.0/predictions", payload)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xgboost-served")
    softprob = xm.iris_softprob()
    return {
        "json": xm.save_booster(softprob, root / "json", "model.json"),
        "ubj": xm.save_booster(softprob, root / "ubj", "model.ubj"),
        "bst": xm.save_booster(xm.binary_logistic(), root / "bst", "model.bst"),
        "joblib": xm.save_pickle(xm.iris_classifier(), root / "joblib", "model.joblib"),
        "pkl": xm.save_pickle(xm.diabetes_xgb_regressor(), root / "pkl", "model.pkl"),
    }


@pytest.fixture(scope="module")
def softprob() -> xgb.Booster:
    return xm.iris_softprob()


@pytest.fixture(scope="module")
def iris(folders):
    """model.json, default method (predict: the booster's probabilities)."""
    with running_microservice(SERVER, params(model_uri=folders["json"]), ready_timeout=120) as svc:
        yield svc


def test_ndarray_and_tensor_predictions_equal_xgboost_in_process(iris, softprob):
    data = predict(iris, ndarray(X))
    np.testing.assert_array_equal(np.array(data["ndarray"]), softprob.inplace_predict(X))
    assert data["names"] == CLASSES
    rows = IRIS_X[:2]
    tensor = {"shape": list(rows.shape), "values": rows.ravel().tolist()}
    data = predict(iris, {"data": {"tensor": tensor}})
    assert data["tensor"]["shape"] == [2, 3]
    np.testing.assert_array_equal(
        np.array(data["tensor"]["values"]).reshape(2, 3), softprob.inplace_predict(rows)
    )


def test_nan_and_null_reach_xgboost_as_missing(iris, softprob):
    raw = '{"data": {"ndarray": [[NaN, 3.0, 1.4, 0.2], [6.0, NaN, 5.1, NaN]]}}'
    response = iris.client.post(
        "/api/v1.0/predictions", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    missing = np.array([[np.nan, 3.0, 1.4, 0.2], [6.0, np.nan, 5.1, np.nan]])
    want = softprob.inplace_predict(missing)
    np.testing.assert_array_equal(np.array(response.json()["data"]["ndarray"]), want)
    nulls = {"data": {"ndarray": [[None, 3.0, 1.4, 0.2], [6.0, None, 5.1, None]]}}
    np.testing.assert_array_equal(np.array(predict(iris, nulls)["ndarray"]), want)


def test_names_are_reordered_to_the_booster_features(iris, softprob):
    order = [2, 0, 3, 1]
    data = predict(iris, ndarray(X[:, order], [IRIS_COLUMNS[i] for i in order]))
    np.testing.assert_array_equal(np.array(data["ndarray"]), softprob.inplace_predict(X))
    records = [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in IRIS_X[:3].tolist()]
    response = iris.post("/api/v1.0/predictions", {"jsonData": records})
    assert response.status_code == 200, response.text
    found = response.json()["data"]["tensor"]
    np.testing.assert_array_equal(
        np.array(found["values"]).reshape(found["shape"]), softprob.inplace_predict(IRIS_X[:3])
    )


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldon_client(iris, softprob, transport):
    rows = IRIS_X[:2]
    port = iris.http_port if transport == "rest" else iris.grpc_port
    client = SeldonClient(microservice_endpoint=f"127.0.0.1:{port}")
    result = client.microservice(data=rows, method="predict", transport=transport)
    assert result.success, result.msg
    body = json_format.MessageToDict(result.response)
    assert body["data"]["names"] == CLASSES
    np.testing.assert_array_equal(
        np.array(body["data"]["tensor"]["values"]).reshape(2, 3), softprob.inplace_predict(rows)
    )


def test_metadata_derived_from_the_booster(iris):
    meta = iris.get("/api/v1.0/metadata").json()
    assert meta["platform"] == "xgboost"
    assert meta["inputs"][0]["schema"] == {"names": IRIS_COLUMNS, "shape": [-1, 4]}
    assert meta["outputs"][0]["schema"] == {"names": CLASSES, "shape": [-1, 3]}
    assert meta["custom"]["objective"] == "multi:softprob"
    assert meta["custom"]["number of classes"] == "3"
    assert meta["custom"]["xgboost-cpu version"] == xgb.__version__
    assert iris.get("/health/status").status_code == 200


BAD_INPUTS = [
    ("wrong feature count", ndarray([[1.0, 2.0, 3.0]]), "expected 4 features per row, got 3"),
    ("strings", ndarray([["a", "b", "c", "d"]]), "numbers"),
    ("wrong names", ndarray([[1, 2, 3, 4]], ["a", "b", "c", "d"]), "missing ['sepal_length'"),
    ("names of the wrong length", ndarray([[1, 2, 3, 4]], ["a"]), "names has 1 entries"),
    ("records with a wrong field", {"jsonData": [{"x": 1}]}, "unexpected ['x']"),
    ("ragged", {"data": {"ndarray": [[1, 2, 3, 4], [1]]}}, "could not be read"),
    ("empty rows", {"data": {"ndarray": [[]]}}, "expected 4 features per row, got 0"),
]


@pytest.mark.parametrize(("case", "payload", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_4xx_with_a_message_and_the_server_keeps_serving(
    iris, case, payload, message
):
    response = iris.post("/api/v1.0/predictions", payload)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert message in response.json()["status"]["info"], response.text
    assert iris.post("/api/v1.0/predictions", ndarray(IRIS_X[:1])).status_code == 200


def _rest_workers(service) -> set[int]:
    """gunicorn's REST workers: the children of seldon-core-microservice's main process that
    gunicorn booted (the metrics server has a gunicorn worker too, one level further down)."""
    booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", service.log())}
    return {pid for pid in booted if _parent(pid) == service.process.pid}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_two_workers_with_two_threads_each_predict_correctly(folders, softprob):
    """The model is loaded in seldon's parent, which then forks both gunicorn workers: each must
    run multi-threaded (OpenMP) predictions and answer exactly what XGBoost does in-process."""
    # Over SINGLE_THREAD_MAX_ROWS_BY_TREES (a small booster's rows on one thread): 2 threads.
    batch = np.tile(IRIS_X, (30, 1))[: openmp.SINGLE_THREAD_MAX_ROWS_BY_TREES + 1]
    want_batch = softprob.inplace_predict(batch)
    want_row = softprob.inplace_predict(IRIS_X[:1])
    parameters = params(model_uri=folders["ubj"], method="predict_proba", nthread=2)
    env = {"GUNICORN_WORKERS": "2"}
    with running_microservice(SERVER, parameters, env=env, ready_timeout=120) as svc:

        def one(i: int) -> None:
            with httpx.Client(base_url=svc.url, timeout=60) as client:
                payload = ndarray(batch) if i % 2 else ndarray(IRIS_X[:1])
                response = client.post("/api/v1.0/predictions", json=payload)
            assert response.status_code == 200, response.text
            found = np.array(response.json()["data"]["ndarray"])
            np.testing.assert_array_equal(found, want_batch if i % 2 else want_row)

        # Sync workers take connections as they come (the second may still be booting when the
        # first is healthy): send rounds of concurrent requests until both have served.
        rest_workers: set[int] = set()
        busy: set[int] = set()
        deadline = time.monotonic() + 90
        while len(busy) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(one, range(16)))
            rest_workers = _rest_workers(svc)
            busy = {pid for pid in rest_workers if _threads(pid) > 1}  # an OpenMP pool exists
        assert len(rest_workers) >= 2, svc.log()[-3000:]
        assert len(busy) >= 2, f"only {busy} of {rest_workers} ran a two-thread prediction"
        assert "OpenMP: 2 thread(s) per large request" in svc.log()


def test_binary_bst_predict_proba_gives_two_named_columns(folders):
    booster = xgb.Booster(model_file=str(folders["bst"] / "model.bst"))
    with running_microservice(
        SERVER,
        params(model_uri=folders["bst"], method="predict_proba"),
        ready_timeout=120,
    ) as svc:
        data = predict(svc, ndarray(X))
        p = booster.inplace_predict(X)
        np.testing.assert_array_equal(np.array(data["ndarray"]), np.column_stack((1 - p, p)))
        assert data["names"] == ["class_0", "class_1"]


def test_scikit_learn_api_classifier_predict_gives_its_labels(folders):
    estimator = joblib.load(folders["joblib"] / "model.joblib")
    with running_microservice(
        SERVER, params(model_uri=folders["joblib"]), ready_timeout=120
    ) as svc:
        data = predict(svc, ndarray(X))
        np.testing.assert_array_equal(np.array(data["ndarray"]), estimator.predict(X))
        meta = svc.get("/api/v1.0/metadata").json()
        assert meta["custom"]["estimator"] == "XGBClassifier"


def test_regressor_pickle_predict_contribs_names_features_and_bias(folders):
    estimator = joblib.load(folders["pkl"] / "model.pkl")
    rows = xm.load_diabetes().data[:3]
    with running_microservice(
        SERVER,
        params(model_uri=folders["pkl"], method="predict_contribs"),
        ready_timeout=120,
    ) as svc:
        data = predict(svc, ndarray(rows))
        want = estimator.get_booster().predict(xgb.DMatrix(rows), pred_contribs=True)
        np.testing.assert_array_equal(np.array(data["ndarray"]), want)
        assert data["names"] == [f"f{i}" for i in range(10)] + ["bias"]
        # the contributions add up to the prediction
        np.testing.assert_allclose(want.sum(axis=1), estimator.predict(rows), rtol=1e-5)


def start_failure(folder: Path | str, **extra: object) -> str:
    command = [
        str(BIN / "seldon-core-microservice"),
        SERVER,
        "--parameters",
        params(model_uri=folder, **extra),
        "--http-port",
        str(free_port()),
        "--grpc-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
    ]
    result = run_to_exit(command, SERVERS / "xgboostserver", timeout=120)
    assert result.returncode != 0, result.stdout[-3000:]
    return result.stdout


def test_model_from_a_newer_xgboost_stops_the_process_saying_so(tmp_path):
    out = start_failure(xm.from_future_version(tmp_path))
    assert "saved by XGBoost 99.0.0, newer than this server's XGBoost" in out
