"""Small real models the tests serve, trained in a few milliseconds on bundled data sets."""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.datasets import load_diabetes, load_iris
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

IRIS = load_iris()
IRIS_X = IRIS.data
IRIS_Y = IRIS.target_names[IRIS.target]
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

TEXTS = [
    "great product, works well",
    "terrible, broke after a day",
    "really love it",
    "awful support and bad quality",
    "excellent value, very good",
    "worst purchase ever, bad",
]
TEXT_LABELS = ["pos", "neg", "pos", "neg", "pos", "neg"]


def save(model: object, folder: Path, name: str = "model.joblib") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / name)
    return folder


def iris_classifier() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS_Y)


def iris_frame_pipeline():
    """A pipeline fitted on a DataFrame: it knows its columns' names (feature_names_in_)."""
    frame = pd.DataFrame(IRIS_X, columns=IRIS_COLUMNS)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, IRIS_Y)


#: Rows of a table with a text, an integer-coded and a number column.
HOUSES = pd.DataFrame(
    {
        "city": ["oslo", "rome", "lima", "oslo", "rome", "lima", "oslo", "lima"],
        "floor": [1, 2, 3, 1, 2, 3, 2, 1],
        "area": [50.0, 72.5, 31.0, 90.0, 44.0, 65.5, 80.0, 38.0],
    }
)
HOUSE_LABELS = ["no", "yes", "no", "yes", "no", "yes", "yes", "no"]


def houses_pipeline():
    """A ColumnTransformer pipeline over a text, an integer-coded and a number column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    columns = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("floor", OneHotEncoder(handle_unknown="ignore"), [1]),  # by position
            ("area", StandardScaler(), ["area"]),
        ]
    )
    return make_pipeline(columns, LogisticRegression()).fit(HOUSES, HOUSE_LABELS)


#: Flats whose postal ``code`` is text that reads as a number: "06" is a category, not 6.
FLATS = pd.DataFrame(
    {
        "city": ["paris", "lyon", "paris", "nice", "lyon", "nice", "paris", "lyon"],
        "rooms": [2, 3, 1, 4, 2, 3, 5, 1],
        "area": [50.0, 72.5, 31.0, 90.0, 44.0, 65.5, 80.0, 38.0],
        "code": ["12", "69", "12", "06", "03", "06", "15", "69"],
    }
)
FLAT_LABELS = ["no", "yes", "no", "yes", "no", "yes", "yes", "no"]


def flats_pipeline():
    """A ColumnTransformer pipeline one-hot encoding two text columns, one of numeric text."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    columns = ColumnTransformer(
        [
            ("text", OneHotEncoder(handle_unknown="ignore"), ["city", "code"]),
            ("numbers", StandardScaler(), ["rooms", "area"]),
        ]
    )
    return make_pipeline(columns, LogisticRegression()).fit(FLATS, FLAT_LABELS)


def diabetes_regressor() -> LinearRegression:
    data = load_diabetes()
    return LinearRegression().fit(data.data, data.target)


def text_pipeline():
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, TEXT_LABELS)


def iris_scaler() -> StandardScaler:
    return StandardScaler().fit(IRIS_X)


def svc_without_proba() -> SVC:
    return SVC().fit(IRIS_X, IRIS_Y)


def pickle_from_other_version(model: object, folder: Path) -> Path:
    """Save ``model`` so that it claims another scikit-learn version (warns when unpickled)."""
    save(model, folder)
    path = folder / "model.joblib"
    current = sklearn.__version__.encode()
    other = re.sub(rb"\d", b"0", current)
    data = path.read_bytes()
    assert current in data
    path.write_bytes(data.replace(current, other))
    return folder


def unimportable_pickle(folder: Path) -> Path:
    """A pickle naming a class its module lacks: what a model from another scikit-learn version
    raises when unpickled (``AttributeError: Can't get attribute ...``)."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(iris_classifier())
    assert b"LogisticRegression" in data
    data = data.replace(b"LogisticRegression", b"LogisticRegressioX")
    (folder / "model.pkl").write_bytes(data)
    return folder


def rows(n: int = 3) -> np.ndarray:
    return IRIS_X[:: max(1, len(IRIS_X) // n)][:n]


def assert_same_predictions(ours: object, theirs: object) -> None:
    """A served answer equals scikit-learn's in this process: labels exactly, numbers within
    rounding (1e-12 relative): scikit-learn's own last bits differ between a row alone and the
    same row in a batch (BLAS)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    if theirs.dtype.kind in "fc":
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    else:
        np.testing.assert_array_equal(ours, theirs)
