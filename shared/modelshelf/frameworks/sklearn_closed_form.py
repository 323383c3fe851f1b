"""Plain-numpy prediction for scikit-learn estimators whose output is a documented closed form.

Why: on one row, scikit-learn spends 150-250 µs per call validating its input (dtype and
dataframe detection, tags, finiteness) and ~15 µs on the arithmetic. The server validates each
request itself (shape, feature count, numbers), so for linear models, the scalers and pipelines of
those we compute the same formulas in numpy -- the same operations in the same order, so the
results are bit-identical -- and check finiteness ourselves. Requests of a few rows take the same
formulas in plain Python (``sklearn_row_form``): equal within rounding, and cheaper than numpy
calls inside a server.

Safety: ``closed_form`` only builds a function; ``verified_closed_form`` compares it with the
estimator's own method on a deterministic probe batch at load time and returns ``None`` (with
the reason) on any difference, so a subclass that changes a method, or a future scikit-learn that
changes a formula, falls back to scikit-learn's call. Inputs the compiled function does not
cover (float32, sparse, strings, object columns) go to scikit-learn's call at request time.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression, SGDRegressor
from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

from modelshelf.frameworks.sklearn_row_form import (
    ROW_FORM_MAX_WORK,
    NoRowFormError,
    RowForm,
    row_form,
)

Array = np.ndarray
Step = Callable[[Array], Array]

SCALERS = (StandardScaler, MinMaxScaler, MaxAbsScaler)
_FLOAT64 = np.dtype(np.float64)
#: Rows of the random part of the probe batch, per scale.
PROBE_ROWS = 64
PROBE_SCALES = (1e-3, 1.0, 1e3)


class NoClosedFormError(Exception):
    """The estimator (or one pipeline step) has no closed form here; says which and why."""


def closed_form(model: Any, method: str) -> Step:
    """A numpy function equal to ``getattr(model, method)`` on finite float64 rows.

    Raises ``NoClosedFormError`` for anything not covered.
    """
    if isinstance(model, Pipeline):
        steps = [est for _, est in model.steps if est not in (None, "passthrough")]
        if not steps:
            raise NoClosedFormError("a pipeline without steps")
        before = [_scaler_transform(est) for est in steps[:-1]]
        last = closed_form(steps[-1], method)
        return _chain(before, last)
    if method == "transform":
        return _scaler_transform(model)
    if isinstance(model, LinearClassifierMixin):
        return _linear_classifier(model, method)
    if isinstance(model, LinearModel | SGDRegressor) and method == "predict":
        return _linear_regressor(model)
    raise NoClosedFormError(f"no closed form for {type(model).__name__}.{method}")


def allows_nan(model: Any) -> bool:
    """Whether scikit-learn lets NaN through ``model`` (only the scalers, and chains of them)."""
    if isinstance(model, Pipeline):
        return all(allows_nan(est) for _, est in model.steps if est not in (None, "passthrough"))
    return isinstance(model, SCALERS)


def _chain(before: list[Step], last: Step) -> Step:
    if not before:
        return last

    def chained(X: Array) -> Array:
        for step in before:
            X = step(X)
            # scikit-learn checks each step's input: a scaler's output that overflowed to
            # infinity is refused by the next step (a finite sum means no infinity).
            if not math.isfinite(np.add.reduce(X, axis=None)) and np.isinf(X).any():
                raise ValueError(
                    "Input X contains infinity or a value too large for dtype('float64') "
                    "after scaling: the values are too large for this pipeline"
                )
        return last(X)

    return chained


def _dense(model: Any, name: str) -> Array:
    value = getattr(model, name, None)
    if not isinstance(value, np.ndarray) or value.dtype != np.float64:
        raise NoClosedFormError(f"{type(model).__name__}.{name} is not a dense float64 array")
    return value


def _scaler_transform(model: Any) -> Step:
    if isinstance(model, StandardScaler):
        mean = model.mean_ if model.with_mean else None
        scale = model.scale_ if model.with_std else None
        if (mean is not None and not isinstance(mean, np.ndarray)) or (
            scale is not None and not isinstance(scale, np.ndarray)
        ):
            raise NoClosedFormError("StandardScaler statistics are not arrays")

        def standard(X: Array) -> Array:
            if mean is not None:
                X = X - mean
            return X / scale if scale is not None else X

        return standard
    if isinstance(model, MinMaxScaler):
        scale, offset = _dense(model, "scale_"), _dense(model, "min_")
        low, high = (float(v) for v in model.feature_range)

        def min_max(X: Array) -> Array:
            X = X * scale
            X += offset
            return np.clip(X, low, high, out=X) if model.clip else X

        return min_max
    if isinstance(model, MaxAbsScaler):
        scale = _dense(model, "scale_")
        clip = bool(getattr(model, "clip", False))

        def max_abs(X: Array) -> Array:
            X = X / scale
            return np.clip(X, -1.0, 1.0, out=X) if clip else X

        return max_abs
    raise NoClosedFormError(f"no closed form for {type(model).__name__}.transform")


def _linear_scores(model: Any) -> Step:
    coef = _dense(model, "coef_")
    coef_t = coef.T if coef.ndim == 2 else coef
    intercept = model.intercept_

    def scores(X: Array) -> Array:
        found = X @ coef_t
        found += intercept
        return found

    return scores


def _linear_regressor(model: Any) -> Step:
    scores = _linear_scores(model)
    if isinstance(model, SGDRegressor):
        return lambda X: scores(X).ravel()
    return scores


def _linear_classifier(model: Any, method: str) -> Step:
    linear = _linear_scores(model)

    def decision_function(X: Array) -> Array:
        found = linear(X)
        return found.reshape(-1) if found.ndim > 1 and found.shape[1] == 1 else found

    if method == "decision_function":
        return decision_function
    if method == "predict":
        classes = model.classes_

        def predict(X: Array) -> Array:
            found = decision_function(X)
            chosen = (found > 0).astype(np.intp) if found.ndim == 1 else found.argmax(axis=1)
            return classes.take(chosen, axis=0)

        return predict
    if method in ("predict_proba", "predict_log_proba") and isinstance(model, LogisticRegression):
        proba = _binary_proba if len(model.classes_) <= 2 else _softmax
        if method == "predict_proba":
            return lambda X: proba(decision_function(X))
        return lambda X: np.log(proba(decision_function(X)))
    raise NoClosedFormError(f"no closed form for {type(model).__name__}.{method}")


def _binary_proba(scores: Array) -> Array:
    positive = expit(scores, out=scores)
    return np.stack([1 - positive, positive], axis=1)


def _softmax(scores: Array) -> Array:
    # ndarray.max / .sum call these same reductions, through a Python wrapper.
    scores -= np.maximum.reduce(scores, axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= np.add.reduce(scores, axis=1, keepdims=True)
    return scores


# ------------------------------------------------------------------ serving and verification


def fast_method(
    model: Any, method: str, step: Step, rows: RowForm | None = None, max_work: float = 0
) -> Callable[[Any], Any]:
    """The served callable: finite float64 rows take ``step`` (or ``rows``, the plain-Python form,
    while rows x its work per row is at most ``max_work``); other inputs scikit-learn's call.

    NaN and infinity are refused as scikit-learn refuses them (a ``ValueError``, which the
    server answers with a 400), NaN only where every step rejects it.
    """
    fallback = getattr(model, method)
    nan_ok = allows_nan(model)
    kind = type(model).__name__
    max_rows = max_work / max(rows.work, 1) if rows is not None else 0

    def call(X: Any) -> Any:
        found = _float64_rows(X)
        if found is None:
            return fallback(X)
        if len(found) <= max_rows:
            values = found.tolist()
            # A finite total means every value is finite (an overflowing one goes to numpy).
            if math.isfinite(sum(map(sum, values))):
                try:
                    return rows.call(values)  # type: ignore[union-attr]
                except ArithmeticError:  # scores that overflow: numpy's rules decide
                    pass
        # One reduction for the common case: a finite sum means every value is finite.
        if not math.isfinite(np.add.reduce(found, axis=None)):
            _refuse_non_finite(found, nan_ok, kind)
        return step(found)

    return call


def _refuse_non_finite(rows: Array, nan_ok: bool, kind: str) -> None:
    """The ``ValueError`` scikit-learn would raise for NaN / infinity (none if the sum of finite
    values only overflowed, or the NaN are allowed)."""
    if np.isinf(rows).any():
        raise ValueError(f"Input X contains infinity: {kind} takes finite numbers only")
    if not nan_ok and np.isnan(rows).any():
        raise ValueError(f"Input X contains NaN: {kind} takes no missing values (NaN)")


def _float64_rows(X: Any) -> Array | None:
    """``X`` as a 2-D float64 array the way scikit-learn would convert it, or ``None``."""
    if type(X) is not np.ndarray:
        return _frame_rows(X)
    if X.ndim != 2:
        return None
    if X.dtype is _FLOAT64:  # native float64; ``==`` would build a dtype from the type each call
        return X
    if X.dtype.kind in "biu":
        return X.astype(np.float64)
    return None  # float32 and others keep scikit-learn's own dtype rules


def _frame_rows(X: Any) -> Array | None:
    to_numpy = getattr(X, "to_numpy", None)
    dtypes = getattr(X, "dtypes", None)
    if to_numpy is None or dtypes is None or getattr(X, "ndim", 0) != 2:
        return None
    if not all(isinstance(d, np.dtype) and d.kind in "biuf" for d in dtypes):
        return None
    if any(d == np.float32 for d in dtypes):
        return None
    return to_numpy(dtype=np.float64)


def probe_rows(model: Any, n_features: int) -> Array:
    """Deterministic rows spanning several scales, zeros, ones and the scalers' fitted ranges."""
    rng = np.random.default_rng(20240601)
    parts = [rng.standard_normal((PROBE_ROWS, n_features)) * s for s in PROBE_SCALES]
    parts += [np.zeros((1, n_features)), np.ones((1, n_features)), -np.ones((1, n_features))]
    first = model.steps[0][1] if isinstance(model, Pipeline) else model
    for name in ("mean_", "data_min_", "data_max_", "max_abs_"):
        value = getattr(first, name, None)
        if isinstance(value, np.ndarray) and value.shape == (n_features,):
            spread = np.abs(value) + 1.0
            parts += [value[None, :], value + rng.standard_normal((16, n_features)) * spread]
    return np.vstack(parts)


