"""A minimal input/output transformer (``MODEL_NAME=MyTransformer``).

As ``SERVICE_TYPE=TRANSFORMER`` it answers ``/transform-input`` (before the model); as
``OUTPUT_TRANSFORMER`` it answers ``/transform-output`` (after it). Both are defined here.
"""

import numpy as np


class MyTransformer:
    def __init__(self, offset: float = 0.0, scale: float = 1.0) -> None:
        self.offset = float(offset)
        self.scale = float(scale)

    def transform_input(self, X, features_names=None, meta=None):
        return (np.asarray(X, dtype=float) - self.offset) / self.scale

    def transform_output(self, X, features_names=None, meta=None):
        return np.round(np.asarray(X, dtype=float), 3)
