"""Entry module for ``seldon-core-microservice XGBoostServer``: the class lives in modelshelf."""

from modelshelf.frameworks.xgboost import XGBoostServer

__all__ = ["XGBoostServer"]
