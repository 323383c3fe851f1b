"""LightGBM boosters and estimators: one-row requests through LightGBM's own single-row
predictor (``FastConfig``).

Why: ``Booster.predict`` asks ``LGBM_BoosterPredictForMat``, which on every call parses its
parameter string, builds a ``Predictor`` (with its per-thread buffers) and sets the OpenMP
thread count, then walks the trees: ~75 us before the first tree, on the realistic model about
as much as the walk of one row; an ``LGBMClassifier``'s methods add scikit-learn's validation and
LightGBM's parameter handling, ~500 us. ``LGBM_BoosterPredictForMatSingleRowFastInit`` does
the parsing and the building once, at load; ``LGBM_BoosterPredictForMatSingleRowFast`` then only
walks the trees. On ``modelshelf serve`` (300 rounds x 31 leaves, 3 classes, one row): the
booster file 1.45-1.59x req/s and 1.30-1.44x less server CPU per request (realistic bench), the
same model pickled as an ``LGBMClassifier`` 2.7x both (README "Fast path"). Its verification
costs the start ~30 ms of CPU (~90 probe rows, ~0.2 ms each on that model).

Exactness: the same C++ walk and output transform as the framework's call (the single-row
predictor wraps the same ``Predictor``); ``verify`` checks it bit for bit at load, on rows at the
trees' thresholds and small integers (categories) too. Only 2-D arrays of one row of the
model's width take it: anything else (batches, data frames, other widths, no rows) is the
framework's own call, so every refusal is the framework's. Not batches row by row: that saves
the same ~75 us per request in process (4 rows 395 against 472 us CPU, 16 rows 1458 against
1481), but ctypes releases the GIL on every row, and served at 16 connections, where batching
joins requests, each row then waited for the front end's thread: 3,100 against 5,300 req/s.
Shared state: the iterations a booster predicts with are the booster's own (LightGBM's
``GBDT::InitPredict``), set by every framework call on it, which the single-row predictor then
follows. The server calls the booster with one setting only (its method's: all iterations, or
the best one), so both answer alike; a caller that mixed settings on one booster would see the
fast path follow its last framework call.
Thread safety: the C++ single-row predictor is the booster's, behind the booster's own mutex
(``PredictSingleRow`` takes it), so the server's threads may share the configs; the configs
are made once, with the same settings, and never changed (another config for the same booster
and prediction type with other settings would replace the predictor they share).

Relies on private parts (listed in ``__init__``): ``lightgbm.basic._LIB`` (the loaded
library) and ``Booster._handle``; where a release lacks them, ``candidate`` offers nothing. An
estimator's requests skip scikit-learn's checks only where they pass (one row of the fitted
width, float64 or float32): every other input is the estimator's own call.
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
#: Iterations whose thresholds make probe rows (the model's text for all of them costs ~0.1 s
#: for 300 x 3 trees, at every start).
PROBED_ITERATIONS = 20


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
    configs = {dtype: _fast_config(booster, init, PREDICT_TYPES[method], code, n_features,
                                   iterations) for dtype, code in DTYPES.items()}  # fmt: skip
    width = booster.num_model_per_iteration()
    estimator = isinstance(model, lgb.LGBMModel)
    # P(class 1) as [1 - p, p]: the server's predict_proba of a binary booster, and an
    # LGBMClassifier's predict_proba (and so its predict).
    two_columns = width == 1 and (
        method == "predict_proba" or (method == "predict" and isinstance(model, lgb.LGBMClassifier))
    )
    labels = (
        model.classes_ if method == "predict" and isinstance(model, lgb.LGBMClassifier) else None
    )

    def call(X: Any) -> Any:
        if type(X) is not np.ndarray or X.shape != (1, n_features):
            return reference(X)
        config = configs.get(X.dtype)
        if config is None:
            if estimator:  # scikit-learn's validation first: its refusals are its own
                return reference(X)
            X, config = (
                np.asarray(X, dtype=np.float32),
                configs[np.dtype(np.float32)],
            )  # as LightGBM
        X = np.ascontiguousarray(X)
        out = np.empty(width, dtype=np.float64)
        length = ctypes.c_int64(0)
        if predict_row(config, X.ctypes.data, ctypes.addressof(length), out.ctypes.data):
            raise basic.LightGBMError(library.LGBM_GetLastError().decode("utf-8"))
        if length.value != width:
            raise basic.LightGBMError(f"{length.value} outputs for one row, not {width}")
        if width == 1 and not two_columns:
            return out
        found = np.vstack((1.0 - out, out)).transpose() if two_columns else out.reshape(1, width)
        return found if labels is None else labels[np.argmax(found, axis=1)]

    for config in configs.values():  # freed with the call (the booster outlives it)
        weakref.finalize(call, library.LGBM_FastConfigFree, config)
    return Candidate(NAME, call, _probes(n_features) + _threshold_rows(booster, n_features))


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
    """``adversarial_rows`` with fewer rows (~50, not ~270: on the realistic model a probe row
    costs the start ~0.2 ms): its single rows (one extreme value each), the first row of each
    batch (scales, float32, int64), each row of extremes alone; and two batches, which the call
    hands to the framework (a check of that hand-over)."""
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


def _threshold_rows(model: Any, n_features: int) -> list[np.ndarray]:
    """Single rows at the first trees' numerical thresholds and one float64 step either side,
    some missing (the model's text: ``split_feature``, ``threshold``, ``decision_type``)."""
    found: dict[int, list[float]] = {}
    tree: dict[str, list[str]] = {}
    text = model.model_to_string(num_iteration=PROBED_ITERATIONS)
    for line in [*text.splitlines(), "Tree=end"]:
        key, _, values = line.partition("=")
        if key in ("split_feature", "threshold", "decision_type"):
            tree[key] = values.split()
        elif key.startswith("Tree") and tree:
            for feature, threshold, decision in zip(*tree.values(), strict=True):
                if not int(decision) & 1:  # numerical (bit 0 marks a categorical split)
                    found.setdefault(int(feature), []).append(float(threshold))
            tree = {}
    rng = np.random.default_rng(20240601)
    rows = np.zeros((4, n_features))
    for column in range(n_features):
        rows[:, column] = rng.choice(found.get(column, [0.0]), len(rows))
    below, above = np.nextafter(rows, -np.inf), np.nextafter(rows, np.inf)
    missing = rows.copy()
    missing[rng.random(rows.shape) < 0.2] = np.nan
    categories = rng.integers(-1, 8, size=rows.shape).astype(np.float64)
    categories[rng.random(rows.shape) < 0.1] = np.nan
    found_rows = np.concatenate([rows, below, above, missing, categories])
    return [row[None, :].copy() for row in found_rows]
