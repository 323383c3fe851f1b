"""OUTPUT_TRANSFORMER: multiplies every number of the output by 10."""

import numpy as np


class ScaleOutputTransformer:
    def transform_output(self, X, features_names=None, meta=None):
        return np.asarray(X, dtype=float) * 10

    def class_names(self):
        return ["scaled"]
