"""Entry module for ``seldon-core-microservice MLFlowServer`` inside the model's conda
environment (the ``run`` script starts it from there); the class lives in modelshelf."""

from modelshelf.frameworks.mlflow import MLFlowServer

__all__ = ["MLFlowServer"]
