"""LightGBM: text boosters (``model.txt``, ``model.bst``) and pickled ``LGBMClassifier`` /
``LGBMRegressor``. Loads and describes only: requests, names and threads are the base's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from modelshelf.errors import ModelLoadError
from modelshelf.inputs import as_frame, pandas_module
from modelshelf.model_files import find_model_file, load_pickled
from modelshelf.server import Method, ModelServer, output_names

MODEL_FILES = ("model.txt", "model.bst", "model.joblib", "model.pkl", "model.pickle")
#: ``method`` -> LightGBM's ``predict`` options.
OPTIONS: dict[str, dict[str, bool]] = {"predict": {}, "predict_proba": {}}
OPTIONS.update(predict_raw={"raw_score": True}, predict_contrib={"pred_contrib": True})
OPTIONS.update(predict_leaf={"pred_leaf": True})


class LightGBMServer(ModelServer):
    """Parameters: ``model_uri``; ``method`` (``predict``, ``predict_proba``, ``predict_raw``,
    ``predict_contrib``, ``predict_leaf``; default ``predict``); ``model_file``."""

    framework_packages = ("lightgbm", "scikit-learn", "numpy")
    platform = "lightgbm"
    uses_openmp = True
    probes_outputs = True

    def __init__(self, model_uri: str, method: str = "predict", model_file: str = "") -> None:
        super().__init__(model_uri)
        self.method_name = self.check_method(method or "predict", list(OPTIONS))
        self.model_file = model_file
        self.categories: dict[str, list[Any]] = {}
        self.categorical: Any = None  # pandas.Categorical, for a model with categories

    def load_model(self, model_dir: Path) -> None:
        suffixes = tuple(name[5:] for name in MODEL_FILES)
        path = find_model_file(model_dir, MODEL_FILES, suffixes, self.model_file, self.model_uri)
        if path.suffix in (".txt", ".bst"):
            self.model = booster = lgb.Booster(model_file=str(path))
        else:
            self.model = load_pickled(path, self.model_uri)
            if not isinstance(self.model, lgb.LGBMModel):
                kind = type(self.model).__name__
                raise ModelLoadError(self.model_uri, f"{path.name} holds a {kind}, not LightGBM")
            booster = self.model.booster_
        self.model_path, self.booster = path, booster
        if self.threads is not None:
            self.threads.fit_to_trees(booster.num_trees())
        self.feature_names = booster.feature_name()
        self.n_features = booster.num_feature()
        self.objective = str(booster.params.get("objective", "unknown"))
        classifier = self.objective.startswith(("binary", "multiclass", "cross_entropy"))
        self.classes = booster.num_model_per_iteration() if classifier else 0
        if booster.pandas_categorical:  # fitted on a DataFrame: its categories, by column
            infos = zip(self.feature_names, _categorical(booster), strict=True)
            categorical = [name for name, is_categorical in infos if is_categorical]
            self.categories = dict(zip(categorical, booster.pandas_categorical, strict=True))
            self.categorical = pandas_module().Categorical  # imported at load, not per request
            self.column_dtypes = {  # a column each: its categories' type, else numbers
                n: np.asarray(self.categories.get(n, [0.0])).dtype for n in self.feature_names
            }
        name = self.method_name
        if name == "predict_proba":
            self.check_method(name, ["predict_proba"] if self.classes else ["predict"])
        self.method = Method(name, self._call(name), self._output_names(name))

    def _call(self, name: str) -> Any:
        options = OPTIONS[name]
        if not isinstance(self.model, lgb.Booster):  # the estimator's own method
            own = self.model.predict_proba if name == "predict_proba" else self.model.predict
            return lambda X: own(X, num_threads=self.threads.current, **options)
        predict = self.booster.predict
        if name == "predict_proba" and self.classes == 1:  # P(class 1), as LGBMClassifier
            return lambda X: _two_columns(predict(X, num_threads=self.threads.current))
        return lambda X: predict(X, num_threads=self.threads.current, **options)

    def _output_names(self, name: str) -> list[str] | None:
        classes = output_names(self.model, "predict_proba") or [
            f"class_{i}" for i in range(max(self.classes, 2))
        ]
        if name == "predict_proba" or (self.classes > 1 and name == "predict_raw"):
            return classes
        if name == "predict" and self.classes > 1 and isinstance(self.model, lgb.Booster):
            return classes  # a multi-class booster's predict gives the probabilities
        if name == "predict_contrib" and self.classes <= 1:
            return [*self.feature_names, "bias"]
        return None

    def describe_custom(self) -> dict[str, str]:
        custom = {"objective": self.objective, "rounds": str(self.booster.current_iteration())}
        if self.categories:
            custom["categorical features"] = ",".join(self.categories)
        if not isinstance(self.model, lgb.Booster):
            custom["estimator"] = type(self.model).__name__
        return custom

    def model_input(self, X: Any, names: Any) -> Any:
        """Numbers in column order; with categorical features, a DataFrame of their categories."""
        if not self.categories:
            return super().model_input(X, names)
        frame = as_frame(X, names, self.feature_names, "the model's features")
        for column, categories in self.categories.items():
            frame[column] = self.categorical(frame[column], categories=categories)
        return frame


def _categorical(booster: lgb.Booster) -> list[bool]:
    """Which features the model file records as categorical (``feature_infos``: ``a:b:c``
    category values rather than a ``[min:max]`` range)."""
    for line in booster.model_to_string().splitlines():
        if line.startswith("feature_infos="):
            return [not i.startswith("[") and i != "none" for i in line[14:].split()]
    return []


def _two_columns(p: np.ndarray) -> np.ndarray:
    return np.vstack((1.0 - p, p)).transpose()
