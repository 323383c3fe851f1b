"""The LightGBM accelerator on real boosters and pickled estimators: bit-identical to
LightGBM's own methods for one-row requests (NaN, inf, float32, categorical splits), the
framework's call for the rest and for every refusal; verification refuses a candidate that
differs from the reference; off means LightGBM's own call; and a real ``modelshelf serve``
process serves it."""

from __future__ import annotations

import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from microservice import SERVERS, seldon_parameters
from modelshelf.accelerators import Accelerated, accelerate
from modelshelf.accelerators.lightgbm_booster import candidate
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.lightgbm import LightGBMServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from frontends import MODELSHELF, Launch, running

RNG = np.random.default_rng(20)
FEATURES = 8


def _rows(count: int, seed: int = 3) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, FEATURES)) * 2
    rows[::4, 1] = np.nan
    return rows


def _booster(kind: str, folder: Path) -> Path:
    """A booster of ``kind`` trained with missing values (so trees learn where NaN goes), saved
    as ``model.txt`` in ``folder``."""
    params = {"verbose": -1, "num_threads": 1, "seed": 0}
    if kind in ("multiclass", "binary"):
        classes = 3 if kind == "multiclass" else 2
        X, y = make_classification(600, FEATURES, n_informative=5, n_classes=classes,
                                   random_state=0)  # fmt: skip
        params.update(objective=kind, **({"num_class": 3} if kind == "multiclass" else {}))
    else:
        X, y = make_regression(600, FEATURES, random_state=0)
        params["objective"] = "regression"
    X[RNG.random(X.shape) < 0.1] = np.nan
    categorical: list[int] = []
    if kind == "categorical":  # integer categories in column 0, numbers elsewhere
        X[:, 0] = RNG.integers(0, 6, len(X))
        y = y + 50 * (X[:, 0] % 2)
        categorical = [0]
    data = lgb.Dataset(X, y, categorical_feature=categorical or "auto")
    booster = lgb.train(params, data, num_boost_round=40)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(folder / "model.txt")
    return folder


@pytest.fixture(scope="module")
def boosters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("boosters")
    kinds = ("multiclass", "binary", "regression", "categorical")
    return {kind: _booster(kind, root / kind) for kind in kinds}


def loaded(folder: Path, method: str = "predict", **params: object) -> LightGBMServer:
    server = LightGBMServer(str(folder), method=method, **params)  # type: ignore[arg-type]
    server.load()
    return server


def own(booster: lgb.Booster, method: str, X: np.ndarray) -> np.ndarray:
    """What LightGBM itself answers for the server's ``method``."""
    if method == "predict_raw":
        return booster.predict(X, raw_score=True)
    p = booster.predict(X)
    return np.vstack((1.0 - p, p)).transpose() if method == "predict_proba" and p.ndim == 1 else p


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("multiclass", "predict"),
        ("multiclass", "predict_raw"),
        ("binary", "predict"),
        ("binary", "predict_proba"),
        ("binary", "predict_raw"),
        ("regression", "predict"),
        ("categorical", "predict"),
    ],
)
def test_served_boosters_equal_lightgbm_bit_for_bit(boosters, kind, method):
    fast = loaded(boosters[kind], method)
    assert isinstance(fast.method.call, Accelerated)
    assert "FastConfig" in fast.init_metadata()["custom"]["fast path"]
    booster = lgb.Booster(model_file=str(boosters[kind] / "model.txt"))
    rows = _rows(40)
    rows[5] = np.inf
    rows[6] = -np.inf
    rows[7, 0] = 17.0  # a category the model never saw
    if kind == "categorical":
        rows[:, 0] = np.random.default_rng(4).integers(-1, 7, len(rows))
    for X in (rows[:1], rows[:2], rows[7:8], rows[5:6], rows):
        np.testing.assert_array_equal(fast.predict(X, []), own(booster, method, X))
        got, want = fast.method.call(X), own(booster, method, X)
        assert (got.dtype, got.shape) == (want.dtype, want.shape)
        single = X[:1].astype(np.float32)  # float32 rows take LightGBM's float32 reading
        np.testing.assert_array_equal(fast.method.call(single), own(booster, method, single))
        np.testing.assert_array_equal(fast.method.call(X[:3, :]), own(booster, method, X[:3]))
    fortran = np.asfortranarray(rows[:4])
    np.testing.assert_array_equal(fast.method.call(fortran), own(booster, method, fortran))


