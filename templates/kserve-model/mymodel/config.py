"""What the trainer trains, in one place: features, classes and hyperparameters.

Saved beside the model (``config.json``) so the inferencer reads the same feature order and
class names the model was trained with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONFIG_FILE = "config.json"


@dataclass
class ModelConfig:
    """The example: iris, four measurements, three species, a scaled logistic regression."""

    features: list[str] = field(
        default_factory=lambda: ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    )
    classes: list[str] = field(default_factory=lambda: ["setosa", "versicolor", "virginica"])
    regularisation: float = 1.0  # LogisticRegression's C
    max_iter: int = 500
    test_fraction: float = 0.25
    seed: int = 0

    def save(self, folder: Path) -> Path:
        path = Path(folder) / CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ModelConfig:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text()))
