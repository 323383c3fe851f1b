"""SKLearnServer whose every model call first sleeps ``sleep_seconds``, and which refuses a
request whose first value is ``fail_value`` with an error that cannot be written: its
``__str__`` returns no text (a user's bug). seldon-core's error handler fails on it in turn, so
the front end's call raises instead of answering (the HTTP server answers a bare 500)."""

import time

import numpy as np

from modelshelf.frameworks.sklearn import SKLearnServer


class UnwritableError(Exception):
    def __str__(self):
        return 500  # not a str: str(error) raises TypeError


class UnwritableErrorSKLearnServer(SKLearnServer):
    def __init__(
        self, model_uri: str, sleep_seconds: float = 0.5, fail_value: float = -999.0, **kwargs
    ) -> None:
        super().__init__(model_uri, **kwargs)
        self.sleep_seconds = float(sleep_seconds)
        self.fail_value = float(fail_value)

    def model_input(self, X, names):
        time.sleep(self.sleep_seconds)
        if np.asarray(X).flat[0] == self.fail_value:
            raise UnwritableError()
        return super().model_input(X, names)
