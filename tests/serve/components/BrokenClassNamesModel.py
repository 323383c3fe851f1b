"""MODEL whose ``class_names()`` always raises (a names table it cannot read); ``predict``
doubles its input."""

import numpy as np


class BrokenClassNamesModel:
    def predict(self, X, features_names=None):
        return np.asarray(X, dtype=float) * 2

    def class_names(self):
        raise RuntimeError("names table missing")
