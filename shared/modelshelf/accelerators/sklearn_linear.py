"""scikit-learn's linear models: ``X @ coef_.T + intercept_`` (and LogisticRegression's
probabilities) without the input checks, for the one input form the server passes.

Why: for iris LogisticRegression, ``predict_proba`` costs ~206 µs of a request's ~290 µs of
CPU at 1,000 rows, of which ~68 µs are input checks (array-API namespace and DataFrame
detection, feature names, finiteness) and ~57 µs the softmax's axis-1 reductions over 3-column
rows (numpy's slowest reduction shape); the product itself is a few µs.

Exactness: only a C-contiguous 2-D float64 / float32 ndarray of the fitted width, at least one
row, all finite (its sum finite: what scikit-learn's own finiteness check tests first) is served;
every other input -- and so every refusal -- goes to scikit-learn's own call. What is served
repeats scikit-learn 1.9.1's operations on the same arrays: ``decision_function``'s product with
``coef_.T`` plus ``intercept_`` (a binary model's column made flat); binary ``predict_proba``
``expit`` in place then ``[1 - p, p]``; multiclass ``softmax``: the row maximum subtracted,
``exp`` in place, divided by the row sum. The maximum is taken column by column (exact in any
order, first NaN kept as ``max`` keeps it) and, below 8 classes, so is the sum: numpy sums fewer
than 8 values in order, left to right (8 and more are summed pairwise: then ``softmax`` itself
is called). ``verify`` checks it at load. Only for the classes' own scikit-learn methods (a
subclass overriding one keeps its call), dense ``coef_``, no ``feature_names_in_`` (the server
passes those models DataFrames, scikit-learn's call). Identifies ``LinearModel``'s private
``_decision_function`` (the regressors' ``predict`` call it) by identity only; without it, or
with another one, ``candidate`` offers nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit

from modelshelf.accelerators.verify import Candidate, adversarial_rows

NAME = "the linear model's product, without scikit-learn's input checks"
#: numpy sums a row of fewer values than this from left to right (pairwise from this on).
SEQUENTIAL_SUM = 8


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The product for a linear model's own ``predict`` / ``decision_function`` /
    LogisticRegression's ``predict_proba``, or ``None``."""
    if not {c.__name__ for c in type(model).__mro__} & {"LinearModel", "LinearClassifierMixin"}:
        return None  # before importing sklearn.linear_model: other models' start-up as it was
    from sklearn.linear_model import (
        ElasticNet,
        LinearRegression,
        LogisticRegression,
        QuantileRegressor,
        Ridge,
        RidgeCV,
    )
    from sklearn.utils.extmath import softmax

    kind, coef = type(model), getattr(model, "coef_", None)
    width = getattr(model, "n_features_in_", None)
    if type(coef) is not np.ndarray or width is None or hasattr(model, "feature_names_in_"):
        return None
    classifier = getattr(kind, "decision_function", None) is LogisticRegression.decision_function
    if classifier and method == "predict_proba":
        if kind.predict_proba is not LogisticRegression.predict_proba:
            return None
        scores = _scores(model, coef)
        binary = np.size(model.classes_) <= 2
        call = _binary(scores) if binary else _softmax(scores, len(model.classes_), softmax)
    elif classifier and method == "decision_function":
        call = _scores(model, coef)
    elif classifier and method == "predict":
        if kind.predict is not LogisticRegression.predict:
            return None
        call = _labels(_scores(model, coef), model.classes_)
    elif method == "predict":  # the regressors whose predict is LinearModel's product
        regressors = {c.predict for c in (LinearRegression, QuantileRegressor, Ridge, RidgeCV)}
        products = {LinearRegression._decision_function, ElasticNet._decision_function}
        if kind.predict not in regressors or getattr(kind, "_decision_function", 0) not in products:
            return None
        call = _scores(model, coef, flat=False)
    else:
        return None
    return Candidate(NAME, _served(call, reference, int(width)), _probes(int(width)))


def _served(
    call: Callable[[np.ndarray], Any], reference: Callable[[Any], Any], width: int
) -> Callable[[Any], Any]:
    """``call`` for the one input form it serves exactly, ``reference`` for any other."""

    def served(X: Any) -> Any:
        if (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.shape[1] == width
            and X.shape[0] > 0
            and X.dtype in SERVED_DTYPES
            and X.flags.c_contiguous
            and np.isfinite(X).all()
        ):
            return call(X)
        return reference(X)

    return served


SERVED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _scores(model: Any, coef: np.ndarray, flat: bool = True) -> Callable[[np.ndarray], Any]:
    """``decision_function`` (``flat``: one column made flat) / the regressors' product."""
    weights, intercept = (coef.T if coef.ndim == 2 else coef), model.intercept_

    def scores(X: np.ndarray) -> Any:
        found = X @ weights + intercept
        return found.reshape(-1) if flat and found.ndim > 1 and found.shape[1] == 1 else found

    return scores


def _binary(scores: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], np.ndarray]:
    def predict_proba(X: np.ndarray) -> np.ndarray:
        prob = scores(X)
        prob = expit(prob, out=prob)
        return np.stack([1 - prob, prob], axis=1)

    return predict_proba


def _softmax(
    scores: Callable[[np.ndarray], Any], count: int, softmax: Callable[..., np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    if count >= SEQUENTIAL_SUM:
        return lambda X: softmax(scores(X), copy=False)

    def predict_proba(X: np.ndarray) -> np.ndarray:
        found = scores(X)
        columns = [found[:, j] for j in range(count)]
        top = np.maximum(columns[0], columns[1])
        for column in columns[2:]:
            np.maximum(top, column, out=top)
        found -= top[:, None]
        np.exp(found, out=found)
        total = columns[0] + columns[1]  # views: now the exponentials
        for column in columns[2:]:
            total += column
        found /= total[:, None]
        return found

    return predict_proba


def _labels(scores: Callable[[np.ndarray], Any], classes: Any) -> Callable[[np.ndarray], Any]:
    def predict(X: np.ndarray) -> Any:
        found = scores(X)
        indices = (found > 0).astype(np.intp) if found.ndim == 1 else found.argmax(axis=1)
        return classes.take(indices, axis=0)

    return predict


def _probes(width: int) -> list[np.ndarray]:
    """The adversarial rows, and a large batch (numpy's product takes other BLAS kernels)."""
    rng = np.random.default_rng(7)
    return [*adversarial_rows(width), rng.standard_normal((1000, width)) * 3]
