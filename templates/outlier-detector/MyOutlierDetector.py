"""A minimal outlier detector (``MODEL_NAME=MyOutlierDetector``).

In a Seldon Core 1.x graph an outlier detector is a ``TRANSFORMER`` node: it passes the request on
unchanged and adds an ``outlierScore`` tag (one score per row) to the response's ``meta``.
Rows further than ``threshold`` standard deviations from ``mean`` count as outliers.
"""

import numpy as np
from seldon_core.user_model import SeldonResponse


class MyOutlierDetector:
    def __init__(self, mean: float = 0.0, std: float = 1.0, threshold: float = 3.0) -> None:
        self.mean = float(mean)
        self.std = float(std)
        self.threshold = float(threshold)

    def score(self, X):
        z = np.abs((np.atleast_2d(np.asarray(X, dtype=float)) - self.mean) / self.std)
        return z.max(axis=1)

    def transform_input(self, X, features_names=None, meta=None):
        scores = self.score(X)
        outliers = int((scores > self.threshold).sum())
        return SeldonResponse(
            X,
            tags={"outlierScore": scores.tolist()},
            metrics=[{"type": "COUNTER", "key": "outliers_detected", "value": outliers}],
        )
