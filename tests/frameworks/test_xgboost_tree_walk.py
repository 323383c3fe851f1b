"""The Python tree walk against XGBoost's own predictor: bit for bit where it is used, refused
where it is not equal or not covered, and chosen by XGBoostServer for small requests only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

import xgboost_models as xm
from models import IRIS_X
from modelshelf.frameworks.xgboost import XGBoostServer
from modelshelf.frameworks.xgboost import _tree_walk as tw

RNG = np.random.default_rng(3)


def _objective(booster: xgb.Booster) -> str:
    return json.loads(booster.save_config())["learner"]["objective"]["name"]


def _rows(booster: xgb.Booster, n: int) -> np.ndarray:
    X = RNG.standard_normal((n, booster.num_features())) * 2 + 3
    X[RNG.random(X.shape) < 0.15] = np.nan  # missing values take each node's default branch
    return X


COVERED = {
    "softprob": xm.iris_softprob,
    "softmax": xm.iris_softmax,
    "classifier": lambda: xm.iris_classifier().get_booster(),
    "regressor": lambda: xm.diabetes_xgb_regressor().get_booster(),
}


@pytest.mark.parametrize("name", COVERED)
def test_the_walk_equals_xgboost_bit_for_bit(name):
    booster = COVERED[name]()
    walk, note = tw.verified_tree_walk(booster, _objective(booster), np.nan, booster.num_features())
    assert walk is not None, note
    assert "equal on" in note
    for n in (1, 3, 200):
        X = _rows(booster, n)
        for predict_type in ("value", "margin"):
            want = booster.inplace_predict(X, predict_type=predict_type)
            got = walk.predictor(predict_type)(X)
            assert got.dtype == want.dtype == np.float32
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def _trained(objective: str, seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    labels = {
        "binary:logistic": (X[:, 0] + rng.normal(size=400) > 0.4).astype(int),
        "reg:squarederror": X[:, 1] * 3 + seed,
        "multi:softprob": rng.integers(0, 3, 400),
        "count:poisson": np.abs(X[:, 2]) * (seed + 1),
    }
    params = {"objective": objective, "max_depth": 4, "nthread": 1, "seed": seed}
    if objective == "multi:softprob":
        params["num_class"] = 3
    return xgb.train(params, xgb.DMatrix(X, labels[objective]), 10 + seed)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "objective", ["binary:logistic", "reg:squarederror", "multi:softprob", "count:poisson"]
)
def test_the_walk_is_accepted_and_exact_on_many_rows(objective, seed):
    """The base margin comes from the model's base_score in float32 (not guessed from a probe
    row) and the transforms use the C library's expf, as XGBoost: every model is accepted, and
    20,000 random rows (with missing values) equal XGBoost's own values bit for bit."""
    booster = _trained(objective, seed)
    walk, note = tw.verified_tree_walk(booster, objective, np.nan, 6)
    assert walk is not None, note
    X = (RNG.standard_normal((20000, 6)) * 3).astype(np.float32)
    X[RNG.random(X.shape) < 0.1] = np.nan
    for predict_type in ("value", "margin"):
        want = booster.inplace_predict(X, predict_type=predict_type)
        np.testing.assert_array_equal(walk.predictor(predict_type)(X), want)


def test_a_walk_that_differs_from_xgboost_is_refused(monkeypatch):
    booster = xm.iris_softprob()
    monkeypatch.setitem(tw._TRANSFORMS, "multi:softprob", tw._margin)  # a wrong transform
    walk, note = tw.verified_tree_walk(booster, "multi:softprob", np.nan, booster.num_features())
    assert walk is None
    assert "value differs" in note


def test_models_the_walk_does_not_cover_keep_xgboost():
    booster = xm.iris_softprob()
    # a `missing` other than NaN, an objective without a transform here, a DART booster
    assert tw.tree_walk(booster, "multi:softprob", -1.0) is None
    assert tw.tree_walk(booster, "survival:cox", np.nan) is None
    dart = xgb.train(
        {"booster": "dart", "objective": "multi:softprob", "num_class": 3, "max_depth": 2},
        xgb.DMatrix(IRIS_X, label=xm.IRIS_TARGET),
        num_boost_round=3,
    )
    walk, note = tw.verified_tree_walk(dart, "multi:softprob", np.nan, 4)
    assert walk is None
    assert "does not cover" in note


def test_the_server_walks_small_requests_and_asks_xgboost_for_large_ones(tmp_path):
    booster = xm.iris_softprob()
    server = XGBoostServer(str(xm.save_booster(booster, tmp_path / "m")), method="predict")
    server.load()
    call = server.method.call
    assert call.walk is not None
    most = int(call.walk_rows)
    assert 1 <= most < 200
    walked, native = [], []
    call.walk = _recording(call.walk, walked)
    call.predict_dense = _recording(call.predict_dense, native)
    for n in (1, most, most + 1, 200):
        X = _rows(booster, n)
        np.testing.assert_array_equal(server.predict(X, []), booster.inplace_predict(X))
    assert walked == [1, most]
    assert native == [most + 1, 200]


def _recording(function, calls: list[int]):
    def recorded(*args):
        calls.append(len(args[-1]))
        return function(*args)

    return recorded
