"""``XGBoostServer``: the Seldon component. Loading and metadata; the work is done by the
package's other modules (files, description, methods), requests and threads by the base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelshelf.category_inputs import CategoryFrameReader
from modelshelf.errors import ConfigurationError
from modelshelf.frameworks.xgboost._description import (
    class_labels,
    default_feature_names,
    describe_booster,
    output_spec,
    trained_categories,
)
from modelshelf.frameworks.xgboost._loading import (
    check_saved_version,
    is_pickle,
    load_booster,
    load_estimator,
    model_path,
    served_booster,
)
from modelshelf.frameworks.xgboost._methods import METHODS, LoadedModel, build_method
from modelshelf.metadata import read_metadata_file
from modelshelf.openmp import ProcessThreads
from modelshelf.server import ModelServer


class XGBoostServer(ModelServer):
    """Serves an XGBoost Booster or scikit-learn-API XGBoost model.

    Parameters (SeldonDeployment ``parameters``): ``model_uri``; ``method`` (``predict``,
    ``predict_proba``, ``predict_margin``, ``predict_contribs``, ``predict_leaf``; default
    ``predict``); ``model_file`` when the folder holds several files; ``nthread`` (default 0:
    the cores this process may use divided by the gunicorn workers).
    """

    framework_packages = ("xgboost", "xgboost-cpu", "scikit-learn", "numpy")
    platform = "xgboost"
    uses_openmp = True

    def __init__(
        self, model_uri: str, method: str = "predict", model_file: str = "", nthread: int = 0
    ) -> None:
        super().__init__(model_uri)
        method = method or "predict"
        if method not in METHODS:
            raise ConfigurationError("method", method, "one of " + ", ".join(METHODS))
        try:
            threads = int(nthread)
        except (TypeError, ValueError):
            threads = -1
        if threads < 0:
            raise ConfigurationError("nthread", nthread, "a whole number >= 1, or 0: cores/workers")
        self.method_name = method
        self.model_file = model_file
        self.threads = ProcessThreads(threads, platform=self.platform)

    @property
    def nthread(self) -> int | None:
        """Threads a large batch uses in this process; ``None`` before its first request."""
        return self.threads.nthread if self.threads else None

    def load_model(self, model_dir: Path) -> None:
        path = model_path(model_dir, self.model_file, self.model_uri)
        if is_pickle(path):
            estimator, booster = load_estimator(path, self.model_uri)
            self.saved_version: str | None = None
        else:
            estimator = None
            self.saved_version = check_saved_version(path, self.model_uri)
            booster = load_booster(path, self.model_uri)
        booster, self.best_iteration = served_booster(booster)
        # Threads follow the OpenMP policy (modelshelf.openmp), not a count saved in the model.
        booster.set_param({"nthread": 0})
        self.description = describe_booster(booster)
        self.threads.fit_to_trees(self.description["trees"])
        self.feature_names = booster.feature_names
        self.n_features = booster.num_features()
        # A model that stored its training categories takes them by name, as a DataFrame;
        # every other model the base's rows of numbers (read_rows None: the base's RowReader).
        self.categories = trained_categories(booster)
        reader = (
            CategoryFrameReader(self.feature_names, self.categories) if self.categories else None
        )
        self.read_rows = reader
        #: Columns of text categories: BYTES inputs in the V2 metadata.
        self.text_input_columns = (
            reader.text_columns if reader and reader.takes_frames else frozenset()
        )
        self.model = estimator if estimator is not None else booster
        self.model_path = path
        self.booster = booster
        self.estimator = estimator
        self.missing = float(getattr(estimator, "missing", np.nan)) if estimator else np.nan
        self.class_labels = class_labels(estimator, self.description, read_metadata_file(model_dir))
        loaded = LoadedModel(
            booster=booster,
            objective=self.description["objective"],
            num_class=self.description["num_class"],
            missing=self.missing,
            classes=getattr(estimator, "classes_", None),
            class_names=self.class_labels,
            feature_names=self.feature_names or default_feature_names(self.n_features),
            linear=self.description["booster"] == "gblinear",
            frames=reader is not None and reader.takes_frames,
        )
        self.method = build_method(self.method_name, loaded)

    def describe_model(self) -> dict[str, Any]:
        found = super().describe_model()
        assert self.method is not None
        found["outputs"] = [
            output_spec(self.method_name, self.method.output_names, self.description)
        ]
        return found

    def describe_custom(self) -> dict[str, str]:
        desc = self.description
        optional = {
            "feature types": ",".join(desc["feature_types"] or []),
            "saved by xgboost": self.saved_version or "",
            "best iteration": "" if self.best_iteration is None else str(self.best_iteration),
            "estimator": type(self.estimator).__name__ if self.estimator is not None else "",
            "categorical features": ",".join(self.categories),
        }
        return {
            "objective": desc["objective"],
            "number of classes": str(desc["num_class"]),
            "number of features": str(self.n_features),
            "booster": desc["booster"],
            "boosted rounds": str(desc["rounds"]),
            **{key: value for key, value in optional.items() if value},
        }
