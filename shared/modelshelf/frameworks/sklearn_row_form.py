"""The closed forms of ``sklearn_closed_form`` in plain Python, for requests of a few rows.

Why: inside a running server a numpy call costs 3-10 µs rather than the ~1 µs it takes in a tight
loop (its code and data have left the CPU caches while the HTTP stack ran), and one row through
a linear model is eight numpy calls -- more than the arithmetic. For a few rows of a small
model, Python floats are cheaper; ``ROW_FORM_MAX_WORK`` says how small.

Exactness: equal to scikit-learn within rounding (the verifier's 1e-12 relative), not bit for bit,
because BLAS sums a dot product in its own order with fused multiply-adds. scikit-learn is no
closer to itself: a row alone and the same row inside a batch differ in the last bits too.
Labels (``predict``) are compared exactly, and a row whose scores are not finite goes to numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import mul
from typing import Any, NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression, SGDRegressor
from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

Rows = list[list[float]]
RowStep = Callable[[Rows], Rows]

#: Work per request up to which plain Python beats numpy inside a server (measured: one iris
#: row 10 µs in Python vs 20 µs in numpy in a tight loop, 4 rows 30 vs 21, and numpy pays
#: ~50 µs more in a server; each further row costs Python ~7 µs).
ROW_FORM_MAX_WORK = 128
#: The per-row Python overhead (lists, the answer's conversion), in multiply-adds.
ROW_OVERHEAD = 16


class NoRowFormError(Exception):
    """The estimator has no plain-Python form here; says which and why."""


class UseNumpyError(ArithmeticError):
    """This input needs numpy's rules (scores that are not finite)."""


class RowForm(NamedTuple):
    """``call`` takes rows as lists of floats and returns what the estimator's method returns;
    ``work`` is its multiply-adds per row plus ``ROW_OVERHEAD``."""

    call: Callable[[Rows], np.ndarray]
    work: int


def row_form(model: Any, method: str) -> RowForm:
    """The plain-Python form of ``getattr(model, method)`` on finite rows, or ``NoRowFormError``."""
    found = _row_form(model, method)
    return RowForm(found.call, found.work + ROW_OVERHEAD)


def _row_form(model: Any, method: str) -> RowForm:
    if isinstance(model, Pipeline):
        steps = [est for _, est in model.steps if est not in (None, "passthrough")]
        if not steps:
            raise NoRowFormError("a pipeline without steps")
        before = [_scaler_rows(est) for est in steps[:-1]]
        last = _row_form(steps[-1], method)
        work = sum(w for _, w in before) + last.work
        return RowForm(_chain([step for step, _ in before], last.call), work)
    if method == "transform":
        step, work = _scaler_rows(model)
        return RowForm(lambda rows: np.array(step(rows), dtype=np.float64), work)
    if isinstance(model, LinearClassifierMixin):
        return _linear_classifier(model, method)
    if isinstance(model, LinearModel | SGDRegressor) and method == "predict":
        return _linear_regressor(model)
    raise NoRowFormError(f"no plain-Python form for {type(model).__name__}.{method}")


def _chain(
    before: list[RowStep], last: Callable[[Rows], np.ndarray]
) -> Callable[[Rows], np.ndarray]:
    def chained(rows: Rows) -> np.ndarray:
        for step in before:
            rows = step(rows)
            # The next step's input check refuses infinity; numpy's path raises it, exactly.
            if not math.isfinite(sum(map(sum, rows))):
                raise UseNumpyError("a step's output is not finite")
        return last(rows)

    return chained


def _floats(model: Any, name: str) -> list[float]:
    value = getattr(model, name, None)
    if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.ndim != 1:
        raise NoRowFormError(f"{type(model).__name__}.{name} is not a 1-D float64 array")
    return value.tolist()


