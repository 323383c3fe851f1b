"""scikit-learn: estimators and pipelines saved with joblib or pickle.

Knows only scikit-learn: which file, which method, which names, which input shape. Downloading,
metadata files, health and error mapping live in ``modelshelf.server``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from modelshelf.errors import BadRequestError, ConfigurationError
from modelshelf.frameworks.sklearn_closed_form import served_call
from modelshelf.inputs import as_2d_numbers, as_frame
from modelshelf.metadata import array_spec
from modelshelf.model_files import find_model_file
from modelshelf.server import Method, ModelServer, bool_parameter

MODEL_NAMES = ("model.joblib", "model.pkl", "model.pickle")
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")
METHODS = ("predict_proba", "predict", "decision_function", "predict_log_proba", "transform")
_CLASS_OUTPUTS = ("predict_proba", "predict_log_proba", "decision_function")
#: What ``custom["prediction path"]`` in the metadata says.
NUMPY_PATH = "closed form (verified at load)"
SKLEARN_PATH = "scikit-learn"

logger = logging.getLogger(__name__)


class SKLearnServer(ModelServer):
    """Serves a fitted scikit-learn estimator or pipeline.

    Parameters (SeldonDeployment ``parameters``): ``model_uri``; ``method`` (default
    ``predict_proba`` when the estimator has it, else ``predict``, else ``transform``);
    ``model_file`` when the folder holds several pickles; ``fast_path`` (default true): serve
    linear models, scalers and pipelines of those with their closed form in numpy, verified
    against scikit-learn at load (see ``sklearn_closed_form``).
    """

    framework_packages = ("scikit-learn", "numpy", "joblib")
    serves_transform = True
    #: HistGradientBoosting and others compute with OpenMP (threadpoolctl-visible pools).
    uses_openmp = True

    def __init__(
        self,
        model_uri: str,
        method: str = "",
        model_file: str = "",
        fast_path: bool | str = True,
    ) -> None:
        super().__init__(model_uri)
        if method and method not in METHODS:
            raise ConfigurationError("method", method, "one of " + ", ".join(METHODS))
        self.requested_method = method
        self.model_file = model_file
        self.fast_path = bool_parameter("fast_path", fast_path)
        self.prediction_path = SKLEARN_PATH
        self.method: Method | None = None
        # Set by load_model; defined here so a request before load gets a 503, not a crash.
        self.feature_names: list[str] | None = None
        self.n_features: int | None = None
        self.takes_text = False

    # ---------------------------------------------------------------- loading

    def load_model(self, model_dir: Path) -> None:
        path = find_model_file(
            model_dir, MODEL_NAMES, MODEL_SUFFIXES, self.model_file, uri=self.model_uri
        )
        model = joblib.load(path)
        name = self.requested_method or _default_method(model)
        if not callable(getattr(model, name, None)):
            raise ConfigurationError(
                "method", name, f"a method {type(model).__name__} has ({_methods_of(model)})"
            )
        self.model = model
        self.model_path = path
        self.feature_names = _feature_names(model)
        self.n_features = getattr(model, "n_features_in_", None)
        self.takes_text = _takes_text(model)
        call, fast = self._callable(name)
        self.prediction_path = NUMPY_PATH if fast else SKLEARN_PATH
        self.method = Method(name, call, _output_names(model, name))
        if callable(getattr(model, "transform", None)):
            call = call if name == "transform" else self._callable("transform")[0]
            self.transform_method = Method("transform", call, _output_names(model, "transform"))

    def _callable(self, name: str) -> tuple[Any, bool]:
        """The estimator's method, or its verified numpy closed form when ``fast_path`` is on
        (and whether it is that)."""
        return served_call(
            self.model, name, self.fast_path, self.n_features, self.feature_names, logger
        )

    def describe_model(self) -> dict[str, Any]:
        assert self.method is not None
        output_names = self.method.output_names
        return {
            "name": self.model_path.stem
            if self.model_path.stem != "model"
            else self.model_dir.name,
            "platform": "sklearn",
            "inputs": [array_spec(self.feature_names, self.n_features)],
            "outputs": [array_spec(output_names, len(output_names) if output_names else None)],
            "custom": {
                "estimator": type(self.model).__name__,
                "method": self.method.name,
                "model file": self.model_path.name,
                "prediction path": self.prediction_path,
            },
        }

    # ---------------------------------------------------------------- requests

    def predict(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        return self.serve(self.method, self.model_input(X, features_names))  # type: ignore[arg-type]

    def model_input(self, X: Any, names: Any) -> Any:
        """The request's payload in the form the estimator was fitted on."""
        if self.takes_text:
            return _texts(X)
        if self.feature_names is not None:
            return as_frame(X, names, self.feature_names, "the model's features")
        arr = as_2d_numbers(X, self.n_features)
        if names is not None and len(names) and len(names) != arr.shape[1]:
            raise BadRequestError(
                f"names has {len(names)} entries but each row has {arr.shape[1]} values"
            )
        return arr


def _default_method(model: Any) -> str:
    for name in ("predict_proba", "predict", "transform"):
        if callable(getattr(model, name, None)):
            return name
    raise ConfigurationError(
        "method",
        "",
        f"an estimator with predict/predict_proba/transform, got {type(model).__name__}",
    )


def _methods_of(model: Any) -> str:
    found = [m for m in METHODS if callable(getattr(model, m, None))]
    return ", ".join(found) if found else "none of " + ", ".join(METHODS)


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _output_names(model: Any, method: str) -> list[str] | None:
    if method in _CLASS_OUTPUTS:
        classes = getattr(model, "classes_", None)
        if classes is None or np.ndim(classes) != 1:
            return None
        if method == "decision_function" and len(classes) == 2:
            return None  # one score per row, for the positive class
        return [str(c) for c in classes]
    if method == "transform":
        try:
            return [str(n) for n in model.get_feature_names_out()]
        except Exception:  # many transformers cannot name their outputs
            return None
    return None


def _takes_text(model: Any) -> bool:
    """Whether the estimator's first step is a text vectorizer (it expects raw strings)."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.pipeline import Pipeline

    first = model
    while isinstance(first, Pipeline):
        first = first.steps[0][1]
    return isinstance(first, CountVectorizer | HashingVectorizer)


def _texts(X: Any) -> list[str]:
    if isinstance(X, bytes):
        X = X.decode("utf-8", errors="replace")
    if isinstance(X, str):
        return [X]
    arr = np.asarray(X, dtype=object)
    if arr.size == 0:
        raise BadRequestError("the input is empty: expected one or more texts")
    if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
        raise BadRequestError(
            f"expected one text per row (shape [n] or [n, 1]), got shape {list(arr.shape)}"
        )
    texts = arr.ravel().tolist()
    for value in texts:
        if not isinstance(value, str):
            raise BadRequestError(f"expected texts (strings), got {value!r}")
    return texts
