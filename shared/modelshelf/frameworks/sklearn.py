"""scikit-learn: estimators and pipelines saved with joblib or pickle. Knows only which file,
which method, which input form; requests, names, metadata and errors are ``modelshelf.server``'s."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelshelf.errors import ConfigurationError
from modelshelf.fitted_columns import (
    ignores_extra_columns,
    learnt_column_dtypes,
    learnt_text_columns,
)
from modelshelf.inputs import as_frame, as_texts, pandas_module
from modelshelf.model_files import find_model_file, load_pickled
from modelshelf.server import Method, ModelServer, output_names

MODEL_NAMES = ("model.joblib", "model.pkl", "model.pickle")
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")
METHODS = ("predict_proba", "predict", "decision_function", "predict_log_proba", "transform")
#: KServe's sklearnserver answers ``predict`` unless this is ``true`` (its runtime sets ``false``).
PREDICT_PROBA = "PREDICT_PROBA"


class SKLearnServer(ModelServer):
    """Serves a fitted scikit-learn estimator or pipeline.

    Parameters (SeldonDeployment ``parameters``): ``model_uri``; ``method`` (default
    ``predict_proba`` when the estimator has it, else ``predict``, else ``transform``; with
    KServe's ``PREDICT_PROBA`` set, ``predict`` for ``false`` as KServe's sklearnserver answers);
    ``model_file`` when the folder holds several pickles.
    """

    framework_packages = ("scikit-learn", "numpy", "joblib")
    platform = "sklearn"
    serves_transform = True
    #: HistGradientBoosting and others compute with OpenMP (threadpoolctl-visible pools).
    uses_openmp = True
    probes_outputs = True

    def __init__(
        self,
        model_uri: str,
        method: str = "",
        model_file: str = "",
    ) -> None:
        super().__init__(model_uri)
        if method and method not in METHODS:
            raise ConfigurationError("method", method, "one of " + ", ".join(METHODS))
        self.requested_method = method
        #: KServe's choice between probabilities and labels; None (unset): Seldon's default.
        self.predict_proba = predict_proba_setting(os.environ)
        self.model_file = model_file
        self.takes_text = False
        self.text_columns: frozenset[str] = frozenset()
        #: Columns beyond ``feature_names`` are dropped (the model ignores them), else refused.
        self.drops_extra_columns = False

    def load_model(self, model_dir: Path) -> None:
        path = find_model_file(
            model_dir, MODEL_NAMES, MODEL_SUFFIXES, self.model_file, uri=self.model_uri
        )
        self.model = model = load_pickled(path, self.model_uri)
        has = [m for m in METHODS if callable(getattr(model, m, None))]
        default = _default_method(model, self.predict_proba)
        name = self.check_method(self.requested_method or default, has)
        self.model_path = path
        self.feature_names = _feature_names(model)
        if self.feature_names is not None:  # requests become DataFrames (``model_input``)
            pandas_module()  # imported at load, not by the first request
            self.text_columns = learnt_text_columns(model)
            self.drops_extra_columns = ignores_extra_columns(model)
            learnt = learnt_column_dtypes(model) or {}  # the rest: numbers
            self.column_dtypes = {n: learnt.get(n, np.dtype("f8")) for n in self.feature_names}
        self.n_features = getattr(model, "n_features_in_", None)
        self.takes_text = _takes_text(model)
        self.method = Method(name, getattr(model, name), output_names(model, name))
        if "transform" in has:
            self.transform_method = Method(
                "transform", model.transform, output_names(model, "transform")
            )

    def describe_custom(self) -> dict[str, str]:
        return {"estimator": type(self.model).__name__}

    def model_input(self, X: Any, names: Any) -> Any:
        """Texts for a text pipeline, a DataFrame for a model fitted on one, else the base's."""
        if self.takes_text:
            return as_texts(X)
        if self.feature_names is not None:
            return as_frame(
                X,
                names,
                self.feature_names,
                "the model's features",
                text_columns=self.text_columns,
                drop_extra=self.drops_extra_columns,
            )
        return super().model_input(X, names)


def predict_proba_setting(environ: Mapping[str, str]) -> bool | None:
    """``PREDICT_PROBA`` as KServe's sklearnserver reads it: ``true`` (any case) probabilities,
    ``false`` or empty labels; None when unset. Any other value (``1``, ``yes``, `` true``),
    which KServe silently reads as false, stops the start rather than answer what was not meant.
    """
    text = environ.get(PREDICT_PROBA)
    if text is None:
        return None
    if text.lower() in ("", "false", "true"):
        return text.lower() == "true"
    expected = "true (probabilities) or false (labels), as KServe's sklearnserver reads it"
    raise ConfigurationError(PREDICT_PROBA, text, expected, source="environment variable")


def _default_method(model: Any, predict_proba: bool | None = None) -> str:
    """Seldon's default (``predict_proba``) unless ``PREDICT_PROBA`` said ``false``."""
    first = ("predict",) if predict_proba is False else ("predict_proba", "predict")
    for name in (*first, "transform"):
        if callable(getattr(model, name, None)):
            return name
    raise ConfigurationError(
        "method",
        "",
        f"an estimator with predict/predict_proba/transform, got {type(model).__name__}",
    )


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _takes_text(model: Any) -> bool:
    """Whether the estimator's first step is a text vectorizer (it expects raw strings)."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.pipeline import Pipeline

    first = model
    while isinstance(first, Pipeline):
        first = first.steps[0][1]
    return isinstance(first, CountVectorizer | HashingVectorizer)
