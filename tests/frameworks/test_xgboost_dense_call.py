"""XGBoost's C prediction function called directly (``frameworks.xgboost._dense_call``): what
it answers, when it serves, and when ``Booster.inplace_predict`` serves instead."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

import xgboost_models as xm
from models import IRIS_X
from modelshelf.frameworks.xgboost import XGBoostServer, _dense_call
from modelshelf.frameworks.xgboost._dense_call import DenseCall, dense_call
from modelshelf.frameworks.xgboost._methods import DIRECT_CALL


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xgboost-dense")
    return {
        "softprob": xm.save_booster(xm.iris_softprob(), root / "softprob", "model.json"),
        "softmax": xm.save_booster(xm.iris_softmax(), root / "softmax", "model.json"),
        "binary": xm.save_booster(xm.binary_logistic(), root / "binary", "model.json"),
        "regressor": xm.save_booster(xm.diabetes_regressor(), root / "regressor", "model.ubj"),
        "classifier": xm.save_pickle(xm.iris_classifier(), root / "classifier", "model.joblib"),
    }


def loaded(folder: Path, method: str = "predict", **params: object) -> XGBoostServer:
    server = XGBoostServer(str(folder), method=method, **params)  # type: ignore[arg-type]
    server.load()
    return server


def adversarial_rows(n_features: int, rows: int, seed: int = 0) -> np.ndarray:
    """Rows around the trees' thresholds and beyond: NaN, +-inf, extremes, subnormals."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=2.0, size=(rows, n_features)) + 3.0
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38, -3.4e38, 1e-310])
    chosen = rng.random(X.shape) < 0.25
    X[chosen] = rng.choice(special, size=int(chosen.sum()))
    return X


@pytest.mark.parametrize("kind", ["softprob", "softmax", "binary", "regressor"])
@pytest.mark.parametrize("predict_type", ["value", "margin"])
def test_it_answers_the_bits_inplace_predict_answers(folders, kind, predict_type):
    booster = xgb.Booster(model_file=str(next(folders[kind].iterdir())))
    call = DenseCall(booster, predict_type, np.nan)
    for rows in (1, 3, 64, 65, 300):
        for dtype in (np.float64, np.float32):
            X = adversarial_rows(booster.num_features(), rows, seed=rows).astype(dtype)
            found = call(X)
            wanted = booster.inplace_predict(X, predict_type=predict_type, validate_features=False)
            assert found.dtype == wanted.dtype and found.shape == wanted.shape
            np.testing.assert_array_equal(found, wanted)


def predictors(server: XGBoostServer) -> list[object]:
    """The served call and what it wraps (predict_proba and labels wrap the predictor)."""
    call = server.method.call
    return [call] + [cell.cell_contents for cell in getattr(call, "__closure__", None) or ()]


@pytest.mark.parametrize(
    ("kind", "method"),
    [("softprob", "predict"), ("softmax", "predict_proba"), ("binary", "predict_proba"),
     ("regressor", "predict_margin"), ("classifier", "predict")],
)  # fmt: skip
def test_the_server_serves_through_it_unless_fast_path_is_off(folders, kind, method):
    fast = loaded(folders[kind], method)
    framework = loaded(folders[kind], method, fast_path="false")
    X = adversarial_rows(fast.n_features, 40)
    np.testing.assert_array_equal(fast.method.call(X), framework.method.call(X))
    used = [p for p in predictors(fast) if isinstance(getattr(p, "direct", None), DenseCall)]
    assert len(used) == 1
    off = predictors(framework)
    assert all(getattr(p, "direct", None) is None for p in off)
    assert fast.init_metadata()["custom"]["fast path"] == DIRECT_CALL
    assert framework.init_metadata()["custom"]["fast path"] == "off (fast_path=false)"


