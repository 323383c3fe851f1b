"""The serving model class, KServe's way: ``load``, then ``preprocess`` → ``predict`` →
``postprocess`` per request, on dict payloads. Written against ``kserve.Model``'s API; the
import is modelshelf's, which serves it with every protocol and modelshelf's metrics."""

from __future__ import annotations

from typing import Any

from modelshelf.kserve_model import InvalidInput, Model
from mymodel.inferencer.repository import ModelRepository
from mymodel.trainer.postprocessor import Postprocessor
from mymodel.trainer.preprocessor import Preprocessor


class IrisModel(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.repository = ModelRepository(model_dir)
        self.classifier = None

    def load(self) -> bool:
        self.classifier = self.repository.load()
        config = self.classifier.config
        self.preprocessor = Preprocessor(config.features)
        self.postprocessor = Postprocessor(config.classes)
        self.ready = True
        return self.ready

    def preprocess(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        if "instances" not in payload:
            raise InvalidInput('expected {"instances": [[...], ...]}')
        try:
            return self.preprocessor(payload["instances"])
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        scores = self.classifier.predict_proba(payload)
        return {"predictions": self.postprocessor.probabilities(scores)}
