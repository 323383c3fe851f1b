"""The model's output to what clients read: probabilities per class, or the class names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Postprocessor:
    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)

    def probabilities(self, scores: np.ndarray) -> list[list[float]]:
        return np.asarray(scores, dtype=float).tolist()

    def labels(self, scores: np.ndarray) -> list[str]:
        """The most probable class of each row, by name."""
        return [self.classes[i] for i in np.asarray(scores).argmax(axis=1)]
