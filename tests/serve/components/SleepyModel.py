"""MODEL for process tests: sleeps ``delay`` seconds per request and says which worker answered."""

import os
import time


class SleepyModel:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.loads = 0

    def load(self):
        self.loads += 1

    def predict(self, X, features_names=None, meta=None):
        if self.delay:
            time.sleep(self.delay)
        return X

    def tags(self):
        return {"pid": os.getpid(), "loads": self.loads}
