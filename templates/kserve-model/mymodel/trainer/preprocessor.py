"""Requests and training data to the model's input: rows in the trained feature order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class Preprocessor:
    """Rows (lists) pass as they are; records (dicts) are ordered by the trained features."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = list(features)

    def __call__(self, instances: Sequence[Any]) -> np.ndarray:
        if not isinstance(instances, Sequence) or isinstance(instances, str | bytes):
            raise ValueError(f"instances: expected a list of rows, got {type(instances).__name__}")
        rows = [self._row(i, instance) for i, instance in enumerate(instances)]
        return np.asarray(rows, dtype=float).reshape(len(rows), len(self.features))

    def _row(self, index: int, instance: Any) -> list[Any]:
        if isinstance(instance, Mapping):
            missing = [f for f in self.features if f not in instance]
            if missing:
                raise ValueError(f"instances[{index}]: missing {', '.join(missing)}")
            return [instance[f] for f in self.features]
        if not isinstance(instance, Sequence) or len(instance) != len(self.features):
            raise ValueError(
                f"instances[{index}]: expected {len(self.features)} values "
                f"({', '.join(self.features)}), got {instance!r}"
            )
        return list(instance)
