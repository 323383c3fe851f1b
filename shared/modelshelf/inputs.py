"""Request payloads in the shapes frameworks take: 2-D numbers, or a DataFrame in a model's
column order. Shared by every server so that the same bad payload gets the same 400 everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError


def as_2d_numbers(X: Any, n_features: int | None, what: str = "the input") -> np.ndarray:
    """``X`` as a 2-D float array with ``n_features`` columns, or a 400 that says what was wrong."""
    if (  # what seldon-core hands over for an ``ndarray`` of numbers: nothing to convert
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype.kind in "biuf"
        and X.shape[0]
        and (n_features is None or X.shape[1] == n_features)
    ):
        return X
    if isinstance(X, dict | str | bytes):
        raise BadRequestError(
            f"{what} must be an array of rows of numbers (ndarray or tensor), "
            f"got {type(X).__name__}"
        )
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # ragged nested lists
        raise BadRequestError(f"{what} must be a rectangular array of rows: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise BadRequestError(
                f"{what} must hold numbers only; could not read {_sample(arr)} as a number"
            ) from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1) if n_features is not None and arr.size == n_features else arr
    if arr.ndim != 2:
        raise BadRequestError(f"{what} must be 2-D (rows x features), got shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise BadRequestError(f"{what} is empty: expected at least one row")
    if n_features is not None and arr.shape[1] != n_features:
        raise BadRequestError(f"expected {n_features} features per row, got {arr.shape[1]}")
    return arr


def _sample(arr: np.ndarray) -> str:
    for value in arr.ravel()[:1000]:
        try:
            float(value)
        except (ValueError, TypeError):
            return repr(value.item() if hasattr(value, "item") else value)
    return "a value"


def as_frame(
    X: Any, names: Any, columns: list[str] | None, what: str = "the model's columns"
) -> Any:
    """A DataFrame in ``columns``' order, from rows plus ``names`` or from ``jsonData`` (records
    or a mapping of columns); names that do not match ``columns`` get a 400 naming both."""
    import pandas as pd

    if _is_records(X):
        frame = pd.DataFrame(X)
    else:
        if isinstance(X, str | bytes):
            raise BadRequestError(
                f"expected rows of values for {what} {columns} (ndarray with names, or jsonData "
                f"records), got {type(X).__name__}"
            )
        arr = X if isinstance(X, np.ndarray) else np.asarray(X, dtype=object)
        if arr.ndim == 1 and columns and arr.size == len(columns):
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise BadRequestError(
                f"expected rows of values for {what} {columns} (ndarray with names, or jsonData "
                f"records), got shape {list(arr.shape)}"
            )
        given = [str(n) for n in names] if names is not None and len(names) else columns
        if given is None:
            given = [str(i) for i in range(arr.shape[1])]
        if len(given) != arr.shape[1]:
            raise BadRequestError(f"expected {len(given)} features per row, got {arr.shape[1]}")
        frame = pd.DataFrame(arr, columns=given)
        if arr.dtype.kind in "OUS":
            frame = frame.apply(_numbers_where_possible)
    if not columns:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in columns]
    if missing or extra:
        raise BadRequestError(
            f"names do not match {what} {columns}: missing {missing}, unexpected {extra}"
        )
    return frame[columns]


def _is_records(X: Any) -> bool:
    if isinstance(X, dict):
        return True
    return isinstance(X, list) and bool(X) and all(isinstance(row, dict) for row in X)


def _numbers_where_possible(column: Any) -> Any:
    import pandas as pd

    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


class RowReader:
    """A request's rows as numbers in the model's feature order: ``ndarray`` / ``tensor`` rows in
    order, or reordered by the request's ``names``; ``jsonData`` records (a list of objects) or
    columns (an object of lists) matched by name. Names that do not match the model's features
    are a 400 that lists the missing and the unexpected."""

    def __init__(self, feature_names: Sequence[str] | None, n_features: int | None) -> None:
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
        """Where each of the model's features sits among the request's ``names``."""
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
                "jsonData needs a model with feature names; this model has none, so send "
                f"rows of {self.n_features or 'its'} numbers (ndarray or tensor)"
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


def as_texts(X: Any) -> list[str]:
    """One text per row (a string, ``[n]`` or ``[n, 1]``), for models that take raw strings."""
    if isinstance(X, bytes):
        X = X.decode("utf-8", errors="replace")
    if isinstance(X, str):
        return [X]
    arr = np.asarray(X, dtype=object)
    if arr.size == 0:
        raise BadRequestError("the input is empty: expected one or more texts")
    if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
        raise BadRequestError(
            f"expected one text per row (shape [n] or [n, 1]), got shape {list(arr.shape)}"
        )
    texts = arr.ravel().tolist()
    for value in texts:
        if not isinstance(value, str):
            raise BadRequestError(f"expected texts (strings), got {value!r}")
    return texts
