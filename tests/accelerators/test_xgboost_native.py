"""The XGBoost accelerator (``XGBoosterPredictFromDense`` through ``xgboost.core._LIB``) on real
models: bit-identical to ``Booster.inplace_predict`` and to the servers' own calls, early
stopping honoured, and the fallback where the private entry point is missing."""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost as xgb

import xgboost_models as xm
from models import IRIS_X
from modelshelf.accelerators import Accelerated, accelerate, xgboost_native
from modelshelf.accelerators.verify import adversarial_rows
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.xgboost import XGBoostServer

X = xm.with_missing(IRIS_X[::15], 9)  # 10 rows, some values missing
DIABETES_X = xm.load_diabetes().data[:7]
ACCELERATED = ("predict", "predict_proba", "predict_margin")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xgboost-native")
    return {
        "softprob": xm.save_booster(xm.iris_softprob(), root / "softprob", "model.json"),
        "binary": xm.save_booster(xm.binary_logistic(), root / "binary", "model.bst"),
        "softmax": xm.save_booster(xm.iris_softmax(), root / "softmax", "model.json"),
        "regressor": xm.save_booster(xm.diabetes_regressor(), root / "regressor", "model.ubj"),
        "classifier": xm.save_pickle(xm.iris_classifier(), root / "classifier", "model.joblib"),
        "xgb_regressor": xm.save_pickle(xm.diabetes_xgb_regressor(), root / "pkl", "model.pkl"),
    }


def loaded(folder: Path, method: str, **params: object) -> XGBoostServer:
    server = XGBoostServer(str(folder), method=method, **params)  # type: ignore[arg-type]
    server.load()
    return server


def rows_for(name: str) -> np.ndarray:
    return DIABETES_X if "regressor" in name else X


def test_the_installed_xgboost_has_the_entry_point():
    """Else the accelerator is gone (the bench's 1.7x on the 300-tree booster with it)."""
    assert xgboost_native.native_entry_point() is not None, "xgboost.core._LIB lost it"


@pytest.mark.parametrize("predict_type", ["value", "margin"])
@pytest.mark.parametrize("name", ["softprob", "binary", "softmax", "regressor"])
def test_native_equals_booster_inplace_predict(folders, name, predict_type):
    booster = xgb.Booster()
    booster.load_model(bytearray(next(folders[name].iterdir()).read_bytes()))
    entry_point = xgboost_native.native_entry_point()
    predict = xgboost_native.dense_predictor(booster, predict_type, np.nan, 0, entry_point)
    rows = rows_for(name)
    probes = adversarial_rows(booster.num_features())
    for batch in (rows[:1], rows.astype(np.float32), np.asfortranarray(rows), *probes):
        want = booster.inplace_predict(batch, predict_type=predict_type)
        np.testing.assert_array_equal(predict(batch), want)


@pytest.mark.parametrize(
    ("name", "method"),
    [(n, m) for n in ("softprob", "binary", "softmax", "classifier") for m in ACCELERATED]
    + [("xgb_regressor", "predict"), ("regressor", "predict_margin")],
)
def test_servers_serve_it_bit_identical_to_their_own_call(folders, name, method):
    fast = loaded(folders[name], method)
    slow = loaded(folders[name], method, fast_path=False)
    assert isinstance(fast.method.call, Accelerated)
    assert not isinstance(slow.method.call, Accelerated)
    assert "XGBoosterPredictFromDense" in fast.init_metadata()["custom"]["fast path"]
    assert slow.init_metadata()["custom"]["fast path"] == "off (fast_path=false)"
    rows = rows_for(name)
    width = rows.shape[1]
    extremes = (
        np.full((2, width), 1e308),
        np.full((1, width), 3.5e38),
        np.full((1, width), 5e-324),
    )
    for batch in (rows[:1], rows, np.tile(rows, (30, 1)), *extremes):
        np.testing.assert_array_equal(fast.predict(batch, []), slow.predict(batch, []))


def test_an_early_stopped_classifier_is_accelerated_up_to_its_best_iteration():
    from sklearn.datasets import make_classification

    Xc, yc = make_classification(600, 8, n_informative=5, n_classes=3, random_state=0)
    model = xgb.XGBClassifier(n_estimators=200, early_stopping_rounds=3, max_depth=4)
    model.fit(Xc[:300], yc[:300], eval_set=[(Xc[300:], yc[300:])], verbose=False)
    assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds()
    for method in ("predict", "predict_proba"):
        found = accelerate(model, method, getattr(model, method))
        assert found is not None
        np.testing.assert_array_equal(found(Xc), getattr(model, method)(Xc))


def test_a_reference_it_does_not_equal_is_refused_with_a_warning(folders, caplog):
    """The margins' reference offered as ``predict``: the candidate's values differ."""
    booster = xgb.Booster()
    booster.load_model(str(folders["softprob"] / "model.json"))
    margins = loaded(folders["softprob"], "predict_margin", fast_path=False).method.call
    with caplog.at_level(logging.INFO):
        assert accelerate(booster, "predict", margins) is None
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "refused" in warning.getMessage() and "values differ" in warning.getMessage()


@pytest.mark.parametrize("method", ACCELERATED)
def test_without_the_private_entry_point_the_framework_s_call_serves(folders, monkeypatch, method):
    """Where ``xgboost.core._LIB`` lacks the entry point (another build, a later release)."""
    fast = loaded(folders["classifier"], method)
    monkeypatch.setattr(xgboost_native, "native_entry_point", lambda: None)
    fallback = loaded(folders["classifier"], method)
    assert not isinstance(fallback.method.call, Accelerated)
    assert fallback.init_metadata()["custom"]["fast path"] == "the framework's own call"
    for rows in (X[:1], X, np.tile(X, (10, 1))):
        np.testing.assert_array_equal(fallback.predict(rows, []), fast.predict(rows, []))


def test_a_wrong_width_is_still_a_400(folders):
    server = loaded(folders["softprob"], "predict")
    with pytest.raises(BadRequestError):
        server.predict(np.ones((1, 7)), [])


def test_an_estimator_s_missing_value_is_honoured(tmp_path):
    model = xgb.XGBRegressor(n_estimators=5, missing=-1.0).fit(
        np.where(IRIS_X > 5, -1.0, IRIS_X), IRIS_X[:, 0]
    )
    folder = xm.save_pickle(model, tmp_path / "missing")
    server = loaded(folder, "predict")
    assert isinstance(server.method.call, Accelerated)
    rows = np.array([[-1.0, 2.0, -1.0, 0.5], [6.0, 3.0, 1.0, 0.2]])
    np.testing.assert_array_equal(
        server.predict(rows, []), joblib.load(folder / "model.joblib").predict(rows)
    )
