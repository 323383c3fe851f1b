"""A KServe transformer in front of a predictor: ``python -m mymodel.transformer``.

KServe starts it with ``--model_name``, ``--predictor_host`` (and ``--http_port``). ``preprocess``
turns named records into rows in the trained feature order, the base class's ``predict`` sends
them to the predictor, ``postprocess`` answers the most probable class's name per row.
"""

from __future__ import annotations

from typing import Any

from modelshelf.kserve_model import InvalidInput, Model, ModelServer, model_server_arguments
from mymodel.config import ModelConfig
from mymodel.trainer.postprocessor import Postprocessor
from mymodel.trainer.preprocessor import Preprocessor


class IrisTransformer(Model):
    def __init__(self, name: str, predictor_host: str, protocol: str = "v1") -> None:
        super().__init__(name, predictor_host, protocol)
        config = ModelConfig()
        self.preprocessor = Preprocessor(config.features)
        self.postprocessor = Postprocessor(config.classes)
        self.ready = True

    def preprocess(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        try:
            return {"instances": self.preprocessor(payload["instances"]).tolist()}
        except (KeyError, ValueError) as exc:
            raise InvalidInput(f"expected named records in instances: {exc}") from exc

    def postprocess(self, result: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return {"predictions": self.postprocessor.labels(result["predictions"])}


if __name__ == "__main__":
    args = model_server_arguments()
    if not args.predictor_host:
        raise SystemExit("--predictor_host (or PREDICTOR_HOST) is required")
    model = IrisTransformer(args.model_name, args.predictor_host, args.protocol)
    ModelServer().start([model])
