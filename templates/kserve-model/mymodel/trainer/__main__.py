"""``python -m mymodel.trainer --output DIR [--config config.json]``: train the example model.

Prints the evaluation; DIR then holds ``model.joblib`` and ``config.json``, the folder to upload
to your bucket (the InferenceService's ``storageUri``) or to serve locally as ``MODEL_DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from mymodel.config import ModelConfig
from mymodel.trainer.model import IrisClassifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mymodel.trainer")
    parser.add_argument("--output", type=Path, required=True, help="folder to save the model in")
    parser.add_argument("--config", type=Path, help="a JSON file of ModelConfig's fields")
    args = parser.parse_args(argv)
    config = ModelConfig(**json.loads(args.config.read_text())) if args.config else ModelConfig()
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=config.test_fraction, random_state=config.seed, stratify=y
    )
    model = IrisClassifier(config)
    model.build()
    model.train(X_train, y_train)
    scores = model.evaluate(X_test, y_test)
    path = model.save(args.output)
    print(json.dumps({"saved": str(path), **scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
