"""A request's rows as a float array in the booster's feature order.

``ndarray`` / ``tensor`` rows are taken in order, or reordered by the request's ``names``;
``jsonData`` records (a list of objects) or columns (an object of lists) are matched by name.
Names that do not match the model's features are a 400 that lists the missing and the unexpected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError
from modelshelf.inputs import as_2d_numbers


class RowReader:
    """Reads request payloads for one booster (its feature names, if any, and their count)."""

    def __init__(self, feature_names: Sequence[str] | None, n_features: int) -> None:
        self.feature_names = list(feature_names) if feature_names else None
        self.n_features = n_features
        self._positions = (
            {name: i for i, name in enumerate(self.feature_names)} if self.feature_names else None
        )

    def __call__(self, X: Any, names: Any) -> np.ndarray:
        if isinstance(X, dict) or (isinstance(X, list) and X and isinstance(X[0], dict)):
            return self._rows_from_records(X)
        arr = as_2d_numbers(X, self.n_features)
        if names is None or not len(names):
            return arr
        names = [str(n) for n in names]
        if len(names) != arr.shape[1]:
            raise BadRequestError(
                f"names has {len(names)} entries but each row has {arr.shape[1]} values"
            )
        if self.feature_names is None or names == self.feature_names:
            return arr
        return arr[:, self._columns_for(names)]

    def _columns_for(self, names: list[str]) -> list[int]:
        """Where each of the booster's features sits among the request's ``names``."""
        assert self.feature_names is not None
        given = {name: i for i, name in enumerate(names)}
        missing = [n for n in self.feature_names if n not in given]
        extra = [n for n in names if self._positions and n not in self._positions]
        if missing or extra or len(given) != len(names):
            raise BadRequestError(
                f"names do not match the model's features {self.feature_names}: "
                f"missing {missing}, unexpected {extra}"
            )
        return [given[n] for n in self.feature_names]

    def _rows_from_records(self, X: Any) -> np.ndarray:
        """``jsonData`` as records (a list of objects) or columns (an object of lists)."""
        if self.feature_names is None:
            raise BadRequestError(
                "jsonData needs a model with feature names; this booster has none, so send "
                f"rows of {self.n_features} numbers (ndarray or tensor)"
            )
        if isinstance(X, dict):
            given = list(X)
            try:
                columns = [np.atleast_1d(np.asarray(X[n], dtype=object)) for n in given]
                rows = np.column_stack(columns) if columns else np.empty((0, 0))
            except ValueError as exc:
                raise BadRequestError(f"jsonData columns must have equal lengths: {exc}") from exc
        else:
            if not all(isinstance(r, dict) for r in X):
                raise BadRequestError("jsonData must be a list of objects or an object of lists")
            given = list(X[0])
            try:
                rows = np.array([[r[n] for n in given] for r in X], dtype=object)
            except KeyError as exc:
                raise BadRequestError(f"jsonData record without field {exc}") from exc
        arr = as_2d_numbers(rows, len(given), what="jsonData")
        return arr[:, self._columns_for([str(n) for n in given])]
