"""Entry module for ``seldon-core-microservice MLFlowServer`` inside the model's conda
environment (the ``run`` script starts it from there); the class lives in modelshelf. MLflow is
imported here, in seldon-core's parent process, so the processes it forks share that import."""

from modelshelf.frameworks.mlflow import MLFlowServer, import_mlflow_before_fork

import_mlflow_before_fork()

__all__ = ["MLFlowServer"]
