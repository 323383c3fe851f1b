"""Entry module for ``seldon-core-microservice SKLearnServer``: the class lives in modelshelf."""

from modelshelf.frameworks.sklearn import SKLearnServer

__all__ = ["SKLearnServer"]
