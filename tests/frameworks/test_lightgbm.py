"""LightGBMServer in this process: every format x method equals LightGBM's own output; names,
categorical features, the method check and the metadata."""

from __future__ import annotations

from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris, make_classification

from modelshelf.errors import BadRequestError, ConfigurationError
from modelshelf.frameworks.lightgbm import LightGBMServer

METHODS = ["predict", "predict_proba", "predict_raw", "predict_contrib", "predict_leaf"]
IRIS = load_iris(as_frame=True)
IRIS_X = IRIS.data.to_numpy()
COLUMNS = list(IRIS.data.columns)


def loaded(folder: Path, method: str = "predict", **params: str) -> LightGBMServer:
    server = LightGBMServer(str(folder), method=method, **params)
    server.load()
    return server


def own(model: object, method: str, X: object) -> np.ndarray:
    """What LightGBM itself answers for ``method`` (the estimator's, or the booster's)."""
    options = {"predict_raw": "raw_score", "predict_contrib": "pred_contrib"}
    options["predict_leaf"] = "pred_leaf"
    if method == "predict_proba":
        if isinstance(model, lgb.Booster):
            p = model.predict(X)
            return np.vstack((1.0 - p, p)).transpose() if p.ndim == 1 else p
        return model.predict_proba(X)  # type: ignore[attr-defined]
    kwargs = {options[method]: True} if method in options else {}
    return model.predict(X, **kwargs)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object, np.ndarray]]:
    root = tmp_path_factory.mktemp("lightgbm")
    iris = lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(IRIS.data, IRIS.target)
    Xb, yb = make_classification(n_samples=300, n_features=6, random_state=0)
    binary = lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(Xb, yb)
    diabetes = load_diabetes()
    regressor = lgb.LGBMRegressor(n_estimators=15, verbose=-1).fit(diabetes.data, diabetes.target)
    found = {}
    for name, model, X, file in [
        ("iris-txt", iris, IRIS_X[::7], "model.txt"),
        ("binary-bst", binary, Xb[:20], "model.bst"),
        ("regressor-txt", regressor, diabetes.data[:20], "model.txt"),
        ("iris-joblib", iris, IRIS_X[::7], "model.joblib"),
        ("binary-pkl", binary, Xb[:20], "model.pkl"),
        ("regressor-joblib", regressor, diabetes.data[:20], "model.joblib"),
    ]:
        folder = root / name
        folder.mkdir()
        if file.endswith((".txt", ".bst")):
            model.booster_.save_model(folder / file)
            reference: object = lgb.Booster(model_file=str(folder / file))
        else:
            joblib.dump(model, folder / file)
            reference = joblib.load(folder / file)
        found[name] = (folder, reference, X)
    return found


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "name",
    ["iris-txt", "binary-bst", "regressor-txt", "iris-joblib", "binary-pkl", "regressor-joblib"],
)
def test_every_format_and_method_equals_lightgbm(models, name, method):
    folder, reference, X = models[name]
    if method == "predict_proba" and name.startswith("regressor"):
        with pytest.raises(ConfigurationError, match="predict_proba"):
            loaded(folder, method)
        return
    server = loaded(folder, method)
    want = own(reference, method, X)
    for rows in (X[:1], X):  # one thread, and the process's threads
        np.testing.assert_array_equal(server.predict(rows, []), own(reference, method, rows))
    np.testing.assert_array_equal(server.predict(X.tolist()), want)


def test_names_reorder_columns_and_json_data_is_read_by_name(models):
    """By the names LightGBM stores (it writes spaces as underscores)."""
    folder, reference, X = models["iris-txt"]
    server = loaded(folder, "predict_proba")
    columns = reference.feature_name()
    assert columns[0] == "sepal_length_(cm)"
    want = reference.predict(X)
    reordered = X[:, ::-1].tolist()
    np.testing.assert_array_equal(server.predict(reordered, columns[::-1]), want)
    np.testing.assert_array_equal(server.predict(reordered, features_names=columns[::-1]), want)
    records = [dict(zip(columns, row, strict=True)) for row in X.tolist()]
    np.testing.assert_array_equal(server.predict(records), want)
    with pytest.raises(BadRequestError, match="unexpected"):
        server.predict(reordered, ["a", "b", "c", "d"])
    assert server.class_names() == ["class_0", "class_1", "class_2"]  # a booster has no labels


def test_categorical_features_take_their_categories(tmp_path):
    rng = np.random.default_rng(0)
    colors = ["red", "green", "blue"]
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=400),
            "color": pd.Categorical(rng.choice(colors, 400)),
            "z": rng.normal(size=400),
        }
    )
    y = ((frame.x + (frame.color == "red")) > 0.5).astype(int)
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(frame, y)
    model.booster_.save_model(tmp_path / "model.txt")
    joblib.dump(model, tmp_path / "model.joblib")
    rows = [[0.1, "red", 0.0], [0.9, "blue", 1.0], [0.6, "green", -1.0], [0.6, "purple", 0.0]]
    test = pd.DataFrame(rows, columns=["x", "color", "z"])
    test["color"] = pd.Categorical(test["color"], categories=colors)
    for file in ("model.txt", "model.joblib"):
        server = loaded(tmp_path, "predict_proba", model_file=file)
        np.testing.assert_array_equal(
            server.predict(rows, ["x", "color", "z"]), model.predict_proba(test)
        )
        assert server.describe_model()["custom"]["categorical features"] == "color"


def test_metadata_and_an_unknown_method(models):
    folder, _, _ = models["iris-joblib"]
    found = loaded(folder, "predict_proba").init_metadata()
    assert found["name"] == "iris-joblib"
    assert found["platform"] == "lightgbm"
    assert found["inputs"][0]["schema"]["names"] == [c.replace(" ", "_") for c in COLUMNS]
    assert found["outputs"][0]["schema"]["names"] == ["0", "1", "2"]
    assert found["custom"]["estimator"] == "LGBMClassifier"
    assert found["custom"]["objective"] == "multiclass"
    with pytest.raises(ConfigurationError, match="predict_margin"):
        LightGBMServer(str(folder), method="predict_margin")


def test_a_pickle_that_is_not_lightgbm_is_refused(tmp_path):
    from modelshelf.errors import ModelLoadError

    joblib.dump({"not": "a model"}, tmp_path / "model.joblib")
    with pytest.raises(ModelLoadError, match="holds a dict, not LightGBM"):
        loaded(tmp_path)


def test_a_text_file_saved_as_a_pickle_names_the_file(tmp_path):
    from modelshelf.errors import ModelLoadError

    (tmp_path / "model.joblib").write_text("<html><body>403 Forbidden</body></html>\n")
    with pytest.raises(ModelLoadError, match=r"model\.joblib is not a joblib or pickle file"):
        loaded(tmp_path)
