"""The same steps on top of ``MLFlowServer``: an MLflow model (pip environment and all, see
``before-run`` in servers/mlflowserver) with pre- and post-processing in one container.

    seldon-core-microservice MyMLflowIrisServer --parameters \\
      '[{"name":"model_uri","value":"/path/to/mlflow-model","type":"STRING"}]'
"""

from __future__ import annotations

from typing import Any

from iris_steps import IrisSteps

from modelshelf.frameworks.mlflow import MLFlowServer


class MyMLflowIrisServer(IrisSteps, MLFlowServer):
    """``MLFlowServer`` with millimetres in and labels out; the flavor's ``predict_proba`` gives
    the probabilities the post-processing needs (pyfunc's ``predict`` gives labels only)."""

    def __init__(self, model_uri: str, method: str = "predict_proba", **kwargs: Any) -> None:
        super().__init__(model_uri, method=method, **kwargs)