def same_output(fast: Any, slow: Any) -> str | None:
    """``None`` when the two outputs match (type, dtype, shape, values); else what differs."""
    if type(fast) is not type(slow):
        return f"type {type(fast).__name__} instead of {type(slow).__name__}"
    fast_arr, slow_arr = np.asarray(fast), np.asarray(slow)
    if fast_arr.dtype != slow_arr.dtype or fast_arr.shape != slow_arr.shape:
        return (
            f"{fast_arr.dtype}{list(fast_arr.shape)} instead of "
            f"{slow_arr.dtype}{list(slow_arr.shape)}"
        )
    if fast_arr.dtype.kind in "fc":
        if not np.allclose(fast_arr, slow_arr, rtol=1e-12, atol=1e-15, equal_nan=True):
            worst = float(np.nanmax(np.abs(fast_arr - slow_arr)))
            return f"values differ by up to {worst:g}"
    elif not np.array_equal(fast_arr, slow_arr):
        return "different values (labels)"
    return None


class FastPath(NamedTuple):
    """What ``verified_closed_form`` found: the callable (``None``: use scikit-learn's) and why."""

    call: Callable[[Any], Any] | None
    note: str
    #: True when a closed form was built but did not match scikit-learn (worth a warning).
    refused: bool = False


def verified_closed_form(
    model: Any, method: str, n_features: int | None, feature_names: list[str] | None = None
) -> FastPath:
    """The fast callable when it equals scikit-learn's ``method`` on the probe batch, else why
    not; never raises. Small requests take the plain-Python form when that matches too."""
    try:
        step = closed_form(model, method)
    except NoClosedFormError as exc:
        return FastPath(None, str(exc))
    if not n_features:
        return FastPath(None, "the estimator does not say how many features it takes")
    try:
        X = probe_rows(model, n_features)
        batches: list[Any] = [X, X[:1], X[-1:], X.astype(np.int64)]
        if feature_names is not None:
            import pandas as pd

            batches = [pd.DataFrame(b, columns=feature_names) for b in batches]
        difference = _difference(model, method, fast_method(model, method, step), batches)
        if difference is not None:
            note = f"does not match {type(model).__name__}.{method}: {difference}"
            return FastPath(None, note, refused=True)
    except Exception as exc:  # any failure means: keep scikit-learn's call
        return FastPath(None, f"verification failed: {type(exc).__name__}: {exc}", refused=True)
    note = f"numpy closed form, equal to scikit-learn on {len(X)} probe rows"
    rows, why_not = _verified_row_form(model, method, step, batches)
    if rows is None:
        return FastPath(fast_method(model, method, step), f"{note}; {why_not}")
    call = fast_method(model, method, step, rows, ROW_FORM_MAX_WORK)
    most = ROW_FORM_MAX_WORK // max(rows.work, 1)
    python = f"requests of up to {most} rows in plain Python (equal within 1e-12)"
    return FastPath(call, f"{note}; {python}")


