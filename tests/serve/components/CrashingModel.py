"""MODEL for worker-restart tests: ``{"jsonData": {"exit": code}}`` ends its process at once
(``os._exit``, as a crashing native library would); ``fail_load`` makes ``load()`` raise.
Every answer says which process gave it."""

import os


class CrashingModel:
    def __init__(self, fail_load: bool = False) -> None:
        self.fail_load = fail_load

    def load(self):
        if self.fail_load:
            raise RuntimeError("CrashingModel cannot load (fail_load)")

    def predict(self, X, features_names=None, meta=None):
        if isinstance(X, dict) and "exit" in X:
            print(f"CrashingModel {os.getpid()}: exiting with {X['exit']}", flush=True)
            os._exit(int(X["exit"]))
        return {"pid": os.getpid()}
