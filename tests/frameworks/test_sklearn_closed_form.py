"""The numpy closed forms against scikit-learn's own methods, on real fitted estimators and
random data; the fall-backs (no closed form, verification mismatch, unusual dtypes); and
SKLearnServer choosing its path in this process."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import linear_model as lm
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.svm import SVC, LinearSVC

import models
from modelshelf.errors import BadRequestError, ConfigurationError
from modelshelf.frameworks.sklearn import NUMPY_PATH, SKLEARN_PATH, SKLearnServer
from modelshelf.frameworks.sklearn_closed_form import (
    NoClosedFormError,
    closed_form,
    verified_closed_form,
)
from modelshelf.frameworks.sklearn_row_form import ROW_FORM_MAX_WORK, row_form

RNG = np.random.default_rng(7)
N_FEATURES = 5
TRAIN_X = RNG.standard_normal((200, N_FEATURES)) * [1, 10, 0.1, 100, 3] + [0, 5, -1, 50, 0]
MULTI_Y = np.array(["ant", "bee", "cat"])[RNG.integers(0, 3, 200)]
BINARY_Y = RNG.integers(0, 2, 200)
TARGET = TRAIN_X @ RNG.standard_normal(N_FEATURES) + RNG.standard_normal(200)
#: Request-like rows: unseen random rows at several scales, and integer rows.
REQUEST_X = np.vstack([RNG.standard_normal((30, N_FEATURES)) * s for s in (0.01, 1, 30, 1e4)])

CLASSIFIER_METHODS = ("predict", "decision_function")
PROBA_METHODS = ("predict_proba", "predict_log_proba", *CLASSIFIER_METHODS)


def _cases() -> list[tuple[str, object, str]]:
    scaled = TRAIN_X
    found: list[tuple[str, object, str]] = []
    classifiers = {
        "logistic multinomial": (lm.LogisticRegression(max_iter=2000), MULTI_Y, PROBA_METHODS),
        "logistic binary": (lm.LogisticRegression(max_iter=2000), BINARY_Y, PROBA_METHODS),
        "logistic cv": (
            lm.LogisticRegressionCV(max_iter=2000, cv=3, use_legacy_attributes=False),
            MULTI_Y,
            PROBA_METHODS,
        ),
        "ridge classifier multi": (lm.RidgeClassifier(), MULTI_Y, CLASSIFIER_METHODS),
        "ridge classifier binary": (lm.RidgeClassifier(), BINARY_Y, CLASSIFIER_METHODS),
        "sgd classifier": (lm.SGDClassifier(random_state=0), MULTI_Y, CLASSIFIER_METHODS),
        "linear svc": (LinearSVC(), MULTI_Y, CLASSIFIER_METHODS),
        "perceptron": (lm.Perceptron(random_state=0), BINARY_Y, CLASSIFIER_METHODS),
    }
    for name, (estimator, y, methods) in classifiers.items():
        fitted = estimator.fit(StandardScaler().fit_transform(scaled), y)
        found += [(name, fitted, method) for method in methods]
    regressors = {
        "linear regression": lm.LinearRegression(),
        "linear regression no intercept": lm.LinearRegression(fit_intercept=False),
        "ridge": lm.Ridge(),
        "lasso": lm.Lasso(alpha=0.1),
        "elastic net": lm.ElasticNet(alpha=0.1),
        "sgd regressor": lm.SGDRegressor(random_state=0),
    }
    for name, estimator in regressors.items():
        found.append(
            (name, estimator.fit(StandardScaler().fit_transform(scaled), TARGET), "predict")
        )
    found.append(("ridge two outputs", lm.Ridge().fit(scaled, np.c_[TARGET, -TARGET]), "predict"))
    for scaler in (
        StandardScaler(),
        StandardScaler(with_mean=False),
        MinMaxScaler(),
        MinMaxScaler(feature_range=(-2, 2), clip=True),
        MaxAbsScaler(),
        MaxAbsScaler(clip=True),
    ):
        found.append((repr(scaler), scaler.fit(scaled), "transform"))
    pipelines = {
        "standard + logistic": (
            make_pipeline(StandardScaler(), lm.LogisticRegression(max_iter=2000)),
            MULTI_Y,
            PROBA_METHODS,
        ),
        "minmax + maxabs + linear svc": (
            make_pipeline(MinMaxScaler(), MaxAbsScaler(), LinearSVC()),
            BINARY_Y,
            CLASSIFIER_METHODS,
        ),
        "standard + ridge": (make_pipeline(StandardScaler(), lm.Ridge()), TARGET, ("predict",)),
    }
    for name, (pipeline, y, methods) in pipelines.items():
        fitted = pipeline.fit(scaled, y)
        found += [(name, fitted, method) for method in methods]
    scalers = make_pipeline(StandardScaler(), MinMaxScaler()).fit(scaled)
    found.append(("standard + minmax", scalers, "transform"))
    return found


CASES = _cases()


@pytest.mark.parametrize(("name", "model", "method"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_closed_form_equals_scikit_learn(name, model, method):
    fast = verified_closed_form(model, method, model.n_features_in_)
    assert fast.call is not None, fast.note
    assert not fast.refused
    assert "in plain Python" in fast.note, fast.note  # every case here has a plain-Python form
    for X in (REQUEST_X, np.rint(REQUEST_X).astype(np.int64)):  # numpy: same operations
        _assert_same(fast.call(X.copy()), getattr(model, method)(X.copy()), bit_identical=True)
    for X in (REQUEST_X[:1], REQUEST_X[-1:], REQUEST_X[40:42]):  # plain Python: within rounding
        _assert_same(fast.call(X.copy()), getattr(model, method)(X.copy()), bit_identical=False)


def _assert_same(ours: np.ndarray, theirs: np.ndarray, bit_identical: bool) -> None:
    assert type(ours) is type(theirs)
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    if bit_identical or ours.dtype.kind not in "fc":
        np.testing.assert_array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_scikit_learn_itself_differs_in_the_last_bits_between_a_row_alone_and_in_a_batch():
    """Why the plain-Python form is held to 1e-12 rather than bit-identity."""
    model = lm.LogisticRegression(max_iter=2000).fit(TRAIN_X, MULTI_Y)
    batch = model.decision_function(REQUEST_X)
    alone = np.vstack(
        [model.decision_function(REQUEST_X[i : i + 1]) for i in range(len(REQUEST_X))]
    )
    assert not np.array_equal(batch, alone)
    np.testing.assert_allclose(alone, batch, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_rows_whose_scores_overflow_are_answered_as_scikit_learn_does(method):
    model = lm.LogisticRegression(max_iter=2000).fit(TRAIN_X, MULTI_Y)
    call = verified_closed_form(model, method, N_FEATURES).call
    assert call is not None
    X = np.full((1, N_FEATURES), 1e306)
    with np.errstate(all="ignore"):
        ours, theirs = call(X.copy()), getattr(model, method)(X.copy())
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("score", [-709.9, -720.0, -744.9, -746.0, -700.0, 30.0])
def test_binary_log_probabilities_of_a_few_rows_are_scikit_learn_s(score):
    """Scores between -745 and -709.8: scikit-learn's expit gives P = 0 (log -inf), where
    exp(score) / (1 + exp(score)) would still be a subnormal number."""
    model = lm.LogisticRegression(max_iter=2000).fit(TRAIN_X, BINARY_Y)
    model.intercept_ = model.intercept_ + score - model.decision_function(REQUEST_X[:1])[0]
    X = REQUEST_X[:1].copy()
    assert model.decision_function(X)[0] == pytest.approx(score)
    for method in ("predict_log_proba", "predict_proba"):
        fast = verified_closed_form(model, method, N_FEATURES)
        assert fast.call is not None and "plain Python" in fast.note, fast.note
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(
                fast.call(X.copy()), getattr(model, method)(X.copy()), rtol=1e-12
            )


@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler(), MaxAbsScaler()])
@pytest.mark.parametrize("rows", [1, 200])  # plain Python and numpy
def test_scaled_values_that_overflow_are_refused_like_scikit_learn(scaler, rows):
    """Finite inputs near 1e308 that a scaler turns into infinity: scikit-learn's next step
    refuses them (a 400 from the server), so the fast path must too."""
    model = make_pipeline(scaler, lm.LogisticRegression(max_iter=2000))
    model.fit(TRAIN_X * 1e-3, MULTI_Y)
    call = verified_closed_form(model, "predict_proba", N_FEATURES).call
    assert call is not None
    X = np.tile(REQUEST_X[:1], (rows, 1))
    X[:, 2] = 1.7e308
    with pytest.raises(ValueError, match="infinity"), np.errstate(all="ignore"):
        model.predict_proba(X.copy())
    with pytest.raises(ValueError, match="infinity"), np.errstate(all="ignore"):
        call(X.copy())


def test_requests_above_the_plain_python_size_take_numpy():
    model = lm.LogisticRegression(max_iter=2000).fit(TRAIN_X, MULTI_Y)
    rows = row_form(model, "predict_proba")
    most = int(ROW_FORM_MAX_WORK // rows.work)
    assert most >= 1
    fast = verified_closed_form(model, "predict_proba", N_FEATURES)
    assert f"up to {most} rows in plain Python" in fast.note
    X = REQUEST_X[: most + 1]
    np.testing.assert_array_equal(fast.call(X.copy()), model.predict_proba(X.copy()))


def test_dataframe_fitted_pipeline_takes_its_frame():
    model = models.iris_frame_pipeline()
    fast = verified_closed_form(model, "predict_proba", 4, models.IRIS_COLUMNS)
    assert fast.call is not None, fast.note
    frame = pd.DataFrame(models.rows(5), columns=models.IRIS_COLUMNS)
    np.testing.assert_array_equal(fast.call(frame), model.predict_proba(frame))


@pytest.mark.parametrize(
    ("model", "method"),
    [
        (SVC().fit(TRAIN_X, BINARY_Y), "predict"),
        (lm.SGDClassifier(loss="log_loss", random_state=0).fit(TRAIN_X, BINARY_Y), "predict_proba"),
        (lm.PoissonRegressor().fit(TRAIN_X, np.abs(TARGET)), "predict"),
        (make_pipeline(StandardScaler(), SVC()).fit(TRAIN_X, BINARY_Y), "predict"),
    ],
    ids=["svc", "sgd log-loss proba", "poisson", "pipeline with svc"],
)
def test_no_closed_form_for_other_estimators(model, method):
    with pytest.raises(NoClosedFormError):
        closed_form(model, method)
    fast = verified_closed_form(model, method, model.n_features_in_)
    assert fast.call is None
    assert not fast.refused


class ShiftedRegression(lm.LinearRegression):
    """A subclass whose predict is not the closed form of its coefficients."""

    def predict(self, X):
        return super().predict(X) + 1.0


class ShiftedClassifier(lm.LogisticRegression):
    def predict(self, X):
        return np.full(len(X), self.classes_[0])


@pytest.mark.parametrize(
    ("model", "method", "difference"),
    [
        (ShiftedRegression().fit(TRAIN_X, TARGET), "predict", "values differ"),
        (ShiftedClassifier(max_iter=2000).fit(TRAIN_X, MULTI_Y), "predict", "labels"),
    ],
    ids=["values", "labels"],
)
def test_verification_refuses_a_subclass_that_changes_the_method(model, method, difference):
    fast = verified_closed_form(model, method, model.n_features_in_)
    assert fast.call is None
    assert fast.refused
    assert difference in fast.note


def test_unusual_inputs_go_to_scikit_learn():
    model = lm.LogisticRegression(max_iter=2000).fit(TRAIN_X, MULTI_Y)
    call = verified_closed_form(model, "predict_proba", N_FEATURES).call
    assert call is not None
    single = REQUEST_X[:3].astype(np.float32)
    np.testing.assert_array_equal(call(single), model.predict_proba(single))
    assert call(single).dtype == model.predict_proba(single).dtype


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_like_scikit_learn(bad):
    model = make_pipeline(StandardScaler(), lm.LogisticRegression(max_iter=2000))
    model.fit(TRAIN_X, MULTI_Y)
    call = verified_closed_form(model, "predict_proba", N_FEATURES).call
    assert call is not None
    X = REQUEST_X[:2].copy()
    X[1, 3] = bad
    with pytest.raises(ValueError):
        model.predict_proba(X)
    with pytest.raises(ValueError, match="NaN" if np.isnan(bad) else "infinity"):
        call(X)


def test_scalers_let_nan_through_as_scikit_learn_does():
    scaler = make_pipeline(StandardScaler(), MaxAbsScaler()).fit(TRAIN_X)
    call = verified_closed_form(scaler, "transform", N_FEATURES).call
    assert call is not None
    X = REQUEST_X[:2].copy()
    X[0, 1] = np.nan
    np.testing.assert_array_equal(call(X), scaler.transform(X))
    X[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        scaler.transform(X)
    with pytest.raises(ValueError, match="infinity"):
        call(X)


# ---------------------------------------------------------------- SKLearnServer in this process


def _server(folder: Path, **params: object) -> SKLearnServer:
    server = SKLearnServer(str(folder), **params)  # type: ignore[arg-type]
    server.load()
    return server


def test_server_serves_the_closed_form_and_says_so(tmp_path, caplog):
    folder = models.save(models.iris_classifier(), tmp_path / "iris")
    with caplog.at_level(logging.INFO, logger="modelshelf.frameworks.sklearn"):
        server = _server(folder)
    assert server.prediction_path == NUMPY_PATH
    assert "numpy closed form" in caplog.text
    assert server.init_metadata()["custom"]["prediction path"] == NUMPY_PATH
    X = models.rows(4)
    expected = server.model.predict_proba(X)
    np.testing.assert_allclose(server.predict(X.tolist()), expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(BadRequestError, match="NaN"):
        server.predict([[np.nan, 1, 2, 3]])


@pytest.mark.parametrize("off", [False, "false", "0"])
def test_fast_path_off_serves_scikit_learn(tmp_path, off, caplog):
    folder = models.save(models.iris_classifier(), tmp_path / "iris")
    with caplog.at_level(logging.INFO, logger="modelshelf.frameworks.sklearn"):
        server = _server(folder, fast_path=off)
    assert server.prediction_path == SKLEARN_PATH
    assert "fast_path=false" in caplog.text
    assert server.method is not None
    assert server.method.call == server.model.predict_proba
    assert server.init_metadata()["custom"]["prediction path"] == SKLEARN_PATH


def test_fast_path_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigurationError, match="fast_path='sometimes'"):
        SKLearnServer(str(tmp_path), fast_path="sometimes")


def test_refused_fast_path_logs_one_warning_and_serves_scikit_learn(tmp_path, caplog):
    folder = models.save(ShiftedRegression().fit(TRAIN_X, TARGET), tmp_path / "shifted")
    with caplog.at_level(logging.INFO, logger="modelshelf.frameworks.sklearn"):
        server = _server(folder, method="predict")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "does not match" in warnings[0].getMessage()
    assert server.prediction_path == SKLEARN_PATH
    X = REQUEST_X[:3]
    np.testing.assert_array_equal(server.predict(X), server.model.predict(X))
    assert not server.load_warnings  # the probe's own numeric warnings are not reported


def test_scaler_transform_is_fast_too(tmp_path):
    folder = models.save(models.iris_scaler(), tmp_path / "scaler")
    server = _server(folder)
    assert server.prediction_path == NUMPY_PATH
    X = models.rows(3)
    np.testing.assert_array_equal(server.transform_input(X), server.model.transform(X))
