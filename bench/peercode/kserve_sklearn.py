"""A scikit-learn model on KServe's own ModelServer, for the benchmark only.

KServe's sklearnserver is not published on PyPI (only the ``kserve`` package is), so this is the
smallest model class that serves the same thing on the same server: the joblib estimator's
``predict_proba`` over the V1 protocol's ``instances``, and over the Open Inference Protocol
(V2 REST and gRPC, which the ModelServer serves on ``--grpc_port``), where it reads the request
and writes the answer with KServe's own helpers, as its sklearnserver does. Runs in
bench/peers/kserve's venv.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from kserve import InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnProba(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.estimator: Any = None

    def load(self) -> bool:
        self.estimator = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return self.ready

    def predict(
        self, payload: dict | InferRequest, headers: dict | None = None
    ) -> dict | InferResponse:
        if isinstance(payload, InferRequest):  # V2 REST or gRPC
            rows = get_predict_input(payload)
            return get_predict_response(payload, self.estimator.predict_proba(rows), self.name)
        rows = np.asarray(payload["instances"], dtype=np.float64)
        return {"predictions": self.estimator.predict_proba(rows).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser], conflict_handler="resolve")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--model_name", default="iris")
    args, _ = parser.parse_known_args()
    model = SKLearnProba(args.model_name, args.model_dir)
    model.load()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers).start(
        [model]
    )
