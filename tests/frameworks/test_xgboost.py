"""XGBoostServer in this process: every format x method against XGBoost's own results, inputs,
names, thread defaults, and the start-up errors (no server process needed for these)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost as xgb
from scipy.special import softmax

import xgboost_models as xm
from models import IRIS_COLUMNS, IRIS_X, iris_classifier
from modelshelf import openmp
from modelshelf.errors import (
    BadRequestError,
    ConfigurationError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
)
from modelshelf.frameworks import xgboost as xgbserver
from modelshelf.frameworks.xgboost import XGBoostServer

X = xm.with_missing(IRIS_X[::15], 9)  # 10 rows, some values missing
DIABETES_X = xm.load_diabetes().data[:7]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xgboost-models")
    softprob = xm.iris_softprob()
    return {
        "json": xm.save_booster(softprob, root / "json", "model.json"),
        "ubj": xm.save_booster(softprob, root / "ubj", "model.ubj"),
        "bst": xm.save_booster(xm.binary_logistic(), root / "bst", "model.bst"),
        "softmax": xm.save_booster(xm.iris_softmax(), root / "softmax", "model.json"),
        "regressor": xm.save_booster(xm.diabetes_regressor(), root / "regressor", "model.ubj"),
        "joblib": xm.save_pickle(xm.iris_classifier(), root / "joblib", "model.joblib"),
        "pkl": xm.save_pickle(xm.diabetes_xgb_regressor(), root / "pkl", "model.pkl"),
    }


def loaded(folder: Path, method: str = "predict", **params: object) -> XGBoostServer:
    server = XGBoostServer(str(folder), method=method, **params)  # type: ignore[arg-type]
    server.load()
    return server


def reference_booster(folder: Path) -> tuple[xgb.Booster, object]:
    """The model as a user would load it in their own process."""
    (path,) = [p for p in folder.iterdir() if p.is_file()]
    if path.suffix in (".joblib", ".pkl"):
        estimator = joblib.load(path)
        return estimator.get_booster(), estimator
    return xgb.Booster(model_file=str(path)), None


def expected(folder: Path, method: str, rows: np.ndarray) -> np.ndarray:
    booster, estimator = reference_booster(folder)
    if method == "predict":
        return estimator.predict(rows) if estimator is not None else booster.inplace_predict(rows)
    if method == "predict_proba":  # the scikit-learn API's own
        return estimator.predict_proba(rows)
    if method == "predict_margin":
        return booster.inplace_predict(rows, predict_type="margin")
    data = xgb.DMatrix(rows, feature_names=booster.feature_names)
    return booster.predict(data, **{f"pred_{method.split('_')[1]}": True})


CASES = [
    (fmt, method)
    for fmt in ("json", "ubj", "bst", "regressor", "joblib", "pkl")
    for method in ("predict", "predict_margin", "predict_contribs", "predict_leaf")
] + [("joblib", "predict_proba")]


@pytest.mark.parametrize(("fmt", "method"), CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_every_format_and_method_equals_xgboost_in_process(folders, fmt, method):
    rows = DIABETES_X if fmt in ("regressor", "pkl") else X
    server = loaded(folders[fmt], method)
    got = server.predict(rows.tolist(), [])
    want = expected(folders[fmt], method, rows)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_binary_predict_proba_gives_two_columns_for_two_class_names(folders):
    server = loaded(folders["bst"], "predict_proba")
    booster, _ = reference_booster(folders["bst"])
    p = booster.inplace_predict(X)
    got = server.predict(X, [])
    np.testing.assert_array_equal(got, np.column_stack((1 - p, p)))
    assert list(server.class_names()) == ["class_0", "class_1"]


def test_multiclass_predict_proba_and_names(folders):
    server = loaded(folders["json"], "predict_proba")
    np.testing.assert_array_equal(server.predict(X, []), expected(folders["json"], "predict", X))
    assert list(server.class_names()) == ["class_0", "class_1", "class_2"]


def test_softmax_predict_proba_is_the_softmax_of_the_margins(folders):
    server = loaded(folders["softmax"], "predict_proba")
    booster, _ = reference_booster(folders["softmax"])
    want = softmax(booster.inplace_predict(X, predict_type="margin"), axis=1)
    np.testing.assert_array_equal(server.predict(X, []), want)
    assert np.allclose(server.predict(X, []).sum(axis=1), 1, atol=1e-6)


def test_classifier_predict_returns_labels_and_names_come_from_classes(folders):
    server = loaded(folders["joblib"], "predict_proba")
    server.predict(X, [])
    assert list(server.class_names()) == ["0", "1", "2"]
    labels = loaded(folders["joblib"], "predict").predict(X, [])
    np.testing.assert_array_equal(
        labels, joblib.load(folders["joblib"] / "model.joblib").predict(X)
    )


def test_class_names_from_metadata_yaml(folders, tmp_path):
    folder = tmp_path / "named"
    xm.save_booster(xm.binary_logistic(), folder)
    (folder / "metadata.yaml").write_text(
        "name: virginica\noutputs:\n- messagetype: ndarray\n  schema: {names: [other, virginica]}\n"
    )
    server = loaded(folder, "predict_proba")
    server.predict(X[:1], [])
    assert list(server.class_names()) == ["other", "virginica"]


def test_contribs_name_features_and_bias(folders):
    server = loaded(folders["pkl"], "predict_contribs")
    server.predict(DIABETES_X, [])
    assert list(server.class_names()) == [f"f{i}" for i in range(10)] + ["bias"]
    server = loaded(folders["json"], "predict_contribs")
    server.predict(X, [])
    assert list(server.class_names()) == [*IRIS_COLUMNS, "bias"]


def test_nan_and_null_are_missing_values(folders):
    server = loaded(folders["json"])
    booster, _ = reference_booster(folders["json"])
    with_none = [[None, 3.0, 1.4, 0.2], [6.0, None, None, 2.0]]
    as_nan = np.array([[np.nan, 3.0, 1.4, 0.2], [6.0, np.nan, np.nan, 2.0]])
    np.testing.assert_array_equal(server.predict(with_none, []), booster.inplace_predict(as_nan))
    np.testing.assert_array_equal(server.predict(as_nan, []), booster.inplace_predict(as_nan))
    # missing values matter to this model: a NaN row differs from the same row with zeros
    assert not np.array_equal(server.predict(as_nan, []), server.predict(np.nan_to_num(as_nan), []))


def test_request_names_are_reordered_to_the_booster_features(folders):
    server = loaded(folders["json"])
    order = [3, 1, 0, 2]
    got = server.predict(X[:, order], [IRIS_COLUMNS[i] for i in order])
    np.testing.assert_array_equal(got, server.predict(X, IRIS_COLUMNS))
    records = [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in X.tolist()]
    np.testing.assert_array_equal(server.predict(records, []), server.predict(X, []))
    columns = {name: X[:, i].tolist() for i, name in enumerate(IRIS_COLUMNS)}
    np.testing.assert_array_equal(server.predict(columns, []), server.predict(X, []))


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "b", "c", "d"], "missing ['sepal_length'"),
        (["sepal_length", "sepal_width", "petal_length"], "names has 3 entries"),
        (["sepal_length", "sepal_length", "petal_length", "petal_width"], "sepal_width"),
    ],
)
def test_wrong_names_are_rejected(folders, names, message):
    server = loaded(folders["json"])
    with pytest.raises(BadRequestError, match=message.replace("[", r"\[")):
        server.predict(X, names)


def test_bad_rows_are_rejected(folders):
    server = loaded(folders["bst"])
    with pytest.raises(BadRequestError, match="expected 4 features per row, got 3"):
        server.predict([[1.0, 2.0, 3.0]], [])
    with pytest.raises(BadRequestError, match="numbers"):
        server.predict([["a", "b", "c", "d"]], [])
    with pytest.raises(BadRequestError, match="feature names"):
        server.predict([{"a": 1}], [])


def test_metadata_describes_the_model(folders):
    meta = XGBoostServer(str(folders["json"]), method="predict_proba").init_metadata()
    assert meta["platform"] == "xgboost"
    assert meta["inputs"] == [
        {"messagetype": "ndarray", "schema": {"names": IRIS_COLUMNS, "shape": [-1, 4]}}
    ]
    assert meta["outputs"][0]["schema"] == {
        "names": ["class_0", "class_1", "class_2"],
        "shape": [-1, 3],
    }
    custom = meta["custom"]
    assert custom["objective"] == "multi:softprob"
    assert custom["number of classes"] == "3"
    assert custom["saved by xgboost"] == xgb.__version__
    meta = XGBoostServer(str(folders["json"]), method="predict_contribs").init_metadata()
    assert meta["outputs"][0]["schema"]["shape"] == [-1, 3, 5]


def test_saved_version_is_read_from_json_and_ubj(folders, tmp_path):
    version = xgbserver.xgboost_version()
    assert xgbserver.saved_version(folders["json"] / "model.json") == version
    assert xgbserver.saved_version(folders["ubj"] / "model.ubj") == version
    assert xgbserver.saved_version(xm.from_future_version(tmp_path) / "model.json") == (99, 0, 0)


# ------------------------------------------------------------------------ start-up errors


def test_unknown_method_fails_before_loading(folders):
    with pytest.raises(ConfigurationError, match=r"method='explain'.*predict_contribs"):
        XGBoostServer(str(folders["json"]), method="explain")


def test_predict_proba_on_a_regressor_fails_at_load(folders):
    with pytest.raises(ConfigurationError, match="reg:squarederror"):
        loaded(folders["regressor"], "predict_proba")


@pytest.mark.parametrize("nthread", [-1, "many"])
def test_bad_nthread_is_refused(folders, nthread):
    with pytest.raises(ConfigurationError, match="nthread"):
        XGBoostServer(str(folders["json"]), nthread=nthread)


def test_model_from_a_newer_xgboost_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"saved by XGBoost 99\.0\.0, newer than"):
        loaded(xm.from_future_version(tmp_path))


def test_corrupt_ubj_says_xgboost_cannot_read_it(tmp_path):
    with pytest.raises(ModelLoadError, match=r"cannot read model\.ubj") as info:
        loaded(xm.corrupt_ubj(tmp_path))
    assert "Stack trace" not in str(info.value)


def test_legacy_binary_format_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="binary format has been deprecated"):
        loaded(xm.legacy_binary(tmp_path))


def test_a_text_file_saved_as_a_pickle_names_the_file(tmp_path):
    (tmp_path / "model.pkl").write_text("<html><body>403 Forbidden</body></html>\n")
    with pytest.raises(ModelLoadError, match=r"model\.pkl is not a joblib or pickle file"):
        loaded(tmp_path)


def test_two_model_files_are_listed(folders, tmp_path):
    xm.save_booster(xm.iris_softprob(), tmp_path, "model.json")
    xm.save_booster(xm.iris_softprob(), tmp_path, "model.ubj")
    with pytest.raises(ModelNotFoundError, match=r"model\.json, model\.ubj"):
        loaded(tmp_path)
    server = loaded(tmp_path, model_file="model.ubj")
    assert server.model_path.name == "model.ubj"


def test_a_scikit_learn_pickle_is_pointed_to_sklearnserver(tmp_path):
    xm.save_pickle(iris_classifier(), tmp_path)
    with pytest.raises(ModelLoadError, match=r"LogisticRegression.*SKLearnServer"):
        loaded(tmp_path)


# ------------------------------------------------------------------------ threads


def test_threads_follow_workers_and_cores_and_the_nthread_parameter(folders, monkeypatch):
    cores = openmp.available_cores()
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.setenv("GUNICORN_WORKERS", "1")
    server = loaded(folders["json"])
    server.predict(np.ones((100, 4)), [])  # threads are set on a process's first request
    assert server.nthread == cores
    # The booster follows OpenMP's per-thread setting, not a count of its own.
    assert json.loads(server.booster.save_config())["learner"]["generic_param"]["nthread"] == "0"
    server = loaded(folders["json"], nthread=3)
    server.predict(X, [])
    assert server.nthread == 3


def test_loading_in_the_parent_starts_no_openmp_threads_and_serving_uses_them(folders):
    """seldon forks its workers after init_metadata(): no OpenMP pool may exist by then; the
    process that serves must still predict with the threads it was given."""
    script = (
        "import os, sys\n"
        "import numpy as np\n"
        "from modelshelf.frameworks.xgboost import XGBoostServer\n"
        "threads = lambda: len(os.listdir('/proc/self/task'))\n"
        "before = threads()\n"
        "servers = [XGBoostServer(f, nthread=2) for f in sys.argv[1:]]\n"
        "for server in servers:\n"
        "    server.init_metadata()\n"
        "loaded = threads()\n"
        "servers[0].predict(np.ones((5000, 4)), [])\n"
        "print(before, loaded, threads())\n"
    )
    paths = [str(folders[k]) for k in ("json", "ubj", "bst", "joblib")]
    out = subprocess.run(
        [sys.executable, "-c", script, *paths],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "4", "PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout.split()
    before, loaded, served = (int(n) for n in out)
    assert loaded == before, f"threads went from {before} to {loaded} while loading"
    assert served > loaded, "a 5000-row prediction with nthread=2 started no OpenMP thread"


def test_predict_before_load_is_not_ready(folders):
    with pytest.raises(ModelNotReadyError):
        XGBoostServer(str(folders["json"])).predict(X, [])


# ------------------------------------------------------------------------ early stopping


def _early_stopped(model: xgb.XGBModel, X: np.ndarray, y: np.ndarray) -> xgb.XGBModel:
    model.set_params(n_estimators=200, early_stopping_rounds=3, max_depth=4, random_state=0)
    half = len(X) // 2
    model.fit(X[:half], y[:half], eval_set=[(X[half:], y[half:])], verbose=False)
    assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds()
    return model


@pytest.fixture(scope="module")
def early_stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    from sklearn.datasets import make_classification, make_regression

    root = tmp_path_factory.mktemp("early-stopping")
    Xc, yc = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=3, flip_y=0.2, random_state=0
    )
    Xr, yr = make_regression(n_samples=600, n_features=8, noise=30.0, random_state=0)
    classifier = _early_stopped(xgb.XGBClassifier(), Xc, yc)
    regressor = _early_stopped(xgb.XGBRegressor(), Xr, yr)
    classifier.save_model(root / "classifier.json")
    return {
        "classifier": (xm.save_pickle(classifier, root / "c"), classifier),
        "regressor": (xm.save_pickle(regressor, root / "r"), regressor),
        "booster": (xm.save_booster(classifier.get_booster(), root / "b"), classifier),
        "X": Xc,
        "Xr": Xr,
    }


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_an_early_stopped_classifier_predicts_as_its_own_methods(early_stopped, method):
    folder, model = early_stopped["classifier"]
    X = early_stopped["X"]
    for rows in (X[:1], X[:5], X):  # small and large batches
        found = loaded(folder, method).predict(rows, [])
        np.testing.assert_array_equal(found, getattr(model, method)(rows))


def test_an_early_stopped_regressor_predicts_as_its_own_predict(early_stopped):
    folder, model = early_stopped["regressor"]
    X = early_stopped["Xr"]
    server = loaded(folder)
    for rows in (X[:1], X[:5], X):
        np.testing.assert_array_equal(server.predict(rows, []), model.predict(rows))
    assert server.init_metadata()["custom"]["best iteration"] == str(model.best_iteration)


def test_a_booster_saved_after_early_stopping_predicts_up_to_its_best_iteration(early_stopped):
    folder, _model = early_stopped["booster"]
    X = early_stopped["X"]
    reloaded = xgb.XGBClassifier()
    reloaded.load_model(folder / "model.json")  # XGBoost's own reading of the saved file
    server = loaded(folder, "predict_proba")
    np.testing.assert_array_equal(server.predict(X, []), reloaded.predict_proba(X))
    leaves = loaded(folder, "predict_leaf").predict(X[:3], [])
    np.testing.assert_array_equal(leaves, reloaded.apply(X[:3]))


# ------------------------------------------------------------------------ integer inputs


def test_integers_above_2_to_the_53_are_rounded_once_as_xgboost_does(tmp_path):
    low, high = np.float32(2.0**60), np.float32(2.0**60 + 2.0**37)  # neighbouring float32s
    X = np.array([[low], [high]] * 10, dtype=np.float32)
    booster = xgb.train(
        {"max_depth": 1, "eta": 1.0, "base_score": 0.0, "nthread": 1},
        xgb.DMatrix(X, np.array([0.0, 1.0] * 10)),
        1,
    )
    value = 2**60 + 2**36 + 1  # via float64 it lands on the float32 midpoint and rounds down
    rows = np.array([[value]], dtype=np.int64)
    want = booster.inplace_predict(rows)
    assert want != booster.inplace_predict(rows.astype(np.float64)), "no double rounding here"
    server = loaded(xm.save_booster(booster, tmp_path))
    np.testing.assert_array_equal(server.predict(rows, []), want)
    np.testing.assert_array_equal(server.predict([[value]], []), want)
    contribs = loaded(tmp_path, "predict_contribs").predict(rows, [])
    np.testing.assert_array_equal(contribs, booster.predict(xgb.DMatrix(rows), pred_contribs=True))


@pytest.mark.parametrize("method", ["predict", "predict_margin"])
def test_a_linear_booster_is_served_through_a_dmatrix(tmp_path, method):
    """gblinear has no in-place prediction: XGBoost raises "Inplace predict is not supported by
    the current booster" for every request."""
    rng = np.random.default_rng(3)
    rows, target = rng.normal(size=(200, 4)), rng.normal(size=200)
    linear = xgb.train({"booster": "gblinear"}, xgb.DMatrix(rows, label=target), 5)
    server = loaded(xm.save_booster(linear, tmp_path / "linear", "model.json"), method)
    got = server.predict(rows[:7].tolist(), [])
    want = linear.predict(xgb.DMatrix(rows[:7]), output_margin=method == "predict_margin")
    np.testing.assert_array_equal(got, want)


def test_a_linear_booster_refuses_leaf_indices_at_start(tmp_path):
    """XGBoost answers every leaf request of a gblinear booster with an error and its C++ stack
    trace; the method is refused when the server starts instead, naming what it can serve."""
    rng = np.random.default_rng(3)
    rows, target = rng.normal(size=(50, 4)), rng.normal(size=50)
    linear = xgb.train({"booster": "gblinear"}, xgb.DMatrix(rows, label=target), 2)
    folder = xm.save_booster(linear, tmp_path / "linear", "model.json")
    with pytest.raises(ConfigurationError, match="gblinear booster has no trees"):
        loaded(folder, "predict_leaf")
