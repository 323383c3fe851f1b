"""Serving: ``python -m mymodel.inferencer`` serves the saved model (every protocol, metrics)."""

from mymodel.inferencer.model import IrisModel
from mymodel.inferencer.repository import ModelRepository

__all__ = ["IrisModel", "ModelRepository"]
