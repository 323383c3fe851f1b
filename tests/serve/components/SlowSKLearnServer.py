"""SKLearnServer whose model call first sleeps ``sleep_seconds``: a batched call that is still
in the model when a gRPC deadline passes (fast path off: the call stays this one)."""

import time

from modelshelf.frameworks.sklearn import SKLearnServer
from modelshelf.server import Method


class SlowSKLearnServer(SKLearnServer):
    def __init__(self, model_uri: str, sleep_seconds: float = 1.0, **kwargs) -> None:
        super().__init__(model_uri, **kwargs)
        self.sleep_seconds = float(sleep_seconds)

    def load_model(self, model_dir) -> None:
        super().load_model(model_dir)
        method = self.method
        own = method.call

        def slow(X):
            time.sleep(self.sleep_seconds)
            return own(X)

        self.method = Method(method.name, slow, method.output_names)
