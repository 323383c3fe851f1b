"""Entry module for ``seldon-core-microservice MLFlowServer``: the class lives in modelshelf.

The environment folder ``before-run`` filled (``MODELSHELF_ENV_DIR``) goes first on the import
path before anything of the model is imported. MLflow is imported here, in seldon-core's parent
process, so the REST workers and the gRPC child it forks share that import.
"""

from modelshelf.environment import activate

activate()

from modelshelf.frameworks.mlflow import MLFlowServer, import_mlflow_before_fork  # noqa: E402

import_mlflow_before_fork()

__all__ = ["MLFlowServer"]