def _scaler_rows(model: Any) -> tuple[RowStep, int]:
    if isinstance(model, StandardScaler):
        mean = _floats(model, "mean_") if model.with_mean else None
        scale = _floats(model, "scale_") if model.with_std else None

        def standard(rows: Rows) -> Rows:
            if mean is not None:
                rows = [[x - m for x, m in zip(row, mean, strict=True)] for row in rows]
            if scale is not None:
                rows = [[x / s for x, s in zip(row, scale, strict=True)] for row in rows]
            return rows

        return standard, len(mean or scale or ())
    if isinstance(model, MinMaxScaler):
        scale, offset = _floats(model, "scale_"), _floats(model, "min_")
        low, high = (float(v) for v in model.feature_range)
        clip = bool(model.clip)

        def min_max(rows: Rows) -> Rows:
            rows = [[x * s + o for x, s, o in zip(row, scale, offset, strict=True)] for row in rows]
            return [[min(max(x, low), high) for x in row] for row in rows] if clip else rows

        return min_max, len(scale)
    if isinstance(model, MaxAbsScaler):
        scale = _floats(model, "scale_")
        clip = bool(getattr(model, "clip", False))

        def max_abs(rows: Rows) -> Rows:
            rows = [[x / s for x, s in zip(row, scale, strict=True)] for row in rows]
            return [[min(max(x, -1.0), 1.0) for x in row] for row in rows] if clip else rows

        return max_abs, len(scale)
    raise NoRowFormError(f"no plain-Python form for {type(model).__name__}.transform")


def _linear_scores(model: Any) -> tuple[Callable[[list[float]], list[float]], bool, int]:
    """Scores of one row, whether the method answers one score per row (1-D), and the work."""
    coef = getattr(model, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim not in (1, 2):
        raise NoRowFormError(f"{type(model).__name__}.coef_ is not a dense float64 array")
    weights = coef.reshape(1, -1).tolist() if coef.ndim == 1 else coef.tolist()
    try:
        biases = np.broadcast_to(np.asarray(model.intercept_, np.float64), len(weights)).tolist()
    except (TypeError, ValueError) as exc:
        raise NoRowFormError(f"{type(model).__name__}.intercept_: {exc}") from exc

    def scores(row: list[float]) -> list[float]:
        return [sum(map(mul, row, w)) + b for w, b in zip(weights, biases, strict=True)]

    return scores, coef.ndim == 1, coef.size


def _linear_regressor(model: Any) -> RowForm:
    scores, one_per_row, work = _linear_scores(model)
    if one_per_row or isinstance(model, SGDRegressor):
        return RowForm(lambda rows: np.array([scores(row)[0] for row in rows]), work)
    return RowForm(lambda rows: np.array([scores(row) for row in rows]), work)


def _linear_classifier(model: Any, method: str) -> RowForm:
    scores, one_per_row, work = _linear_scores(model)
    binary = one_per_row or model.coef_.shape[0] == 1
    if method == "decision_function":
        if binary:
            return RowForm(lambda rows: np.array([scores(row)[0] for row in rows]), work)
        return RowForm(lambda rows: np.array([scores(row) for row in rows]), work)
    if method == "predict":
        classes = model.classes_
        labels = classes.tolist()

        def predict(rows: Rows) -> np.ndarray:
            chosen = [labels[_chosen(scores(row), binary)] for row in rows]
            return np.array(chosen, dtype=classes.dtype)

        return RowForm(predict, work)
    if method in ("predict_proba", "predict_log_proba") and isinstance(model, LogisticRegression):
        proba = _binary_proba if len(model.classes_) <= 2 else _softmax
        if method == "predict_proba":
            return RowForm(lambda rows: np.array([proba(scores(row)) for row in rows]), work)
        return RowForm(
            lambda rows: np.array([[_log(p) for p in proba(scores(row))] for row in rows]), work
        )
    raise NoRowFormError(f"no plain-Python form for {type(model).__name__}.{method}")


def _chosen(found: list[float], binary: bool) -> int:
    if not math.isfinite(sum(found)):
        raise UseNumpyError("scores are not finite")
    if binary:
        return 1 if found[0] > 0 else 0
    return found.index(max(found))  # the first of equal maxima, as numpy's argmax


def _binary_proba(found: list[float]) -> list[float]:
    """scipy's ``expit`` as scikit-learn calls it: ``1 / (1 + exp(-score))``, 0 where ``exp``
    overflows (scores below -709.78: then ``predict_log_proba`` is ``-inf``, as scikit-learn's)."""
    try:
        positive = 1.0 / (1.0 + math.exp(-found[0]))
    except OverflowError:
        positive = 0.0
    return [1.0 - positive, positive]


def _softmax(found: list[float]) -> list[float]:
    if not math.isfinite(sum(found)):
        raise UseNumpyError("scores are not finite")
    top = max(found)
    exps = [math.exp(s - top) for s in found]
    total = sum(exps)
    return [e / total for e in exps]


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -math.inf
