"""Training: ``python -m mymodel.trainer --output DIR`` builds, trains, evaluates and saves."""

from mymodel.trainer.model import IrisClassifier
from mymodel.trainer.postprocessor import Postprocessor
from mymodel.trainer.preprocessor import Preprocessor

__all__ = ["IrisClassifier", "Postprocessor", "Preprocessor"]
