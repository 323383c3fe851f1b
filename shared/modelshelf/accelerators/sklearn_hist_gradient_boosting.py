"""scikit-learn's ``HistGradientBoosting…``: every tree walked at once in numpy, depth by depth,
instead of one compiled call (and one OpenMP region) per tree.

Why: ``_raw_predict`` calls each tree's predictor in turn -- 300 calls for 100 iterations of a
3-class model -- and each call opens an OpenMP parallel region; for a few rows those calls cost
far more than the comparisons (a busy machine makes the OpenMP regions worse). On
``modelshelf serve`` (realistic bench, 100 iterations x 3 classes): 4.1x req/s and 4.0x less
server CPU per request for one row, 2x at 16 connections.

Exactness: the same comparisons (``x <= threshold``; NaN where the tree learned to send it) pick
the same leaves, and the leaves are added to the baseline in scikit-learn's order with
``np.cumsum`` (a sequential sum, as scikit-learn's ``+=`` per tree); the raw scores then go
through the model's own loss, as scikit-learn's methods do. ``verify`` checks it bit for bit at
load. Not for models with categorical features, and only where the class keeps scikit-learn's
own methods. Relies on private parts (listed in ``__init__``): ``_predictors`` and their
``nodes``, ``_baseline_prediction``, ``_loss``, ``_preprocess_X``; where a release changes them,
``candidate`` offers nothing or ``verify`` refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from modelshelf.accelerators.verify import Candidate, adversarial_rows

NAME = "all trees walked at once in numpy (requests up to 16 rows)"
#: Rows up to which the walk is used; larger requests take scikit-learn's call, whose per-tree
#: cost is spread over the rows (in process, 100 iterations x 3 classes: 1 row 0.2 against
#: 1.9 ms, 10 rows 0.7 against 2.0, 32 rows 1.9 against 2.1, 100 rows 5.5 against 2.8).
WALK_MAX_ROWS = 16


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The numpy walk for a ``HistGradientBoosting…``'s ``predict_proba`` / ``predict``."""
    bases = {cls.__name__ for cls in type(model).__mro__}
    if "BaseHistGradientBoosting" not in bases:
        return None
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = type(model)
    if isinstance(model, HistGradientBoostingClassifier):
        own: dict[str, Any] = {
            "predict_proba": HistGradientBoostingClassifier.predict_proba,
            "predict": HistGradientBoostingClassifier.predict,
        }
    elif isinstance(model, HistGradientBoostingRegressor):
        own = {"predict": HistGradientBoostingRegressor.predict}
    else:
        return None
    if method not in own or getattr(kind, method) is not own[method]:
        return None
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        return None
    raw_predict = _raw_predict(model)
    if method == "predict_proba":
        walked: Callable[[Any], Any] = lambda X: model._loss.predict_proba(raw_predict(X))  # noqa: E731
    elif isinstance(model, HistGradientBoostingClassifier):
        classes = model.classes_

        def walked(X: Any) -> Any:
            raw = raw_predict(X)
            one_score = raw.shape[1] == 1  # scikit-learn: "> 0", as argmax of two equal
            encoded = (raw.ravel() > 0).astype(int) if one_score else np.argmax(raw, axis=1)
            return classes[encoded]
    else:
        inverse = model._loss.link.inverse
        walked = lambda X: inverse(raw_predict(X).ravel())  # noqa: E731

    def call(X: Any) -> Any:
        return walked(X) if len(X) <= WALK_MAX_ROWS else reference(X)

    probes: list[Any] = adversarial_rows(int(model.n_features_in_)) + _threshold_rows(model)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        import pandas as pd

        probes = [pd.DataFrame(p, columns=list(names)) for p in probes]
    return Candidate(NAME, call, probes)


def _threshold_rows(model: Any) -> list[np.ndarray]:
    """Rows at the trees' thresholds, one float64 step below and above them, some missing."""
    rng = np.random.default_rng(20240601)
    nodes = np.concatenate([p.nodes for iteration in model._predictors for p in iteration])
    splits = nodes[~nodes["is_leaf"].astype(bool)]
    n_features = int(model.n_features_in_)
    columns = []
    for feature in range(n_features):
        seen = splits["num_threshold"][splits["feature_idx"] == feature]
        columns.append(rng.choice(seen if len(seen) else np.zeros(1), WALK_MAX_ROWS))
    at = np.column_stack(columns).astype(np.float64)
    below, above = np.nextafter(at, -np.inf), np.nextafter(at, np.inf)
    missing = at.copy()
    missing[rng.random(at.shape) < 0.2] = np.nan
    return [at, below, above, missing]


def _raw_predict(model: Any) -> Callable[[Any], np.ndarray]:
    """``model._raw_predict`` for rows of numbers: the trees' node tables joined into one."""
    predictors = model._predictors
    per_iteration = int(model.n_trees_per_iteration_)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    tables = [p.nodes for iteration in predictors for p in iteration]
    offsets = np.cumsum([0] + [len(t) for t in tables[:-1]])
    nodes = np.concatenate(tables)
    if nodes["is_categorical"].any():
        raise ValueError("categorical splits")
    shift = np.repeat(offsets, [len(t) for t in tables])
    left = np.where(nodes["is_leaf"], np.arange(len(nodes)), nodes["left"] + shift)
    right = np.where(nodes["is_leaf"], np.arange(len(nodes)), nodes["right"] + shift)
    feature = nodes["feature_idx"].astype(np.intp)
    threshold = nodes["num_threshold"].astype(np.float64)
    missing_left = nodes["missing_go_to_left"].astype(bool)
    value = nodes["value"].astype(np.float64)
    is_leaf = nodes["is_leaf"].astype(bool)
    depth = int(nodes["depth"].max())
    roots = offsets.astype(np.intp)
    # Column order of the trees of class k: iteration by iteration, as scikit-learn adds them.
    columns = [np.arange(k, len(tables), per_iteration) for k in range(per_iteration)]
    preprocess = model._preprocess_X

    def raw_predict(X: Any) -> np.ndarray:
        X = preprocess(X, reset=False)
        rows = np.arange(X.shape[0])[:, None]
        node = np.broadcast_to(roots, (X.shape[0], len(roots)))
        for _ in range(depth):
            if is_leaf[node].all():
                break
            x = X[rows, feature[node]]
            go_left = np.where(np.isnan(x), missing_left[node], x <= threshold[node])
            node = np.where(go_left, left[node], right[node])
        leaves = value[node]
        out = np.empty((X.shape[0], per_iteration), dtype=np.float64, order="F")
        for k, picked in enumerate(columns):
            terms = np.empty((X.shape[0], len(picked) + 1))
            terms[:, 0] = baseline[k]
            terms[:, 1:] = leaves[:, picked]
            out[:, k] = np.cumsum(terms, axis=1)[:, -1]
        return out

    return raw_predict
