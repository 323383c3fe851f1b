"""Request payloads in the form an MLflow model's signature wants (DataFrame or array), and its
results as arrays for seldon-core."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError
from modelshelf.inputs import as_frame

SIGNATURE = "the model's signature"  # how input errors name the columns' source


def model_input(X: Any, names: Any, as_a_frame: bool, columns: list[str] | None) -> Any:
    """The request's payload as the signature wants it: DataFrame (``as_a_frame``, in
    ``columns``' order when known) or array."""
    if isinstance(X, bytes):
        X = X.decode("utf-8", errors="replace")
    if isinstance(X, str):
        return [X] if not as_a_frame else as_frame([[X]], names, columns, SIGNATURE)
    if as_a_frame:
        return as_frame(X, names, columns, SIGNATURE)
    if isinstance(X, dict):
        raise BadRequestError(
            "this model takes an array (its signature names no columns), got jsonData; send "
            "data.ndarray or data.tensor, or set xtype=DataFrame"
        )
    try:
        arr = np.asarray(X)
    except ValueError as exc:
        raise BadRequestError(f"the input must be a rectangular array: {exc}") from exc
    if arr.size == 0:
        raise BadRequestError(f"the input is empty (shape {list(arr.shape)})")
    return arr


def as_array(result: Any) -> tuple[Any, list[str] | None]:
    """The model's result as seldon-core takes it, and a DataFrame result's column names."""
    if isinstance(result, np.ndarray):
        return result, None
    if isinstance(result, list | tuple):
        return np.asarray(result), None
    pd = sys.modules.get("pandas")  # a pandas result means pandas is imported
    if pd is not None and isinstance(result, pd.DataFrame):
        return result.to_numpy(), [str(c) for c in result.columns]
    if pd is not None and isinstance(result, pd.Series):
        return result.to_numpy(), None
    return result, None