def answer(call: object, X: np.ndarray) -> tuple[str, str]:
    """``call``'s answer to ``X``: its numbers, or the type and text of what it raised."""
    try:
        return "ok", repr(call(X))  # type: ignore[operator]
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("multiclass", "predict_proba"),
        ("multiclass", "predict"),
        ("binary", "predict_proba"),
        ("binary", "predict"),
        ("binary", "predict_raw"),
        ("regression", "predict"),
    ],
)
def test_pickled_estimators_equal_their_own_methods_bit_for_bit(tmp_path, kind, method):
    """An LGBMClassifier / LGBMRegressor (joblib): its own methods, scikit-learn's checks
    included, for the requests it does not serve itself."""
    X = RNG.standard_normal((500, FEATURES))
    X[RNG.random(X.shape) < 0.1] = np.nan
    if kind == "regression":
        estimator: lgb.LGBMModel = lgb.LGBMRegressor(n_estimators=30, verbose=-1)
        y = np.nan_to_num(X) @ RNG.standard_normal(FEATURES)
    else:
        estimator = lgb.LGBMClassifier(n_estimators=30, verbose=-1)
        classes = (X[:, 0] > 0).astype(int)
        if kind == "multiclass":
            classes += X[:, 1] > 0.5
        y = np.array(["ant", "bee", "cat"])[classes]
    estimator.fit(X, y)
    joblib.dump(estimator, tmp_path / "model.joblib")
    fast = loaded(tmp_path, method)
    assert isinstance(fast.method.call, Accelerated)
    raw = {"raw_score": True} if method == "predict_raw" else {}
    own_method = getattr(estimator, "predict" if raw else method)
    rows = _rows(20)
    rows[3] = np.inf
    for X in (rows[:1], rows[3:4], rows[4:5].astype(np.float32), rows):
        got, want = fast.method.call(X), own_method(X, **raw)
        np.testing.assert_array_equal(got, want)
        assert (got.dtype, got.shape) == (want.dtype, want.shape)
    for bad in (np.ones((1, FEATURES - 1)), np.array([["a"] * FEATURES])):
        assert answer(fast.method.call, bad) == answer(lambda Z: own_method(Z, **raw), bad)


def test_what_lightgbm_refuses_is_refused_as_lightgbm_refuses_it(boosters):
    fast = loaded(boosters["multiclass"])
    off = loaded(boosters["multiclass"], fast_path="false")
    bad = [np.ones((1, FEATURES - 1)), np.ones((2, FEATURES + 3)), np.ones((0, FEATURES))]
    bad += [np.ones(FEATURES), np.ones((1, 1, FEATURES)), np.array([["a"] * FEATURES])]
    for X in bad:
        assert answer(fast.method.call, X) == answer(off.method.call, X)
    assert answer(fast.method.call, bad[0])[0] == "LightGBMError"
    with pytest.raises(BadRequestError):
        fast.predict(np.ones((1, FEATURES - 1)), [])


def test_threads_share_it(boosters):
    """The server's threads call one accelerated method at once (each FastConfig's lock)."""
    server = loaded(boosters["multiclass"])
    booster = lgb.Booster(model_file=str(boosters["multiclass"] / "model.txt"))
    rows = [_rows(1 + i % 5, seed=i) for i in range(200)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(server.method.call, rows))
    for X, got in zip(rows, answers, strict=True):
        np.testing.assert_array_equal(got, booster.predict(X))


