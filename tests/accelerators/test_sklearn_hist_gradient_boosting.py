"""The HistGradientBoosting accelerator on real models: bit-identical to scikit-learn's own
methods for small requests (NaN, thresholds, DataFrames), scikit-learn's call for larger ones,
and no candidate where it cannot be exact (categorical features, overridden methods)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

import models
from modelshelf.accelerators import Accelerated, accelerate
from modelshelf.accelerators.sklearn_hist_gradient_boosting import WALK_MAX_ROWS
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.sklearn import SKLearnServer

RNG = np.random.default_rng(9)
X = RNG.standard_normal((400, 5))
X[RNG.random(X.shape) < 0.05] = np.nan  # the trees learn where missing values go
LABELS = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
BINARY = X[:, 2] > 0
TARGET = np.nan_to_num(X) @ RNG.standard_normal(5)


def served(folder: Path, method: str, **params: object) -> SKLearnServer:
    server = SKLearnServer(str(folder), method=method, **params)  # type: ignore[arg-type]
    server.load()
    return server


@pytest.mark.parametrize(
    ("estimator", "y", "method"),
    [
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), LABELS, "predict_proba"),
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), LABELS, "predict"),
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), BINARY, "predict_proba"),
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), BINARY, "predict"),
        (HistGradientBoostingRegressor(max_iter=30, random_state=0), TARGET, "predict"),
        (HistGradientBoostingRegressor(max_iter=30, loss="poisson"), np.abs(TARGET), "predict"),
    ],
    ids=["multi-proba", "multi-labels", "binary-proba", "binary-labels", "regressor", "poisson"],
)
def test_served_models_equal_scikit_learn_bit_for_bit(tmp_path, estimator, y, method):
    folder = models.save(estimator.fit(X, y), tmp_path / "hgb")
    fast = served(folder, method)
    assert isinstance(fast.method.call, Accelerated)
    assert "numpy" in fast.init_metadata()["custom"]["fast path"]
    model = fast.model
    unseen = RNG.standard_normal((WALK_MAX_ROWS, 5)) * 3
    unseen[::3, 1] = np.nan
    for rows in (unseen[:1], unseen, X[:7], X, np.full((1, 5), np.inf), np.full((2, 5), -1e308)):
        np.testing.assert_array_equal(fast.predict(rows), getattr(model, method)(rows))


def test_a_model_fitted_on_a_dataframe_takes_names(tmp_path):
    frame = pd.DataFrame(X, columns=list("abcde"))
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame, LABELS)
    fast = served(models.save(model, tmp_path / "frame"), "predict_proba")
    assert isinstance(fast.method.call, Accelerated)
    rows = frame.iloc[:5]
    np.testing.assert_array_equal(
        fast.predict(rows[list("edcba")].to_numpy(), list("edcba")), model.predict_proba(rows)
    )
    with pytest.raises(BadRequestError):
        fast.predict(np.ones((1, 4)), list("abcd"))


def test_models_it_cannot_serve_exactly_keep_scikit_learn_s_call():
    frame = pd.DataFrame({"kind": pd.Categorical(LABELS), "x": X[:, 0]})
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    categorical.fit(frame, BINARY)
    assert accelerate(categorical, "predict_proba", categorical.predict_proba) is None

    class Shifted(HistGradientBoostingRegressor):
        def predict(self, X):
            return super().predict(X) + 1.0

    shifted = Shifted(max_iter=5).fit(X, TARGET)
    assert accelerate(shifted, "predict", shifted.predict) is None