def test_rows_it_does_not_take_are_inplace_predicts(folders):
    server = loaded(folders["softprob"])
    booster = xgb.Booster(model_file=str(next(folders["softprob"].iterdir())))
    X = adversarial_rows(4, 20)
    with np.errstate(over="ignore"):  # float16 overflows to inf
        half = X.astype(np.float16)
    unaligned = np.frombuffer(b"\0" + X.tobytes(), dtype=np.float64, offset=1).reshape(X.shape)
    big_endian = X.astype(">f8")
    for rows in (np.asfortranarray(X), X[::2], half, X[:0], unaligned, big_endian):
        assert not _dense_call.accepts(rows)
        found = server.method.call(rows)
        # Other floats become native float64 first (XGBoost 3.2 misreads big-endian arrays).
        native = rows if rows.dtype == np.float64 else rows.astype(np.float64)
        wanted = booster.inplace_predict(native, validate_features=False)
        assert found.shape == wanted.shape
        np.testing.assert_array_equal(found, wanted)


def test_a_wrong_number_of_columns_raises_xgboosts_own_error(folders):
    booster = xgb.Booster(model_file=str(next(folders["softprob"].iterdir())))
    X = np.ones((2, 3))
    with pytest.raises(xgb.core.XGBoostError) as framework:
        booster.inplace_predict(X, validate_features=False)
    with pytest.raises(xgb.core.XGBoostError) as direct:
        DenseCall(booster, "value", np.nan)(X)
    assert str(direct.value).split("Stack trace")[0] == str(framework.value).split("Stack trace")[0]


def test_threads_calling_at_once_each_get_their_own_answers(folders):
    """One proxy DMatrix per thread: a shared one would be rebound to another thread's rows."""
    booster = xgb.Booster(model_file=str(next(folders["softprob"].iterdir())))
    call = DenseCall(booster, "value", np.nan)
    inputs = [adversarial_rows(4, rows, seed=rows) for rows in (1, 7, 65, 200)]
    wanted = [booster.inplace_predict(X, validate_features=False) for X in inputs]
    failures: list[str] = []
    start = threading.Barrier(len(inputs))

    def run(index: int) -> None:
        start.wait()
        for _ in range(300):
            if not np.array_equal(call(inputs[index]), wanted[index]):
                failures.append(f"thread {index}")
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_call_that_answers_otherwise_is_refused_and_inplace_predict_serves(
    folders, monkeypatch, caplog
):
    wrong = DenseCall.__call__

    def off_by_one_ulp(self: DenseCall, X: np.ndarray) -> np.ndarray:
        return np.nextafter(wrong(self, X), np.float32(np.inf))

    monkeypatch.setattr(DenseCall, "__call__", off_by_one_ulp)
    booster = xgb.Booster(model_file=str(next(folders["softprob"].iterdir())))
    with caplog.at_level(logging.WARNING, logger=_dense_call.__name__):
        assert dense_call(booster, "value", np.nan, 4) is None
    assert "inplace_predict serves" in caplog.text
    server = loaded(folders["softprob"])
    assert server.method.call.direct is None
    np.testing.assert_array_equal(
        server.method.call(IRIS_X[:5]), booster.inplace_predict(IRIS_X[:5])
    )


def test_a_library_without_the_c_function_keeps_inplace_predict(folders, monkeypatch, caplog):
    class LibraryWithoutIt:  # an XGBoost build whose C API lacks XGBoosterPredictFromDense
        XGBGetLastError = xgb.core._LIB.XGBGetLastError

    booster = xgb.Booster(model_file=str(next(folders["softprob"].iterdir())))
    monkeypatch.setattr(xgb.core, "_LIB", LibraryWithoutIt())
    with caplog.at_level(logging.WARNING, logger=_dense_call.__name__):
        assert dense_call(booster, "value", np.nan, 4) is None
    assert "XGBoosterPredictFromDense" in caplog.text


@pytest.mark.parametrize("missing", [0.0, -999.0, np.inf])
def test_a_missing_value_other_than_nan_is_sent_as_inplace_predict_sends_it(folders, missing):
    booster = xgb.Booster(model_file=str(next(folders["softprob"].iterdir())))
    X = adversarial_rows(4, 30)
    X[::3, 1] = missing
    found = DenseCall(booster, "value", missing)(X)
    wanted = booster.inplace_predict(X, missing=missing, validate_features=False)
    np.testing.assert_array_equal(found, wanted)
    assert not np.array_equal(found, booster.inplace_predict(X, validate_features=False))
