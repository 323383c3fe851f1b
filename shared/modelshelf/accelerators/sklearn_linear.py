"""scikit-learn's linear models: ``X @ coef_.T + intercept_`` (and LogisticRegression's
probabilities from it) without the input checks, for the input form the server passes.

Why: iris LogisticRegression's ``predict_proba`` is ~206 µs of a 1,000-row request's ~290 µs of
CPU: ~68 µs of input checks (array namespace, DataFrame detection, feature names, finiteness),
~57 µs of softmax (numpy's axis-1 reductions over 3-value rows), a few µs of product. In
process ``predict_proba`` 4-6x faster at 1,000 rows, 10-12x for one row; served, see the
README's "Fast path".

Exactness: it serves only a C-contiguous 2-D float64 / float32 ndarray of the fitted width, with
rows, all finite; anything else, so every refusal, goes to scikit-learn's call. What it serves
repeats scikit-learn 1.9.1's operations on the same arrays: ``decision_function``'s product plus
``intercept_`` (one column made flat); binary ``predict_proba``: ``expit`` in place, then
``[1 - p, p]``; ``softmax``: the row maximum subtracted, ``exp`` in place, divided by the row
sum. The maximum is taken column by column (exact in any order; where a row's is NaN or +inf,
which NaN numpy's ``max`` keeps depends on its SIMD path: ``softmax`` itself) and, below 8
classes, so is the sum (numpy sums fewer than 8 values left to right, 8 or more pairwise: then
``softmax`` itself). ``verify`` checks it at load. Only for scikit-learn's own
methods (a subclass overriding one keeps its call), dense ``coef_``, no ``feature_names_in_``
(such models get DataFrames: scikit-learn's call). Compares the regressors' private
``_decision_function`` by identity only: with another one, or none, no candidate.
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
SERVED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
#: Regressors whose ``predict`` returns ``_decision_function``, and the classes whose
#: ``_decision_function`` is the plain product (LinearModel's; ElasticNet's, on dense input).
PLAIN_PRODUCT_REGRESSORS = ("LinearRegression", "QuantileRegressor", "Ridge", "RidgeCV")
PLAIN_PRODUCTS = ("LinearRegression", "ElasticNet")


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The product for a linear model's own ``predict`` / ``decision_function`` /
    LogisticRegression's ``predict_proba``, or ``None``."""
    if not {c.__name__ for c in type(model).__mro__} & {"LinearModel", "LinearClassifierMixin"}:
        return None  # before importing sklearn.linear_model: other models' start-up as it was
    from sklearn import linear_model as linear
    from sklearn.utils.extmath import softmax

    kind, coef = type(model), getattr(model, "coef_", None)
    width = getattr(model, "n_features_in_", None)
    if type(coef) is not np.ndarray or width is None or hasattr(model, "feature_names_in_"):
        return None
    logistic = linear.LogisticRegression  # its methods are LinearClassifierMixin's, and its own
    if getattr(kind, "decision_function", None) is logistic.decision_function:
        scores = _scores(model, coef)
        if method == "decision_function":
            call = scores
        elif method == "predict" and kind.predict is logistic.predict:
            call = _labels(scores, model.classes_)
        elif method == "predict_proba" and kind.predict_proba is logistic.predict_proba:
            call = _probabilities(scores, np.size(model.classes_), softmax)
        else:
            return None
    elif method == "predict":  # the regressors whose predict is LinearModel's product
        own = {getattr(linear, name).predict for name in PLAIN_PRODUCT_REGRESSORS}
        products = {getattr(linear, n)._decision_function for n in PLAIN_PRODUCTS}
        plain = getattr(kind, "_decision_function", None) in products
        if kind.predict not in own or not plain:
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
        usual = type(X) is np.ndarray and X.ndim == 2 and X.shape[1] == width and len(X) > 0
        if usual and X.dtype in SERVED_DTYPES and X.flags.c_contiguous and np.isfinite(X).all():
            return call(X)
        return reference(X)

    return served


def _scores(model: Any, coef: np.ndarray, flat: bool = True) -> Callable[[np.ndarray], Any]:
    """``decision_function`` (``flat``: one column made flat) / the regressors' product."""
    weights, intercept = (coef.T if coef.ndim == 2 else coef), model.intercept_

    def scores(X: np.ndarray) -> Any:
        found = X @ weights + intercept
        return found.reshape(-1) if flat and found.ndim > 1 and found.shape[1] == 1 else found

    return scores


def _probabilities(
    scores: Callable[[np.ndarray], Any], count: int, softmax: Callable[..., np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """LogisticRegression's ``predict_proba``: binary, below 8 classes, 8 or more."""

    def binary(X: np.ndarray) -> np.ndarray:
        prob = scores(X)
        prob = expit(prob, out=prob)
        return np.stack([1 - prob, prob], axis=1)

    def multiclass(X: np.ndarray) -> np.ndarray:
        found = scores(X)
        columns = [found[:, j] for j in range(count)]
        top = np.maximum(columns[0], columns[1])
        for column in columns[2:]:
            np.maximum(top, column, out=top)
        if not np.isfinite(top).all():  # NaN / +inf in a row: which NaN numpy's max keeps
            return softmax(found, copy=False)  # depends on its SIMD path: its own softmax
        found -= top[:, None]
        np.exp(found, out=found)
        total = columns[0] + columns[1]  # views: now the exponentials
        for column in columns[2:]:
            total += column
        found /= total[:, None]
        return found

    if count <= 2:
        return binary
    return multiclass if count < SEQUENTIAL_SUM else lambda X: softmax(scores(X), copy=False)


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
