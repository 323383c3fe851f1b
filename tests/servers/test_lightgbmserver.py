"""LightGBMServer served by real server processes on both front ends (seldon-core-microservice
and modelshelf serve): each format and each method answers what LightGBM itself does."""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris, make_classification

from microservice import SERVERS
from microservice import seldon_parameters as params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from frontends import MODELSHELF, SELDON, Launch, running

IRIS = load_iris()
Xb, yb = make_classification(n_samples=300, n_features=6, random_state=0)
DIABETES = load_diabetes()


def _fit(kind: str) -> tuple[lgb.LGBMModel, np.ndarray]:
    if kind == "iris":
        model = lgb.LGBMClassifier(n_estimators=15, verbose=-1)
        return model.fit(IRIS.data, IRIS.target), IRIS.data[::10]
    if kind == "binary":
        return lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(Xb, yb), Xb[:12]
    model = lgb.LGBMRegressor(n_estimators=15, verbose=-1)
    return model.fit(DIABETES.data, DIABETES.target), DIABETES.data[:12]


#: (model, file, method, LightGBM's own answer for rows X)
CASES = [
    ("iris", "model.txt", "predict_proba", lambda m, b, X: b.predict(X)),
    ("binary", "model.bst", "predict_contrib", lambda m, b, X: b.predict(X, pred_contrib=True)),
    ("iris", "model.joblib", "predict", lambda m, b, X: m.predict(X)),
    ("regressor", "model.pkl", "predict_raw", lambda m, b, X: m.predict(X, raw_score=True)),
    ("binary", "model.joblib", "predict_leaf", lambda m, b, X: m.predict(X, pred_leaf=True)),
    ("binary", "model.txt", "predict_proba", lambda m, b, X: m.predict_proba(X)),
]


@pytest.mark.parametrize(("kind", "file", "method", "want"), CASES, ids=lambda c: str(c))
def test_each_format_and_method_answers_as_lightgbm_on_both_front_ends(
    tmp_path, kind, file, method, want
):
    model, X = _fit(kind)
    if file.endswith((".txt", ".bst")):
        model.booster_.save_model(tmp_path / file)
        booster = lgb.Booster(model_file=str(tmp_path / file))
    else:
        joblib.dump(model, tmp_path / file)
        model = joblib.load(tmp_path / file)
        booster = model.booster_
    expected = np.asarray(want(model, booster, X))
    launch = Launch(
        "LightGBMServer",
        SERVERS / "lightgbmserver",
        params(model_uri=str(tmp_path), method=method),
    )
    with running(launch, [SELDON, MODELSHELF]) as services:
        for service in services:
            for rows in (X[:1], X):
                response = service.post(
                    "/api/v1.0/predictions", {"data": {"ndarray": rows.tolist()}}
                )
                assert response.status_code == 200, response.text + service.log()[-2000:]
                found = np.asarray(response.json()["data"]["ndarray"])
                np.testing.assert_array_equal(
                    found.reshape(expected[: len(rows)].shape), expected[: len(rows)]
                )
            meta = service.get("/api/v1.0/metadata").json()
            assert meta["platform"] == "lightgbm"
            assert meta["custom"]["method"] == method
            assert meta["custom"]["lightgbm version"] == lgb.__version__


def test_v2_output_names_choose_lightgbms_methods(tmp_path):
    """Over V2 (tritonclient), an output named after one of LightGBM's methods is that
    method's answer, as XGBoost's are; with ``method=predict_raw`` the default output is
    named ``predict_raw`` (it was ``predict``, holding raw scores) and the metadata lists
    every method (it listed ``predict`` alone, and ``predict_raw`` was a 400)."""
    import tritonclient.http as triton

    model, X = _fit("iris")
    model.booster_.save_model(tmp_path / "model.txt")
    booster = lgb.Booster(model_file=str(tmp_path / "model.txt"))
    expected = {
        "predict_raw": booster.predict(X, raw_score=True),
        "predict": booster.predict(X),
        "predict_proba": booster.predict(X),
        "predict_contrib": booster.predict(X, pred_contrib=True),
        "predict_leaf": booster.predict(X, pred_leaf=True),
    }
    launch = Launch(
        "LightGBMServer",
        SERVERS / "lightgbmserver",
        params(model_uri=str(tmp_path), method="predict_raw"),
        extra_args=("--model-name", "iris"),
    )
    with running(launch, [MODELSHELF]) as (service,):
        client = triton.InferenceServerClient(f"127.0.0.1:{service.http_port}")
        try:
            tensor = triton.InferInput("x", list(X.shape), "FP64")
            tensor.set_data_from_numpy(X)
            result = client.infer("iris", [tensor])
            assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_raw"]
            np.testing.assert_array_equal(result.as_numpy("predict_raw"), expected["predict_raw"])
            wanted = [triton.InferRequestedOutput(name) for name in expected]
            result = client.infer("iris", [tensor], outputs=wanted)
            for name, value in expected.items():
                np.testing.assert_array_equal(result.as_numpy(name), value, err_msg=name)
            classes = ["class_0", "class_1", "class_2"]
            assert result.get_output("predict_raw")["parameters"]["class_names"] == classes
            metadata = client.get_model_metadata("iris")
            outputs = {o["name"]: o["shape"] for o in metadata["outputs"]}
            assert set(expected) | {"class_names"} == set(outputs)
            assert outputs["predict_raw"] == outputs["predict_proba"] == [-1, 3]
        finally:
            client.close()
