"""What a fitted scikit-learn model reveals about the type of each input column: the values its
encoders learnt (``categories_``) or the statistics its imputers learnt (``statistics_``) are
in the column's own type. One derivation for every use: V2 metadata types the model's inputs
with it (``serve.server_methods.column_datatypes``), and ``SKLearnServer`` keeps text columns
text in rows that seldon-core hands over as text (``inputs.as_frame``'s ``text_columns``).
Duck-typed on fitted attributes: scikit-learn is not imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def learnt_column_dtypes(model: Any) -> dict[str, np.dtype] | None:
    """For a model that takes its input column by column -- a ``ColumnTransformer``, at the
    start of a pipeline or alone -- the dtype of each column its encoders reveal. Columns it
    does not reveal are absent (their type is unknown). ``None`` for any other model: it takes
    one array, named columns or not."""
    first = _first_step(model)
    fitted = getattr(first, "transformers_", None)
    names = getattr(first, "feature_names_in_", None)
    if not isinstance(fitted, list):
        return None
    found: dict[str, np.dtype] = {}
    for entry in fitted:
        if not isinstance(entry, tuple) or len(entry) != 3:
            continue
        _, transformer, columns = entry
        columns = _column_names(columns, names)
        learnt = _learnt_values(transformer)
        if not columns or learnt is None:
            continue
        for column, values in zip(columns, learnt, strict=False):
            if isinstance(values, np.ndarray):
                found[column] = _dtype_of_values(values)
    return found


def learnt_text_columns(model: Any) -> frozenset[str]:
    """The columns whose learnt values are text (strings): "12" in one is a category, not a
    number. Empty when the model reveals none."""
    dtypes = learnt_column_dtypes(model) or {}
    return frozenset(name for name, dtype in dtypes.items() if dtype.kind in "OUS")


def _column_names(columns: Any, names: Any) -> list[str]:
    """A ``ColumnTransformer`` entry's columns as names (names, or positions among
    ``feature_names_in_``); ``[]`` for other selectors (slices, masks)."""
    if isinstance(columns, str):
        return [columns]
    if not isinstance(columns, list | tuple | np.ndarray) or not len(columns):
        return []
    if all(isinstance(c, str) for c in columns):
        return [str(c) for c in columns]
    positions = all(
        isinstance(c, int | np.integer) and not isinstance(c, bool | np.bool_) for c in columns
    )
    return [str(names[int(c)]) for c in columns] if positions and names is not None else []


def _learnt_values(transformer: Any) -> list[Any] | None:
    """Per input column, values the fitted transformer learnt in the column's own type."""
    steps = [s for _, s in transformer.steps] if hasattr(transformer, "steps") else [transformer]
    for step in steps:
        categories = getattr(step, "categories_", None)
        if isinstance(categories, list):
            return categories
        statistics = getattr(step, "statistics_", None)
        if isinstance(statistics, np.ndarray) and statistics.ndim == 1:
            return [statistics[i : i + 1] for i in range(len(statistics))]
    return None


def _dtype_of_values(values: np.ndarray) -> np.dtype:
    """``values``' dtype; for objects holding no text, the dtype of the numbers they hold. An
    imputer over a text and a number column keeps one object array of statistics, and an
    object column of integers gives object categories: neither makes a number column text."""
    if values.dtype.kind != "O" or any(isinstance(v, str | bytes) for v in values):
        return values.dtype
    found = np.asarray(values.tolist())
    return found.dtype if found.dtype.kind in "biuf" else values.dtype


def ignores_extra_columns(model: Any) -> bool:
    """Whether the model ignores columns it was not fitted on: a ``ColumnTransformer`` fitted on
    a DataFrame (alone or a pipeline's first step) takes its columns by name from whatever
    frame it is given, extra ones included (scikit-learn allows them). Other estimators fitted
    on a DataFrame refuse a name they did not see ("Feature names unseen at fit time")."""
    first = _first_step(model)
    return (
        isinstance(getattr(first, "transformers_", None), list)
        and getattr(first, "feature_names_in_", None) is not None
    )


def _first_step(model: Any) -> Any:
    """The model that first sees the input: a pipeline's first step (nested ones too)."""
    while hasattr(model, "steps") and model.steps:
        model = model.steps[0][1]
    return model