def test_verification_refuses_a_candidate_that_differs(boosters, caplog):
    booster = lgb.Booster(model_file=str(boosters["multiclass"] / "model.txt"))

    def raw_scores(X):  # another method than the candidate's
        return booster.predict(X, raw_score=True)

    def one_bit_off(X):  # in some rows
        p = booster.predict(X)
        return np.where(X[:, :1] > 1.0, np.nextafter(p, np.inf), p)

    def refuses_nan(X):
        if np.isnan(X).any():
            raise ValueError("NaN in the input")
        return booster.predict(X)

    def two_threads(X):  # the same numbers: accepted
        return booster.predict(X, num_threads=2)

    for differs, said in [
        (raw_scores, "values differ"),
        (one_bit_off, "values differ"),
        (refuses_nan, "where the framework answers 400"),
    ]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert accelerate(booster, "predict", differs) is None
        assert said in caplog.text
    assert isinstance(accelerate(booster, "predict", two_threads), Accelerated)


def test_no_candidate_where_it_cannot_be_exact(boosters, tmp_path):
    booster = lgb.Booster(model_file=str(boosters["binary"] / "model.txt"))
    for method in ("predict_contrib", "predict_leaf"):
        assert accelerate(booster, method, booster.predict) is None
    X, y = make_classification(200, 4, random_state=0)

    class Shifted(lgb.LGBMRegressor):
        def predict(self, X, **kwargs):
            return super().predict(X, **kwargs) + 1.0

    shifted = Shifted(n_estimators=5, verbose=-1).fit(X, y)
    assert accelerate(shifted, "predict", shifted.predict) is None  # not lightgbm's class
    # A subclass in lightgbm's own package (lightgbm.dask's) reaches the accelerator: refused
    # there because its method is not LightGBM's.
    assert candidate(shifted, "predict", shifted.predict) is None
    early = lgb.LGBMClassifier(n_estimators=5, verbose=-1, pred_early_stop=True).fit(X, y)
    assert accelerate(early, "predict_proba", early.predict_proba) is None
    frame = pd.DataFrame({"kind": pd.Categorical(RNG.choice(["a", "b"], 200)), "x": X[:, 0]})
    categorical = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(frame, y).booster_
    assert categorical.pandas_categorical
    assert accelerate(categorical, "predict", categorical.predict) is None


def test_fast_path_off_serves_lightgbm_s_call(boosters):
    off = loaded(boosters["multiclass"], fast_path="false")
    assert not isinstance(off.method.call, Accelerated)
    assert off.init_metadata()["custom"]["fast path"] == "off (fast_path=false)"
    booster = lgb.Booster(model_file=str(boosters["multiclass"] / "model.txt"))
    np.testing.assert_array_equal(off.predict(_rows(1), []), booster.predict(_rows(1)))


@pytest.mark.parametrize("fast_path", ["true", "false"])
def test_modelshelf_serve_answers_lightgbm_s_numbers(boosters, fast_path):
    folder = boosters["multiclass"]
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    launch = Launch(
        "LightGBMServer", SERVERS / "lightgbmserver", seldon_parameters(model_uri=folder)
    )
    with running(launch, [MODELSHELF], env={"MODELSHELF_FAST_PATH": fast_path}) as (service,):
        metadata = service.get("/api/v1.0/metadata").json()
        said = metadata["custom"]["fast path"]
        assert ("FastConfig" in said) if fast_path == "true" else said.startswith("off")
        for X in (_rows(1), _rows(3, seed=5), _rows(20, seed=6)):
            X = np.nan_to_num(X, nan=0.25)  # JSON carries no NaN
            answer = service.post("/api/v1.0/predictions", {"data": {"ndarray": X.tolist()}})
            assert answer.status_code == 200, answer.text
            np.testing.assert_array_equal(answer.json()["data"]["ndarray"], booster.predict(X))
        short = service.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}})
        assert short.status_code == 400, short.text
