"""LightGBM boosters and estimators: one-row requests through LightGBM's own single-row
predictor (``FastConfig``).

Why, what it serves, what it is worth and what was measured and removed (batches row by row):
README "Fast path". Exactness: LightGBM's own walk and output transform, checked bit for bit
at load by ``verify``; only arrays of one row of the model's width take it, everything else
(and every refusal) is the framework's own call.
Shared state: the iterations a booster predicts with are set by every framework call on it
(``GBDT::InitPredict``) and the single-row predictor follows them; the server calls a booster
with one setting only (its method's), so both answer alike. Threads: a ``FastConfig``'s call
holds a lock (its own from LightGBM 4.4, with the booster's shared; the booster's before), so
the server's threads may share the configs (made once, never changed).

Relies on private parts (listed in ``__init__``): ``lightgbm.basic._LIB`` (the loaded
library) and ``Booster._handle``; where a release lacks them, ``candidate`` offers nothing.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from modelshelf.accelerators.verify import Candidate, adversarial_rows

NAME = "LightGBM's single-row FastConfig (one-row requests)"
#: LightGBM's ``C_API_PREDICT_*`` by the server's method, and its ``C_API_DTYPE_*``.
PREDICT_TYPES = {"predict": 0, "predict_proba": 0, "predict_raw": 1}
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}
#: LightGBM's ``kZeroThreshold``: both ways of reading rows keep only values beyond it (or NaN).
ZERO_THRESHOLD = 1e-35


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The single-row call for a ``lightgbm.Booster``'s ``predict`` / ``predict_proba`` /
    ``predict_raw``, or a plain ``LGBMClassifier`` / ``LGBMRegressor``'s (see ``_booster_of``)."""
    import lightgbm as lgb
    from lightgbm import basic

    booster = _booster_of(model, method)
    library = getattr(basic, "_LIB", None)
    if booster is None or library is None or getattr(booster, "_handle", None) is None:
        return None
    if booster.pandas_categorical:
        return None
    init = library.LGBM_BoosterPredictForMatSingleRowFastInit
    # Its own prototype (pointers as pointers), leaving lightgbm's function object as it is.
    pointers = ctypes.CFUNCTYPE(ctypes.c_int, *[ctypes.c_void_p] * 4)
    predict_row = pointers(("LGBM_BoosterPredictForMatSingleRowFast", library))
    n_features = booster.num_feature()
    # As Booster.predict(num_iteration=None): the best iteration when there is one, else all.
    iterations = booster.best_iteration
    configs: dict[np.dtype, ctypes.c_void_p] = {}  # filled below, once ``call`` can own them
    width = booster.num_model_per_iteration()
    estimator, classifier = isinstance(model, lgb.LGBMModel), isinstance(model, lgb.LGBMClassifier)
    labels = model.classes_ if classifier and method == "predict" else None
    # P(class 1) as [1 - p, p]: a binary booster's predict_proba (the server's), an
    # LGBMClassifier's predict_proba, and so its predict.
    two_columns = width == 1 and (method == "predict_proba" or labels is not None)

    def call(X: Any) -> Any:
        if type(X) is not np.ndarray or X.shape != (1, n_features):
            return reference(X)
        config = configs.get(X.dtype)
        if config is None:
            if estimator:  # scikit-learn's validation first: its refusals are its own
                return reference(X)
            X = np.asarray(X, dtype=np.float32)  # other numbers: float32, as LightGBM's
            config = configs[X.dtype]
        X = np.ascontiguousarray(X)
        out = np.empty(width, dtype=np.float64)
        length = ctypes.c_int64(0)
        basic._safe_call(
            predict_row(config, X.ctypes.data, ctypes.addressof(length), out.ctypes.data)
        )
        if length.value != width:
            raise basic.LightGBMError(f"{length.value} outputs for one row, not {width}")
        if width == 1 and not two_columns:
            return out
        found = np.vstack((1.0 - out, out)).transpose() if two_columns else out.reshape(1, width)
        return found if labels is None else labels[np.argmax(found, axis=1)]

    for dtype, code in DTYPES.items():  # each freed with the call (the booster outlives it),
        # registered as it is made: if a later one fails, the earlier ones go with ``call``.
        configs[dtype] = _fast_config(booster, init, PREDICT_TYPES[method], code, n_features,
                                      iterations)  # fmt: skip
        weakref.finalize(call, library.LGBM_FastConfigFree, configs[dtype])
    return Candidate(NAME, call, _probes(n_features))


