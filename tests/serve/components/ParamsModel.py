"""MODEL whose ``predict`` takes MLflow-style inference ``params`` (multiplies by ``factor``)."""

import numpy as np


class ParamsModel:
    def predict(self, X, features_names=None, params=None):
        factor = float((params or {}).get("factor", 1.0))
        return np.asarray(X, dtype=float) * factor
