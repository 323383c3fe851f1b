"""MODEL for worker-restart tests: ``{"jsonData": {"exit": code}}`` ends its process at once
(``os._exit``, as a crashing native library would); ``fail_load`` makes ``load()`` raise;
``load_seconds`` makes it take that long (a model downloaded in ``load()``).
Every answer says which process gave it."""

import os
import time


class CrashingModel:
    def __init__(self, fail_load: bool = False, load_seconds: float = 0) -> None:
        self.fail_load = fail_load
        self.load_seconds = load_seconds

    def load(self):
        if self.load_seconds:
            print(f"CrashingModel {os.getpid()}: loading", flush=True)
            time.sleep(self.load_seconds)
        if self.fail_load:
            raise RuntimeError("CrashingModel cannot load (fail_load)")

    def predict(self, X, features_names=None, meta=None):
        if isinstance(X, dict) and "exit" in X:
            print(f"CrashingModel {os.getpid()}: exiting with {X['exit']}", flush=True)
            os._exit(int(X["exit"]))
        return {"pid": os.getpid()}
