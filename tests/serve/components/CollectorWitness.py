"""MODEL for the cold-start test: counts the garbage collector's automatic passes from the
import of this module (in ``modelshelf serve``'s parent) to the end of ``__init__``, while
both allocate what a framework's import would, and answers them with the collector's state in
the worker that serves: ``[[passes, enabled, first threshold, frozen objects > 100,000]]``."""

import gc

passes = []


def _count(phase, info):
    if phase == "start":
        passes.append(info["generation"])


gc.callbacks.append(_count)
TABLES = [[i] for i in range(100_000)]  # a running collector makes ~140 passes over these


class CollectorWitness:
    def __init__(self) -> None:
        self.model = [[i] for i in range(100_000)]
        gc.callbacks.remove(_count)
        self.passes_while_built = len(passes)

    def predict(self, X, features_names=None, meta=None):
        state = [gc.isenabled(), gc.get_threshold()[0], gc.get_freeze_count() > 100_000]
        return [[self.passes_while_built, *(int(value) for value in state)]]
