"""XGBoost values and margins of dense rows through the C entry point ``XGBoosterPredictFromDense``
with its JSON configuration written once.

Why: ``Booster.inplace_predict`` calls the same entry point, but on every call it first rebuilds
that configuration, tests the input against each data type it accepts (pandas, Arrow, cuDF,
SciPy…) and wraps the output: for the one-row requests a server mostly gets, about as long as
300 trees of depth 6 take. Worth 1.7x req/s on ``modelshelf serve`` for the realistic bench's
booster (300 rounds x depth 6, 30 features, one row; README "Fast path").

Exactness: the same predictor on the same trees, so bit-identical; ``verify`` checks it on probe
rows at load. What it relies on: ``xgboost.core._LIB`` (the loaded library) and
``_check_call`` are private. Where they are missing or lack the entry point,
``candidate`` offers nothing and the framework's own call serves.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import xgboost as xgb

from modelshelf.accelerators.verify import Candidate, adversarial_rows

NAME = "XGBoost's C entry point XGBoosterPredictFromDense"
#: The C API's ``type`` of in-place prediction.
PREDICTION_TYPES = {"value": 0, "margin": 1}

Predict = Callable[[np.ndarray], np.ndarray]


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The native call for an XGBoost ``Booster`` / ``XGBModel``'s ``predict``,
    ``predict_proba`` or ``predict_margin`` (as ``XGBoostServer`` serves them), or ``None``."""
    entry_point = native_entry_point()
    if entry_point is None or method not in ("predict", "predict_proba", "predict_margin"):
        return None
    if isinstance(model, xgb.XGBModel):
        booster, missing = model.get_booster(), float(model.missing)
    elif isinstance(model, xgb.Booster):
        booster, missing = model, math.nan
    else:
        return None
    learner = json.loads(booster.save_config())["learner"]
    objective = learner["objective"]["name"]
    end = _iteration_end(booster, learner)

    def native(predict_type: str) -> Predict:
        return dense_predictor(booster, predict_type, missing, end, entry_point)

    call: Predict
    if method == "predict_margin":
        call = native("margin")
    elif method == "predict" and isinstance(model, xgb.XGBClassifier):
        call = _labels(native("value"), objective, np.asarray(model.classes_))
    elif method == "predict":
        call = native("value")
    elif objective == "binary:logistic":
        call = _two_columns(native("value"))
    elif objective == "multi:softmax":
        call = _softmax(native("margin"))
    else:
        call = native("value")
    probes = adversarial_rows(booster.num_features())
    return Candidate(NAME, call, probes)


def dense_predictor(
    booster: xgb.Booster,
    predict_type: str,
    missing: float,
    iteration_end: int,
    entry_point: tuple[Any, Callable[[int], None]],
) -> Predict:
    """``predict_type`` (``value`` or ``margin``) of a 2-D array through the entry point."""
    predict_from_dense, check_call = entry_point
    config = json.dumps(  # NaN is written as NaN, which XGBoost reads
        {
            "type": PREDICTION_TYPES[predict_type],
            "training": False,
            "iteration_begin": 0,
            "iteration_end": iteration_end,
            "missing": missing,
            "strict_shape": False,
            "cache_id": 0,
        }
    ).encode()
    handle = booster.handle

    def predict(X: np.ndarray) -> np.ndarray:
        if X.dtype != np.float32 and X.dtype != np.float64:
            # Integers straight to float32, as XGBoost converts them: one rounding, not two.
            X = X.astype(np.float32 if X.dtype.kind in "biu" else np.float64)
        if not X.flags.c_contiguous:
            X = np.ascontiguousarray(X)
        interface = (
            f'{{"data": [{X.ctypes.data}, true], "shape": [{X.shape[0]}, {X.shape[1]}], '
            f'"strides": null, "typestr": "{X.dtype.str}", "version": 3}}'
        ).encode()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        preds = ctypes.POINTER(ctypes.c_float)()
        check_call(
            predict_from_dense(
                handle,
                interface,
                config,
                None,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        out = np.empty(tuple(shape[i] for i in range(dims.value)), dtype=np.float32)
        ctypes.memmove(out.ctypes.data, preds, out.nbytes)  # XGBoost reuses its buffer
        return out

    return predict


def native_entry_point() -> tuple[Any, Callable[[int], None]] | None:
    """``XGBoosterPredictFromDense`` and XGBoost's error check, or ``None`` where this XGBoost
    does not expose them (private: ``xgboost.core._LIB``, ``_check_call``)."""
    try:
        from xgboost.core import _LIB, _check_call

        return _LIB.XGBoosterPredictFromDense, _check_call
    except (ImportError, AttributeError):
        return None


def _iteration_end(booster: xgb.Booster, learner: dict[str, Any]) -> int:
    """The rounds XGBoost's scikit-learn API predicts with: up to ``best_iteration`` when early
    stopping recorded one, else all (0); ``gblinear`` has no rounds to choose."""
    best = booster.attr("best_iteration")
    if best is None or learner.get("gradient_booster", {}).get("name") == "gblinear":
        return 0
    return min(int(best) + 1, booster.num_boosted_rounds())


def _two_columns(value: Predict) -> Predict:
    def predict_proba(X: np.ndarray) -> np.ndarray:
        p = value(X)
        return np.column_stack((1.0 - p, p))

    return predict_proba


def _softmax(margin: Predict) -> Predict:
    from scipy.special import softmax

    return lambda X: softmax(margin(X), axis=1)


def _labels(value: Predict, objective: str, labels: np.ndarray) -> Predict:
    def predict(X: np.ndarray) -> np.ndarray:
        out = value(X)
        if objective == "multi:softmax":
            index = out.astype(np.int64)
        elif out.ndim > 1:
            index = np.argmax(out, axis=1)
        else:
            index = (out > 0.5).astype(np.int64)
        return labels[index]

    return predict
