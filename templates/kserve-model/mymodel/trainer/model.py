"""The model itself: build, train, evaluate, save, load. Nothing here knows about serving."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mymodel.config import ModelConfig

MODEL_FILE = "model.joblib"


class IrisClassifier:
    def __init__(self, config: ModelConfig, estimator: Pipeline | None = None) -> None:
        self.config = config
        self.estimator = estimator

    def build(self) -> Pipeline:
        self.estimator = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.config.regularisation, max_iter=self.config.max_iter),
        )
        return self.estimator

    def train(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.estimator is None:
            self.build()
        self.estimator.fit(X, y)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"accuracy": float(self.estimator.score(X, y))}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(X)

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        joblib.dump(self.estimator, folder / MODEL_FILE)
        return folder / MODEL_FILE

    @classmethod
    def load(cls, folder: Path) -> IrisClassifier:
        folder = Path(folder)
        return cls(ModelConfig.load(folder), joblib.load(folder / MODEL_FILE))
