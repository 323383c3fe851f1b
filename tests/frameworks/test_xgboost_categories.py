"""The categories an XGBoost model stored, read at load, and what each kind of categorical model
takes: text categories, number categories, categories XGBoost cannot give back (non-ASCII text),
none at all (trained on codes). Compared with XGBoost's own ``get_categories`` and ``predict``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import xgboost_models as xm
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.xgboost import XGBoostServer
from modelshelf.frameworks.xgboost._description import trained_categories

N = 400


def mixed_frame(text: list[str]) -> pd.DataFrame:
    """A text category column in a chosen (unsorted) order, a number one, a number category."""
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "shade": pd.Categorical(rng.choice(text, N), categories=text),
            "size": rng.random(N),
            "grade": pd.Categorical(rng.choice([3, 5, 7], N)),
        }
    )


def fitted(frame: pd.DataFrame) -> xgb.XGBRegressor:
    y = frame["shade"].cat.codes * 2.0 + frame["grade"].cat.codes + frame["size"]
    model = xgb.XGBRegressor(enable_categorical=True, tree_method="hist", n_estimators=8)
    return model.fit(frame, y)


@pytest.mark.parametrize("name", ["model.json", "model.ubj", "model.joblib"])
def test_categories_are_those_xgboost_gives_back(tmp_path, name):
    model = fitted(mixed_frame(["teal", "amber", "coral"]))
    if name == "model.joblib":
        xm.save_pickle(model, tmp_path)
    else:
        model.save_model(str(tmp_path / name))
    server = XGBoostServer(str(tmp_path))
    server.load()
    own = server.booster.get_categories(export_to_arrow=True).to_arrow()
    assert server.categories == {
        feature: values.to_pylist() for feature, values in own if values is not None
    }
    assert server.categories["shade"] == ["teal", "amber", "coral"]  # training order, not sorted


def test_number_categories_take_numbers_or_their_text(tmp_path):
    frame = mixed_frame(["teal", "amber", "coral"])
    model = fitted(frame)
    model.save_model(str(tmp_path / "model.json"))
    server = XGBoostServer(str(tmp_path))
    server.load()
    rows = np.array([["amber", 0.2, 5], ["coral", 0.7, "7"], ["teal", 0.1, 4]], dtype=object)
    reference = pd.DataFrame(
        {
            "shade": pd.Categorical(
                ["amber", "coral", "teal"], categories=["teal", "amber", "coral"]
            ),
            "size": [0.2, 0.7, 0.1],
            "grade": pd.Categorical([5, 7, None], categories=[3, 5, 7]),  # 4: unseen, missing
        }
    )
    found = server.predict(rows, ["shade", "size", "grade"])
    np.testing.assert_allclose(found, model.predict(reference), rtol=1e-6)


def test_non_ascii_categories_take_codes_and_say_why_not_text(tmp_path):
    """XGBoost 3.2 stores as many UTF-8 bytes as characters: "rød" comes back cut short (its
    own ``get_categories`` too), so every categorical column takes codes and text is a 400
    saying why."""
    frame = mixed_frame(["rød", "grøn", "blå"])
    model = fitted(frame)
    model.save_model(str(tmp_path / "model.json"))
    assert trained_categories(model.get_booster()) == {"shade": None, "grade": [3, 5, 7]}
    server = XGBoostServer(str(tmp_path))
    server.load()
    # Every categorical column takes codes then: 1 is "grøn", 1 is grade 5.
    found = server.predict(np.array([[1, 0.5, 1]]), ["shade", "size", "grade"])
    np.testing.assert_allclose(found, model.predict(frame.iloc[:0].pipe(_row, "grøn", 0.5, 5)))
    with pytest.raises(BadRequestError, match=r"'shade' takes category codes.*'rød'.*not ASCII"):
        server.predict(np.array([["rød", 0.5, 5]], dtype=object), ["shade", "size", "grade"])


def _row(empty: pd.DataFrame, shade: str, size: float, grade: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "shade": pd.Categorical([shade], dtype=empty["shade"].dtype),
            "size": [size],
            "grade": pd.Categorical([grade], dtype=empty["grade"].dtype),
        }
    )


def test_a_model_trained_on_codes_keeps_reading_numbers(tmp_path):
    """Categorical by ``feature_types`` but no categories stored: the rows of numbers path."""
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.integers(0, 3, N), rng.random(N)]).astype(float)
    data = xgb.DMatrix(
        X,
        X[:, 0] + X[:, 1],
        feature_types=["c", "q"],
        feature_names=["shade", "size"],
        enable_categorical=True,
    )
    booster = xgb.train({"tree_method": "hist", "nthread": 1}, data, 5)
    assert trained_categories(booster) == {}
    server = XGBoostServer(str(xm.save_booster(booster, tmp_path)))
    server.load()
    assert type(server.read_rows).__name__ == "RowReader"
    np.testing.assert_allclose(
        server.predict(X[:5], ["shade", "size"]), booster.inplace_predict(X[:5])
    )
