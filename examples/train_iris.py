"""Train the bundled example: an iris LogisticRegression whose classes are the species' names.

Trained at `make serve` time rather than shipped, so the pickle always matches the installed
scikit-learn (a pickle from another version is exactly what users trip over).
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def train_iris(folder: Path) -> Path:
    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target_names[iris.target])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.joblib"
    joblib.dump(model, path)
    return path


if __name__ == "__main__":
    print(train_iris(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/iris")))
