"""MLFlowServer in process on models saved with MLflow's own flavors: inputs by signature, flavor
methods, transformers, MLflow's schema errors, metadata from the MLmodel file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import (
    IRIS_COLUMNS,
    IRIS_X,
    assert_same_predictions,
    iris_classifier,
    iris_frame_pipeline,
    iris_scaler,
    rows,
    svc_without_proba,
)
from modelshelf.errors import (
    BadRequestError,
    ConfigurationError,
    ModelLoadError,
    ServerFaultError,
)
from modelshelf.frameworks.mlflow import MLFlowServer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """MLflow model folders (save_model, explicit requirements: no inference subprocess)."""
    import mlflow
    import xgboost
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("mlflow-models")
    reqs = ["scikit-learn", "numpy"]
    frame = pd.DataFrame(IRIS_X, columns=IRIS_COLUMNS)
    classifier = iris_frame_pipeline()
    mlflow.sklearn.save_model(
        classifier,
        root / "classifier",
        signature=infer_signature(frame, classifier.predict(frame)),
        pip_requirements=reqs,
    )
    scaler = iris_scaler()
    mlflow.sklearn.save_model(
        scaler,
        root / "scaler",
        signature=infer_signature(IRIS_X, scaler.transform(IRIS_X)),
        pip_requirements=reqs,
    )
    mlflow.sklearn.save_model(svc_without_proba(), root / "svc", pip_requirements=reqs)
    mlflow.sklearn.save_model(
        iris_classifier(), root / "proba", pip_requirements=reqs, pyfunc_predict_fn="predict_proba"
    )
    booster = xgboost.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1)
    booster.fit(IRIS_X, np.arange(len(IRIS_X)) % 3)
    mlflow.xgboost.save_model(booster, root / "xgboost", pip_requirements=["xgboost"])
    return {"root": root, "classifier": classifier, "scaler": scaler, "xgboost": booster}


def loaded(path, **params) -> MLFlowServer:
    server = MLFlowServer(str(path), **params)
    server.load()
    return server


def test_loading_leaves_no_mlruns_in_the_working_directory(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    loaded(saved["root"] / "classifier").predict(rows(1))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def classifier(saved):
    return loaded(saved["root"] / "classifier")


def test_signature_columns_make_a_frame_in_the_signatures_order(saved, classifier):
    X = rows(3)
    expected = saved["classifier"].predict(pd.DataFrame(X, columns=IRIS_COLUMNS))
    order = [3, 1, 0, 2]
    got = classifier.predict(X[:, order], [IRIS_COLUMNS[i] for i in order])
    assert_same_predictions(got, expected)
    records = [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in X.tolist()]
    assert_same_predictions(classifier.predict(records), expected)
    assert_same_predictions(classifier.predict(X), expected)  # no names: signature order


@pytest.mark.parametrize("keyword", ["names", "feature_names", "features_names"])
def test_feature_names_under_every_keyword_seldons_code_uses(saved, classifier, keyword):
    """Seldon's SKLearnServer (``names``), its MLFlowServer (``feature_names``) and the s2i
    guides (``features_names``) each name the columns their own way; every one orders them."""
    X = rows(3)
    expected = saved["classifier"].predict(pd.DataFrame(X, columns=IRIS_COLUMNS))
    order = [3, 1, 0, 2]
    names = [IRIS_COLUMNS[i] for i in order]
    got = classifier.predict(X[:, order], **{keyword: names})
    assert_same_predictions(got, expected)
    got = classifier.predict(X[:, order], meta={}, params=None, **{keyword: names})
    assert_same_predictions(got, expected)
    with pytest.raises(BadRequestError, match=r"missing \['sepal_length'"):
        classifier.predict(X, **{keyword: ["a", "b", "c", "d"]})


def test_predict_proba_through_the_flavors_model_names_the_classes(saved):
    server = loaded(saved["root"] / "classifier", predict_method="predict_proba")
    X = rows(2)
    got = server.predict(X, IRIS_COLUMNS)
    expected = saved["classifier"].predict_proba(pd.DataFrame(X, columns=IRIS_COLUMNS))
    assert_same_predictions(got, expected)
    assert list(server.class_names()) == ["setosa", "versicolor", "virginica"]


def test_decision_function_and_xgboost_predict_proba(saved):
    svc = loaded(saved["root"] / "svc", method="decision_function")
    assert svc.predict(rows(2)).shape == (2, 3)
    booster = loaded(saved["root"] / "xgboost", method="predict_proba")
    np.testing.assert_allclose(booster.predict(rows(2)), saved["xgboost"].predict_proba(rows(2)))
    assert list(booster.class_names()) == ["0", "1", "2"]
    plain = loaded(saved["root"] / "xgboost")
    assert_same_predictions(plain.predict(rows(2)), saved["xgboost"].predict(rows(2)))


def test_scaler_serves_as_input_and_output_transformer(saved):
    server = loaded(saved["root"] / "scaler")
    X = rows(2)
    for call in (server.transform_input, server.transform_output):
        assert_same_predictions(call(X), saved["scaler"].transform(X))
        assert list(server.class_names()) == ["x0", "x1", "x2", "x3"]


def test_a_model_without_transform_cannot_be_a_transformer(classifier):
    with pytest.raises(ServerFaultError, match="no transform method"):
        classifier.transform_input(rows(1))


@pytest.mark.parametrize(
    ("X", "names", "message"),
    [
        (rows(1), ["a", "b", "c", "d"], "missing ['sepal_length'"),
        ([[1.0, 2.0, 3.0]], None, "expected 4 features per row"),
        ([["x", "y", "z", "w"]], None, "column 'sepal_length': cannot read 'x' as double"),
        ({"sepal_length": [1.0]}, None, "missing"),
    ],
)
def test_bad_input_and_signature_violations_are_400s(classifier, X, names, message):
    with pytest.raises(BadRequestError) as info:
        classifier.predict(X, names)
    assert message in str(info.value)
    assert info.value.status_code == 400


def test_metadata_from_the_mlmodel_without_loading(saved):
    server = MLFlowServer(str(saved["root"] / "classifier"))
    meta = server.init_metadata()
    assert not server.ready
    assert meta["platform"] == "mlflow-sklearn"
    assert meta["inputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1]} for name in IRIS_COLUMNS
    ]
    assert meta["outputs"] == [{"name": "output-0", "datatype": "BYTES", "shape": [-1]}]
    assert meta["custom"]["flavors"] == "sklearn"
    assert meta["custom"]["mlflow version"]
    from seldon_core.metadata import validate_model_metadata

    validate_model_metadata(meta)


def test_metadata_yaml_wins(saved, tmp_path):
    import shutil

    folder = shutil.copytree(saved["root"] / "scaler", tmp_path / "scaler")
    (folder / "metadata.yaml").write_text("name: my-scaler\nversions: [v3]\n")
    meta = MLFlowServer(str(folder)).init_metadata()
    assert (meta["name"], meta["versions"]) == ("my-scaler", ["v3"])


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"xtype": "json"}, "xtype"),
        ({"method": "explain"}, "method"),
        ({"method": "predict", "predict_method": "predict_proba"}, "predict_method"),
    ],
)
def test_bad_parameters_are_rejected_at_once(params, parameter):
    with pytest.raises(ConfigurationError) as info:
        MLFlowServer("/nowhere", **params)
    assert info.value.parameter == parameter


def test_a_method_the_model_lacks_stops_loading(saved):
    with pytest.raises(ConfigurationError, match="StandardScaler"):
        loaded(saved["root"] / "scaler", method="predict_proba")


@pytest.mark.parametrize("name", ["svc", "proba"])
def test_an_sklearn_model_without_signature_is_served_without_importing_mlflow(saved, name):
    """Nothing for MLflow to enforce: the pickle is loaded and its pyfunc ``predict_fn`` called,
    in a process that never imports mlflow, with pyfunc's own result."""
    import json
    import subprocess
    import sys

    import mlflow.pyfunc

    folder = saved["root"] / name
    X = rows(4)
    code = (
        "import json, sys\n"
        "from modelshelf.frameworks.mlflow import MLFlowServer\n"
        f"server = MLFlowServer({str(folder)!r})\n"
        "server.load()\n"
        f"got = server.predict({X.tolist()!r})\n"
        "print(json.dumps({'mlflow': 'mlflow' in sys.modules, 'got': got.tolist()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["mlflow"] is False
    expected = mlflow.pyfunc.load_model(str(folder)).predict(X)
    assert_same_predictions(np.asarray(found["got"]), expected)


@pytest.fixture(scope="module")
def fitted_on_a_frame(tmp_path_factory):
    """A pipeline whose ColumnTransformer selects its columns by name (``feature_names_in_``),
    saved without a signature."""
    import mlflow

    from mlflow_corpus import homes_pipeline

    folder = tmp_path_factory.mktemp("mlflow-sigless") / "homes"
    mlflow.sklearn.save_model(homes_pipeline(), folder, pip_requirements=["scikit-learn"])
    return folder


def test_without_signature_the_fitted_columns_decide_the_input_at_load(saved, fitted_on_a_frame):
    """No signature: xtype=auto gives a model fitted on a DataFrame one, in its fitted columns,
    from rows with or without names (pyfunc's answers to the frame), and so does
    xtype=DataFrame; xtype=ndarray still hands it the array (the model's own refusal). A model
    fitted on an array keeps getting the array, with pyfunc's answers bit for bit."""
    import mlflow.pyfunc

    from mlflow_corpus import HOMES

    expected = mlflow.pyfunc.load_model(str(fitted_on_a_frame)).predict(HOMES)
    values = HOMES.to_numpy(dtype=object)
    reordered = list(reversed(HOMES.columns))
    for xtype in ("auto", "DataFrame"):
        server = loaded(fitted_on_a_frame, xtype=xtype)
        assert_same_predictions(server.predict(values), expected)
        assert_same_predictions(server.predict(HOMES[reordered].to_numpy(), reordered), expected)
    as_array = loaded(fitted_on_a_frame, xtype="ndarray")
    with pytest.raises(BadRequestError, match="only supported for dataframes"):
        as_array.predict(values, list(HOMES.columns))
    folder = saved["root"] / "svc"
    plain = loaded(folder)
    X = rows(4)
    assert type(plain.model_input(X, None)) is np.ndarray
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    np.testing.assert_array_equal(plain.predict(X), pyfunc.predict(X), strict=True)


@pytest.mark.parametrize("fast_path", [True, False, "false"])
def test_sklearn_flavor_methods_are_scikit_learn_s_own(saved, fast_path):
    """A logistic regression's predict_fn (predict_proba here) is scikit-learn's own call
    whatever ``fast_path`` says (no accelerator covers it), with pyfunc's predictions; NaN
    gets scikit-learn's 400, not a number."""
    import mlflow.pyfunc

    folder = saved["root"] / "proba"
    server = loaded(folder, fast_path=fast_path)
    assert server.fast_path is (fast_path is True)
    assert server.method.call == server.raw_model.predict_proba
    X = np.vstack([rows(50), rows(1) * 1e3])
    assert_same_predictions(server.predict(X), mlflow.pyfunc.load_model(str(folder)).predict(X))
    with pytest.raises(BadRequestError, match="NaN"):
        server.predict([[1.0, float("nan"), 2.0, 3.0]])


def test_fast_path_takes_only_true_or_false():
    with pytest.raises(ConfigurationError, match="fast_path"):
        MLFlowServer("/nonexistent", fast_path="sometimes")


@pytest.mark.parametrize("text", ["- a list\n- not fields\n", "flavors: [unclosed\n"])
def test_a_broken_mlmodel_file_stops_loading_naming_the_file(tmp_path, text):
    (tmp_path / "MLmodel").write_text(text)
    server = MLFlowServer(str(tmp_path))
    with pytest.raises(ModelLoadError, match="MLmodel"):
        server.load()
