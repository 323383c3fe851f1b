"""A minimal Seldon model: the file's name is the class's name (``MODEL_NAME=MyModel``).

Replace the body of ``predict`` with your own model; load weights in ``load()``, not in
``__init__`` (seldon-core forks workers after building the object).
"""

import numpy as np


class MyModel:
    """Scores each row as ``weight * sum(row)``: a stand-in for a real model."""

    def __init__(self, weight: float = 1.0) -> None:
        # Constructor arguments come from the SeldonDeployment graph's `parameters`.
        self.weight = float(weight)
        self.ready = False
        self.predictions = 0

    def load(self) -> None:
        self.ready = True  # load your weights here

    def predict(self, X, features_names=None, meta=None):
        rows = np.atleast_2d(np.asarray(X, dtype=float))
        self.predictions += len(rows)
        return self.weight * rows.sum(axis=1, keepdims=True)  # at least 2-D: one row per input

    def class_names(self):
        return ["score"]

    def health_status(self):
        if not self.ready:
            raise RuntimeError("not loaded yet")
        return {"ready": True}

    def tags(self):
        return {"model": "MyModel"}

    def metrics(self):
        return [{"type": "GAUGE", "key": "mymodel_rows_scored", "value": self.predictions}]
