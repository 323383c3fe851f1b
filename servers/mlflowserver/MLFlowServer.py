"""Entry module for ``seldon-core-microservice MLFlowServer``: the class lives in modelshelf.

The environment folder ``before-run`` filled (``MODELSHELF_ENV_DIR``) goes first on the import
path before anything of the model is imported. Seldon-core builds the server object in its parent
process, before it forks: ``MLFlowServer()`` imports MLflow and the model's framework there, once.
"""

from modelshelf.environment import activate

activate()

from modelshelf.frameworks.mlflow import MLFlowServer  # noqa: E402 - after activate(), on purpose

__all__ = ["MLFlowServer"]