def _booster_of(model: Any, method: str) -> Any:
    """The booster whose single-row predictor answers ``method`` for ``model``, or ``None``: a
    ``lightgbm.Booster`` itself; an ``LGBMClassifier`` / ``LGBMRegressor`` whose class keeps
    LightGBM's own method, with a built-in objective and no prediction parameter of its own
    (``pred_early_stop…``, ``predict_…``, ``num_iteration…``: they would reach the C++ side)."""
    import lightgbm as lgb

    if method not in PREDICT_TYPES:
        return None
    if type(model) is lgb.Booster:
        return model
    own = {lgb.LGBMClassifier: ("predict", "predict_proba"), lgb.LGBMRegressor: ("predict",)}
    kind = next((base for base in own if isinstance(model, base)), None)
    if kind is None or not model.__sklearn_is_fitted__() or callable(model.objective):
        return None
    name = "predict" if method == "predict_raw" else method
    if name not in own[kind] or getattr(type(model), name) is not getattr(kind, name):
        return None
    if any(word in key for key in model.get_params() for word in ("pred", "iteration")):
        return None
    return model.booster_


def _probes(n_features: int) -> list[np.ndarray]:
    """Single rows (~70, not ~270: on the realistic model a probe row costs the start ~0.2 ms):
    ``adversarial_rows``' own, the first row of each batch (scales, float32, int64) and each row
    of extremes; rows about LightGBM's zero threshold and of small integers (categories), some
    missing; and two batches, which the call hands to the framework (a check of that hand-over).
    The trees are walked by LightGBM's own code either way: what can differ is reading rows."""
    rows, batches = [], []
    for batch in adversarial_rows(n_features):
        if len(batch) == 1:
            rows.append(batch)
            continue
        batches.append(batch)
        with np.errstate(all="ignore"):
            magnitude = np.abs(batch.astype(np.float64))
        extreme = (~np.isfinite(magnitude) | (magnitude > 1e31) | (magnitude < 1e-30)).all(axis=1)
        extreme[0] = True
        rows += [batch[i : i + 1] for i in np.flatnonzero(extreme)]
    rng = np.random.default_rng(20240601)
    near_zero = [ZERO_THRESHOLD, np.nextafter(ZERO_THRESHOLD, 1), np.nextafter(ZERO_THRESHOLD, 0)]
    special = rng.choice([*near_zero, *(-v for v in near_zero)], (4, n_features))
    special = np.concatenate([special, rng.integers(-1, 8, (4, n_features)).astype(np.float64)])
    special[rng.random(special.shape) < 0.1] = np.nan
    rows += [special[i : i + 1] for i in range(len(special))]
    return [*rows, batches[0][:4], batches[-1][:4]]


def _fast_config(
    booster: Any, init: Any, predict_type: int, dtype: int, n_features: int, iterations: int
) -> ctypes.c_void_p:
    """A ``FastConfig`` on ``booster``, on one OpenMP thread as the server's one-row calls."""
    from lightgbm import basic

    config = ctypes.c_void_p()
    basic._safe_call(
        init(booster._handle, ctypes.c_int(predict_type), ctypes.c_int(0), ctypes.c_int(iterations),
             ctypes.c_int(dtype), ctypes.c_int32(n_features), basic._c_str("num_threads=1"),
             ctypes.byref(config))
    )  # fmt: skip
    return config
