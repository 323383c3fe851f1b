"""The callables a server's ``method`` parameter chooses, built once at load time.

``predict`` and ``predict_margin`` (and ``predict_proba``, made of them) predict in place from the
request's array, with no ``DMatrix``: building one costs more than the trees for a single row.
SHAP contributions and leaf indices need a ``DMatrix``; XGBoost computes them from nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from modelshelf.errors import ConfigurationError
from modelshelf.server import Method

METHODS = ("predict", "predict_proba", "predict_margin", "predict_contribs", "predict_leaf")

#: Objectives whose outputs are class probabilities (``predict_proba`` needs one of these).
PROBABILITY_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadedModel:
    """What choosing a method needs to know of the model."""

    booster: xgb.Booster
    objective: str
    num_class: int
    missing: float
    classes: Any  # an XGBClassifier's classes_, else None
    class_names: Sequence[str]
    feature_names: Sequence[str]
    #: A ``gblinear`` booster: values and margins through a ``DMatrix``.
    linear: bool = False
    #: Requests come as DataFrames of categories (``modelshelf.category_inputs``).
    frames: bool = False


def build_method(name: str, model: LoadedModel) -> Method:
    """The ``Method`` that serves ``name``; a ``ConfigurationError`` if this model cannot."""
    objective = model.objective
    if name == "predict_proba" and objective not in PROBABILITY_OBJECTIVES:
        raise ConfigurationError(
            "method",
            name,
            "a method this model supports: predict_proba needs a classification objective "
            f"({', '.join(PROBABILITY_OBJECTIVES)}); this model's objective is {objective}",
        )
    if name == "predict_leaf" and model.linear:
        raise ConfigurationError(
            "method",
            name,
            "a method this model supports: a gblinear booster has no trees, so no leaf indices "
            "(predict, predict_margin, predict_contribs and, for a classification objective, "
            "predict_proba)",
        )
    value: Predict
    margin: Predict
    if model.linear:  # gblinear has no in-place prediction ("not supported by the current booster")
        value = DMatrixPredictor(model.booster, model.missing, categorical=model.frames)
        margin = DMatrixPredictor(
            model.booster, model.missing, categorical=model.frames, output_margin=True
        )
    else:
        inplace = FrameInplacePredictor if model.frames else InplacePredictor
        value = inplace(model.booster, "value", model.missing)
        margin = inplace(model.booster, "margin", model.missing)
    class_names = model.class_names
    if name == "predict" and model.classes is not None:
        return Method(name, _labels(value, objective, model.classes), None)
    if name == "predict":
        return Method(name, value, class_names if objective == "multi:softprob" else None)
    if name == "predict_proba":
        if objective == "multi:softmax":
            return Method(name, _softmax(margin), class_names)
        if objective == "binary:logistic":
            return Method(name, _two_columns(value), class_names)
        return Method(name, value, class_names)
    if name == "predict_margin":
        return Method(name, margin, class_names if model.num_class > 1 else None)
    contribs = name == "predict_contribs"
    call = DMatrixPredictor(
        model.booster,
        model.missing,
        categorical=model.frames,
        pred_contribs=contribs,
        pred_leaf=not contribs,
    )
    return Method(name, call, [*model.feature_names, "bias"] if contribs else None)


class InplacePredictor:
    """Values or margins of dense rows by ``Booster.inplace_predict`` (its threads:
    ``modelshelf.openmp``)."""

    def __init__(self, booster: xgb.Booster, predict_type: str, missing: float) -> None:
        self.booster = booster
        self.predict_type = predict_type
        self.missing = missing

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.dtype != np.float32 and X.dtype != np.float64:
            # Integers straight to float32, as XGBoost converts them: one rounding, not two.
            X = X.astype(np.float32 if X.dtype.kind in "biu" else np.float64)
        return self.booster.inplace_predict(
            X, predict_type=self.predict_type, missing=self.missing, validate_features=False
        )


class FrameInplacePredictor(InplacePredictor):
    """Values or margins of a DataFrame of categories: XGBoost reads the category columns'
    codes against the categories it stored (its re-coding)."""

    def __call__(self, X: Any) -> np.ndarray:
        return self.booster.inplace_predict(
            X, predict_type=self.predict_type, missing=self.missing, validate_features=False
        )


class DMatrixPredictor:
    """Through a ``DMatrix`` of the rows: SHAP contributions, leaf indices, and a linear
    booster's values or margins (``Booster.predict``'s ``options``)."""

    def __init__(
        self, booster: xgb.Booster, missing: float, categorical: bool = False, **options: bool
    ) -> None:
        self.booster = booster
        self.missing = missing
        self.categorical = categorical  # rows are a DataFrame of categories
        self.options = options

    def __call__(self, X: Any) -> np.ndarray:
        if self.categorical:
            data = xgb.DMatrix(X, missing=self.missing, nthread=-1, enable_categorical=True)
            return self.booster.predict(data, validate_features=False, **self.options)
        if X.dtype.kind in "biu":
            X = X.astype(np.float32)  # one rounding, as XGBoost's own conversion
        data = xgb.DMatrix(X, missing=self.missing, nthread=-1)  # the thread policy's count
        return self.booster.predict(data, validate_features=False, **self.options)


def _two_columns(value: Predict) -> Predict:
    """A binary model's P(class 1) as ``[1 - p, p]``, one column per class name."""

    def predict_proba(X: np.ndarray) -> np.ndarray:
        p = value(X)
        return np.column_stack((1.0 - p, p))

    return predict_proba


def _softmax(margin: Predict) -> Predict:
    """``multi:softmax`` predicts labels; its probabilities are the softmax of the margins."""
    from scipy.special import softmax

    def predict_proba(X: np.ndarray) -> np.ndarray:
        return softmax(margin(X), axis=1)

    return predict_proba


def _labels(value: Predict, objective: str, classes: Any) -> Predict:
    """An ``XGBClassifier``'s ``predict``: the label of the most probable class."""
    labels = np.asarray(classes)

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
