"""Entry module for ``seldon-core-microservice LightGBMServer``: the class lives in modelshelf."""

from modelshelf.frameworks.lightgbm import LightGBMServer

__all__ = ["LightGBMServer"]
