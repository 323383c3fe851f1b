"""MODEL: doubles numbers, echoes text and JSON, reports custom metrics and tags."""

import numpy as np


class ScoringModel:
    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor
        self.calls = 0

    def predict(self, X, features_names=None, meta=None):
        self.calls += 1
        if isinstance(X, dict):
            if "fail" in X:
                raise ValueError(f"cannot score {X['fail']!r}")
            if "numpy" in X:  # not JSON-serializable for Flask: a 500 on both front ends
                return {"value": np.int64(X["numpy"])}
            return {"echo": X, "calls": self.calls}
        if isinstance(X, str | bytes):
            return X
        arr = np.asarray(X)
        if arr.dtype.kind in "biuf":
            return arr * self.factor
        return arr

    def class_names(self):
        return ["first", "second", "third", "fourth"]

    def tags(self):
        return {"model": "scoring", "calls": self.calls}

    def metrics(self):
        return [
            {"type": "COUNTER", "key": "scoring_requests", "value": 1},
            {"type": "GAUGE", "key": "scoring_calls", "value": self.calls, "tags": {"a": "b"}},
            {"type": "TIMER", "key": "scoring_time", "value": 1.5},
        ]
