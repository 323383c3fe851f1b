"""The forest accelerator on real forests: bit-identical to scikit-learn's own methods (arrays,
DataFrames, NaN where the trees take it, refusals), offered only where it can be exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

import models
from modelshelf.accelerators import Accelerated, accelerate
from modelshelf.accelerators.verify import adversarial_rows
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.sklearn import SKLearnServer

RNG = np.random.default_rng(5)
X = RNG.standard_normal((300, 6))
LABELS = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
TARGET = X @ RNG.standard_normal(6)
REQUESTS = [X[:1], X[:7], RNG.standard_normal((300, 6)) * 100]


def served(folder: Path, method: str, **params: object) -> SKLearnServer:
    server = SKLearnServer(str(folder), method=method, **params)  # type: ignore[arg-type]
    server.load()
    return server


@pytest.mark.parametrize(
    ("estimator", "y", "method"),
    [
        (RandomForestClassifier(20, random_state=0), LABELS, "predict_proba"),
        (RandomForestClassifier(20, random_state=0), LABELS, "predict"),
        (ExtraTreesClassifier(20, random_state=0), LABELS, "predict_proba"),
        (RandomForestRegressor(20, random_state=0), TARGET, "predict"),
        (ExtraTreesRegressor(20, random_state=0), np.column_stack([TARGET, -TARGET]), "predict"),
    ],
    ids=["rf-proba", "rf-labels", "extra-proba", "rf-regressor", "extra-2-outputs"],
)
def test_served_forests_equal_scikit_learn_bit_for_bit(tmp_path, estimator, y, method):
    folder = models.save(estimator.fit(X, y), tmp_path / "forest")
    fast = served(folder, method)
    assert isinstance(fast.method.call, Accelerated)
    assert "joblib" in fast.init_metadata()["custom"]["fast path"]
    model = fast.model
    for rows in REQUESTS:
        np.testing.assert_array_equal(fast.predict(rows), getattr(model, method)(rows))
    for rows in (np.full((1, 6), np.inf), np.full((1, 6), 1e300)):  # beyond float32: a 400
        with pytest.raises(BadRequestError):
            fast.predict(rows)


def test_a_forest_fitted_on_a_dataframe_takes_names_and_nan(tmp_path):
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    frame.iloc[::5, 2] = np.nan  # trees fitted with missing values route NaN as they learned
    model = RandomForestClassifier(10, random_state=0).fit(frame, LABELS)
    fast = served(models.save(model, tmp_path / "frame"), "predict_proba")
    assert isinstance(fast.method.call, Accelerated)
    rows = frame.iloc[:9]
    names = list(frame.columns)
    np.testing.assert_array_equal(
        fast.predict(rows[names[::-1]].to_numpy(), names[::-1]), model.predict_proba(rows)
    )


def test_forests_it_cannot_serve_exactly_keep_scikit_learn_s_call(tmp_path):
    parallel = RandomForestClassifier(10, n_jobs=2, random_state=0).fit(X, LABELS)
    assert accelerate(parallel, "predict_proba", parallel.predict_proba) is None

    class Calibrated(RandomForestClassifier):
        def predict_proba(self, X):
            return super().predict_proba(X) ** 2

    custom = Calibrated(10, random_state=0).fit(X, LABELS)
    assert accelerate(custom, "predict_proba", custom.predict_proba) is None
    assert accelerate(custom, "predict", custom.predict) is None
    multi = RandomForestClassifier(5, random_state=0).fit(X, np.column_stack([LABELS, LABELS]))
    assert accelerate(multi, "predict_proba", multi.predict_proba) is None


def test_fast_path_off_serves_scikit_learn_s_call(tmp_path):
    folder = models.save(RandomForestClassifier(5, random_state=0).fit(X, LABELS), tmp_path / "f")
    off = served(folder, "predict_proba", fast_path=False)
    assert off.method.call == off.model.predict_proba
    assert off.init_metadata()["custom"]["fast path"] == "off (fast_path=false)"
    for probe in adversarial_rows(6)[:3]:
        np.testing.assert_array_equal(off.predict(probe), off.model.predict_proba(probe))