def served_call(
    model: Any,
    method: str,
    fast_path: bool,
    n_features: int | None,
    feature_names: list[str] | None,
    log: logging.Logger,
) -> tuple[Callable[[Any], Any], bool]:
    """What serves ``model.method``, chosen once at load: its verified closed form when
    ``fast_path`` is on and ``verified_closed_form`` finds one, else scikit-learn's own method;
    and whether it is the closed form. The choice goes to ``log`` (a WARNING when a closed form
    was built but refused), so each server says in its own log which path serves."""
    kind = type(model).__name__
    if not fast_path:
        log.info("%s.%s: scikit-learn's own call (fast_path=false)", kind, method)
        return getattr(model, method), False
    found = verified_closed_form(model, method, n_features, feature_names)
    if found.call is None:
        say = log.warning if found.refused else log.info
        say("%s.%s: scikit-learn's own call (fast path: %s)", kind, method, found.note)
        return getattr(model, method), False
    log.info("%s.%s: %s", kind, method, found.note)
    return found.call, True


def _verified_row_form(
    model: Any, method: str, step: Step, batches: list[Any]
) -> tuple[RowForm | None, str]:
    """The plain-Python form when it matches scikit-learn on every probe batch, else why not."""
    try:
        rows = row_form(model, method)
    except NoRowFormError as exc:
        return None, str(exc)
    try:
        every_request = fast_method(model, method, step, rows, max_work=math.inf)
        difference = _difference(model, method, every_request, batches)
    except Exception as exc:
        return None, f"plain-Python form failed: {type(exc).__name__}: {exc}"
    if difference is not None:
        return None, f"plain-Python form does not match: {difference}"
    return rows, ""


def _difference(
    model: Any, method: str, call: Callable[[Any], Any], batches: list[Any]
) -> str | None:
    """How ``call`` differs from scikit-learn's ``method`` on the first batch that differs."""
    # log(0) and overflow warnings on extreme probe rows are expected on both sides; they
    # must not end up among the load warnings the server reports.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for batch in batches:
            difference = same_output(call(batch), getattr(model, method)(batch.copy()))
            if difference is not None:
                return difference
    return None
