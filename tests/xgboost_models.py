"""Small real XGBoost models the XGBoost tests serve, trained in well under a second each."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import xgboost as xgb
from sklearn.datasets import load_diabetes, load_iris

from models import IRIS_COLUMNS, IRIS_X

IRIS_TARGET = load_iris().target
PARAMS = {"max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}


def save_booster(booster: xgb.Booster, folder: Path, name: str = "model.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / name))  # .bst: XGBoost >= 2 writes UBJSON under that name
    return folder


def save_pickle(model: object, folder: Path, name: str = "model.joblib") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / name)
    return folder


def with_missing(X: np.ndarray, every: int = 7) -> np.ndarray:
    """``X`` with every ``every``-th value missing, so the trees learn default directions."""
    X = np.array(X, dtype=np.float64)
    X.flat[::every] = np.nan
    return X


def iris_softprob() -> xgb.Booster:
    """3-class ``multi:softprob`` booster on iris that knows its feature names (the model the
    speed figures use: 20 rounds, depth 3)."""
    data = xgb.DMatrix(with_missing(IRIS_X), label=IRIS_TARGET, feature_names=IRIS_COLUMNS)
    params = {**PARAMS, "objective": "multi:softprob", "num_class": 3}
    return xgb.train(params, data, num_boost_round=20)


def iris_softmax() -> xgb.Booster:
    data = xgb.DMatrix(IRIS_X, label=IRIS_TARGET)
    params = {**PARAMS, "objective": "multi:softmax", "num_class": 3}
    return xgb.train(params, data, num_boost_round=10)


def binary_logistic() -> xgb.Booster:
    """``binary:logistic`` (virginica or not), no feature names, trained with missing values."""
    data = xgb.DMatrix(with_missing(IRIS_X, 5), label=(IRIS_TARGET == 2).astype(int))
    return xgb.train({**PARAMS, "objective": "binary:logistic"}, data, num_boost_round=10)


def diabetes_regressor() -> xgb.Booster:
    diabetes = load_diabetes()
    data = xgb.DMatrix(diabetes.data, label=diabetes.target)
    return xgb.train({**PARAMS, "objective": "reg:squarederror"}, data, num_boost_round=15)


def iris_classifier() -> xgb.XGBClassifier:
    """The scikit-learn API: ``XGBClassifier`` fitted on iris (classes_ 0, 1, 2)."""
    return xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(IRIS_X, IRIS_TARGET)


def diabetes_xgb_regressor() -> xgb.XGBRegressor:
    diabetes = load_diabetes()
    return xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(
        diabetes.data, diabetes.target
    )


def from_future_version(folder: Path) -> Path:
    """A JSON model claiming to be saved by XGBoost 99.0.0 (XGBoost itself loads it silently)."""
    save_booster(iris_softprob(), folder)
    path = folder / "model.json"
    model = json.loads(path.read_text())
    model["version"] = [99, 0, 0]
    path.write_text(json.dumps(model))
    return folder


def corrupt_ubj(folder: Path) -> Path:
    """The first 200 bytes of a UBJSON model: what a truncated download leaves."""
    save_booster(iris_softprob(), folder, "model.ubj")
    path = folder / "model.ubj"
    path.write_bytes(path.read_bytes()[:200])
    return folder


def legacy_binary(folder: Path) -> Path:
    """A file in the pre-1.0 binary format's shape, which XGBoost >= 3.1 no longer reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bst").write_bytes(b"binf" + bytes(200))
    return folder
