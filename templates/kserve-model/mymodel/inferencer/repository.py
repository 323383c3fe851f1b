"""The model repository: where the saved model is, and loading it.

``MODEL_DIR`` is a local folder (KServe's storage initializer filled ``/mnt/models``) or, outside
KServe, any URI modelshelf's storage reads (``s3://``, ``gs://``, ``https://``…): it is downloaded
once into modelshelf's cache.
"""

from __future__ import annotations

from pathlib import Path

from modelshelf.kserve_model import Storage
from mymodel.trainer.model import MODEL_FILE, IrisClassifier


class ModelRepository:
    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir

    def local_folder(self) -> Path:
        folder = Path(Storage.download_files(self.model_dir))
        if not (folder / MODEL_FILE).is_file():
            found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            raise FileNotFoundError(
                f"{self.model_dir}: no {MODEL_FILE} (found: {', '.join(found) or 'nothing'}); "
                "train one with python -m mymodel.trainer --output DIR"
            )
        return folder

    def load(self) -> IrisClassifier:
        return IrisClassifier.load(self.local_folder())
