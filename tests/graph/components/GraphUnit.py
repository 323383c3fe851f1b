"""A tiny Seldon component for graph tests: a model (X * factor), a router (child index = the
first value of the first row) and a combiner (the mean of its children's answers)."""

import numpy as np


class GraphUnit:
    def __init__(self, factor: float = 1.0) -> None:
        self.factor = float(factor)

    def predict(self, X, features_names=None, meta=None):
        return np.asarray(X, dtype=float) * self.factor

    def route(self, X, features_names=None):
        return int(np.asarray(X, dtype=float)[0][0])

    def aggregate(self, Xs, features_names=None):
        return np.mean([np.asarray(X, dtype=float) for X in Xs], axis=0)
