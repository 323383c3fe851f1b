"""MODEL for worker-restart tests: ``{"jsonData": {"exit": code}}`` ends its process at once
(``os._exit``, as a crashing native library would); ``fail_load`` makes ``load()`` raise a
RuntimeError (``fail_load_uri``: modelshelf's ModelLoadError for that URI);
``load_seconds`` makes it take that long (a model downloaded in ``load()``);
``stop_after_load`` sends the server a SIGTERM as ``load()`` returns.
Every answer says which process gave it."""

import os
import signal
import time


class CrashingModel:
    def __init__(
        self,
        fail_load: bool = False,
        load_seconds: float = 0,
        stop_after_load: bool = False,
        fail_load_uri: str = "",
    ) -> None:
        self.fail_load = fail_load
        self.fail_load_uri = fail_load_uri
        self.load_seconds = load_seconds
        self.stop_after_load = stop_after_load

    def load(self):
        if self.load_seconds:
            print(f"CrashingModel {os.getpid()}: loading", flush=True)
            time.sleep(self.load_seconds)
        if self.fail_load_uri:
            from modelshelf.errors import ModelLoadError

            raise ModelLoadError(self.fail_load_uri, "no model file in it; expected model.joblib")
        if self.fail_load:
            raise RuntimeError("CrashingModel cannot load (fail_load)")
        if self.stop_after_load:  # the parent forwards it to this worker, loaded by then
            os.kill(os.getppid(), signal.SIGTERM)

    def predict(self, X, features_names=None, meta=None):
        if isinstance(X, dict) and "exit" in X:
            print(f"CrashingModel {os.getpid()}: exiting with {X['exit']}", flush=True)
            os._exit(int(X["exit"]))
        return {"pid": os.getpid()}
