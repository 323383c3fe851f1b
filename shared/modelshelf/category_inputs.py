"""Rows for a model with categorical features whose categories it recorded (XGBoost >= 3.1
stores them in the model): a DataFrame in the model's column order, each categorical column a
pandas ``Categorical`` of the categories the model was trained with, each other column numbers.

The categories come from the model, never from the request: a ``Categorical`` of the request's
own values codes ``purple`` as whatever code it gets among them, and XGBoost re-codes an
unseen category onto a trained one. Here a value the model never saw has no code, so it is a
missing value, as XGBoost's own predict takes it in a frame of the trained categories (each
tree's default branch). Numbers in a column of text categories are codes (what clients sent
before: XGBoost reads an array's values as codes); a number that codes no category is a 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError
from modelshelf.inputs import RowReader, as_frame, pandas_module, quoted, typed_values


class CategoryFrameReader(RowReader):
    """A request's rows (Seldon ``names`` + ``ndarray``, ``jsonData`` records, V2 tensors per
    column, KServe V1 instances or records) as the DataFrame the model expects.

    ``categories``: column -> its trained categories in code order, or ``None`` for a column
    whose categories could not be read: then every categorical column takes codes, in an array
    of numbers (XGBoost refuses a DataFrame whose category column is not its categories)."""

    def __init__(
        self, feature_names: Sequence[str], categories: Mapping[str, Sequence[Any] | None]
    ) -> None:
        super().__init__(feature_names, len(feature_names))
        pd = pandas_module()  # at load, not by the first request
        self.columns = list(feature_names)
        self.dtypes = {
            name: pd.CategoricalDtype(list(values))
            for name, values in categories.items()
            if values is not None
        }
        self.unreadable = frozenset(name for name, values in categories.items() if values is None)
        #: Whether rows become a DataFrame of categories; else (a column whose categories
        #: cannot be read) an array of numbers, categories as codes.
        self.takes_frames = not self.unreadable
        #: Columns of text categories: "12" there is a category, not the number 12.
        self.text_columns = (
            frozenset(
                name
                for name, dtype in self.dtypes.items()
                if all(isinstance(c, str) for c in dtype.categories)
            )
            | self.unreadable
        )

    def __call__(self, X: Any, names: Any) -> Any:
        pd = pandas_module()
        frame = as_frame(
            X, names, self.columns, "the model's features", text_columns=self.text_columns
        )
        if self.unreadable:  # codes in every column, as XGBoost reads an array's values
            return np.column_stack(
                [
                    self._codes_only(name, frame[name].to_numpy())
                    if name in self.unreadable
                    else typed_values(frame[name].to_numpy(), "float64", name)
                    for name in self.columns
                ]
            )
        columns = {}
        for name in self.columns:
            values = frame[name].to_numpy()
            if name in self.dtypes:
                columns[name] = self._categorical(name, values)
            else:
                columns[name] = typed_values(values, "float64", name)
        return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)), copy=False)

    def _categorical(self, name: str, values: np.ndarray) -> Any:
        pd = pandas_module()
        dtype = self.dtypes[name]
        if name not in self.text_columns:  # number categories: numbers are the categories
            return pd.Categorical(typed_values(values, "float64", name), dtype=dtype)
        if values.dtype.kind in "biuf" or any(_is_number(v) for v in values):
            values = np.array([self._category_of(name, v) for v in values], dtype=object)
        return pd.Categorical(values, dtype=dtype)

    def _category_of(self, name: str, value: Any) -> Any:
        """A number's category (it is a code), else the value as it is."""
        if not _is_number(value):
            return value
        number = float(value)
        if math.isnan(number):
            return None
        categories = self.dtypes[name].categories
        if not number.is_integer() or not 0 <= number < len(categories):
            shown = ", ".join(quoted(c) for c in categories[:10])
            more = ", …" if len(categories) > 10 else ""
            raise BadRequestError(
                f"column {name!r}: {quoted(value)} is no category of this model; expected one "
                f"of its categories ({shown}{more}) or a code 0..{len(categories) - 1}"
            )
        return categories[int(number)]

    def _codes_only(self, name: str, values: np.ndarray) -> np.ndarray:
        for value in values:
            if not _is_number(value) and value is not None:
                raise BadRequestError(
                    f"column {name!r} takes category codes (numbers), got {quoted(value)}: this "
                    "model's categories are not ASCII text, which XGBoost 3.2 stores cut "
                    "short, so they cannot be read back; send each category's code"
                )
        return typed_values(values, "float64", name)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
