"""The package's own tests: ``python -m pytest mymodel`` from the template's folder.

Train, save, load through the repository, and call the serving class as the server calls it.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelshelf.kserve_model import InvalidInput
from mymodel.config import ModelConfig
from mymodel.inferencer.model import IrisModel
from mymodel.trainer.__main__ import main as train

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    assert train(["--output", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def served(model_dir):
    model = IrisModel("mymodel", str(model_dir))
    assert model.load() and model.ready
    return model


def test_predictions_are_the_trained_models_probabilities(served, model_dir):
    from mymodel.trainer.model import IrisClassifier

    expected = IrisClassifier.load(model_dir).predict_proba(np.array(ROWS))
    answer = served({"instances": ROWS})
    np.testing.assert_array_equal(answer["predictions"], expected)
    assert np.argmax(answer["predictions"], axis=1).tolist() == [0, 2]


def test_records_are_ordered_by_the_trained_features(served):
    features = ModelConfig().features
    records = [dict(reversed(list(zip(features, row, strict=True)))) for row in ROWS]
    assert served({"instances": records}) == served({"instances": ROWS})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": ROWS}, 'expected {"instances"'),
        ({"instances": [[1.0, 2.0]]}, "instances[0]: expected 4 values"),
        ({"instances": [{"sepal_length": 1.0}]}, "instances[0]: missing sepal_width"),
    ],
)
def test_bad_payloads_are_invalid_input(served, payload, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("{", r"\{")):
        served(payload)


def test_a_missing_model_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no model\.joblib"):
        IrisModel("mymodel", str(tmp_path)).load()
