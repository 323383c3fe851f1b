"""MODEL for process tests: ``{"jsonData": {"sleep": s}}`` sleeps s seconds; every answer says
which worker gave it and how often that worker's ``load()`` ran."""

import os
import time


class SleepyModel:
    def __init__(self) -> None:
        self.loads = 0

    def load(self):
        self.loads += 1

    def predict(self, X, features_names=None, meta=None):
        if isinstance(X, dict) and "sleep" in X:
            # The log line tells a test the request is inside the model (not queued in a socket).
            print(f"SleepyModel {os.getpid()}: sleeping {X['sleep']}s", flush=True)
            time.sleep(X["sleep"])
        return X

    def tags(self):
        return {"pid": os.getpid(), "loads": self.loads}
