"""Request payloads in the form an MLflow model's signature wants (DataFrame or array), and its
results as arrays for seldon-core."""

from __future__ import annotations

import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError
from modelshelf.inputs import as_frame, typed_values

SIGNATURE = "the model's signature"  # how input errors name the columns' source
FITTED = "the columns the model was fitted on"  # ... for a model without signature
#: Tensor dtypes ``modelshelf.inputs.typed_values`` casts to by name (the others: numpy's cast).
_TENSOR_KINDS = {"float64", "float32", "int64", "int32"}


@dataclass(frozen=True)
class RequestReader:
    """Reads a request's payload as the signature wants it, built once at load: a DataFrame
    (``as_a_frame``) in ``columns``' order, each column cast to its ``column_types`` entry
    (``what`` says in a 400 where the columns come from; without a signature, the fitted ones
    keep their ``text_columns`` text, as ``SKLearnServer`` does); columns beyond them dropped
    with ``drop_extra`` (a signature's, as MLflow drops them; a model that ignores them), else
    refused by name; or
    an array (or a mapping of named arrays) of the signature's tensor dtypes (``tensor_types``,
    name ``None`` for the one unnamed tensor). What JSON and seldon-core make of a value --
    ``3`` as ``3.0``, ``true`` as ``"True"`` in a row with text -- does not matter; a value
    that cannot be cast is a 400 naming the column (or tensor), the value and the type."""

    as_a_frame: bool
    columns: list[str] | None = None
    column_types: dict[str, str] | None = None
    tensor_types: dict[str | None, np.dtype] | None = None
    optional: tuple[str, ...] = ()
    what: str = SIGNATURE
    text_columns: Collection[str] = ()
    drop_extra: bool = False

    def read(self, X: Any, names: Any) -> Any:
        if isinstance(X, bytes):  # seldon-core's binData: one binary column's value, as is
            X = [[X]] if self._one_binary_column else X.decode("utf-8", errors="replace")
        if isinstance(X, str):  # seldon-core's strData
            if not self.as_a_frame:
                return [X]
            X = [[X]]
        if self.as_a_frame:
            if type(X) is np.ndarray and X.ndim == 1 and self.columns and len(self.columns) == 1:
                X = X.reshape(-1, 1)  # one column's values (V2: one input named after it)
            return as_frame(
                X,
                names,
                self.columns,
                self.what,
                self.column_types,
                self.optional,
                self.text_columns,
                self.drop_extra,
            )
        if isinstance(X, dict):
            return self._named_tensors(X)
        try:
            arr = np.asarray(X)
        except ValueError as exc:
            raise BadRequestError(f"the input must be a rectangular array: {exc}") from exc
        if arr.size == 0:
            raise BadRequestError(f"the input is empty (shape {list(arr.shape)})")
        if self.tensor_types and len(self.tensor_types) == 1:
            (name, dtype), *_ = self.tensor_types.items()
            return _typed_tensor(arr, dtype, name or "input")
        return arr

    @property
    def _one_binary_column(self) -> bool:
        """Whether the model takes one column, of bytes (``binary``)."""
        return (
            self.as_a_frame
            and self.columns is not None
            and len(self.columns) == 1
            and (self.column_types or {}).get(self.columns[0]) == "binary"
        )

    def _named_tensors(self, X: dict[str, Any]) -> dict[str, np.ndarray]:
        """``jsonData`` ``{name: values}`` for a signature of named tensors."""
        named = {k: v for k, v in (self.tensor_types or {}).items() if k is not None}
        if not named:
            raise BadRequestError(
                "this model takes an array (its signature names no columns), got jsonData; send "
                "data.ndarray or data.tensor, or set xtype=DataFrame"
            )
        missing = [name for name in named if name not in X]
        if missing:
            raise BadRequestError(f"jsonData lacks the model's inputs {missing} (of {list(named)})")
        found = {}
        for name, dtype in named.items():
            try:
                values = np.asarray(X[name])
            except ValueError as exc:
                raise BadRequestError(f"input {name!r} is not a rectangular array: {exc}") from exc
            found[name] = _typed_tensor(values, dtype, name)
        return found


#: The request formats of MLflow's scoring server (``/invocations``), accepted as ``jsonData``.
SCORING_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


def scoring_payload(X: Any, columns: list[str] | None) -> tuple[Any, Any, Any] | None:
    """``jsonData`` written as for ``mlflow models serve`` -- one of ``SCORING_FORMATS``, and
    optionally ``params`` -- as (rows or columns, names, params); ``None`` for any other
    payload, or when the keys are the model's own columns."""
    if type(X) is not dict or not X or set(X) - {*SCORING_FORMATS, "params"}:
        return None
    found = [key for key in SCORING_FORMATS if key in X]
    if len(found) != 1 or (columns and found[0] in columns):
        return None
    data, params = X[found[0]], X.get("params")
    if found[0] != "dataframe_split":
        return data, None, params
    if type(data) is not dict or "data" not in data:
        raise BadRequestError('dataframe_split must be {"columns": [...], "data": [[...]]}')
    return data["data"], data.get("columns"), params


def _typed_tensor(arr: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``arr`` as the signature's dtype (MLflow's scoring server casts JSON numbers the same way);
    whole numbers only for integer tensors; a 400 names the input and the value."""
    if arr.dtype == dtype:
        return arr
    if dtype.name in _TENSOR_KINDS:
        flat = typed_values(arr.ravel(), dtype.name, name, what="input")
        return flat.reshape(arr.shape)
    try:
        return arr.astype(dtype)
    except (ValueError, TypeError) as exc:
        raise BadRequestError(f"input {name!r}: cannot read it as {dtype.name}: {exc}") from exc


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
