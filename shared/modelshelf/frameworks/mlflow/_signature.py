"""MLflow's own signature check in front of a directly called method, and the shortcut that skips
it for a DataFrame it would leave unchanged; the names a signature gives."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError

#: How long an MLflow error message may be in a response.
MAX_MESSAGE = 2000
#: MLflow column types whose pandas dtype, when the request already has it, MLflow's schema
#: enforcement leaves unchanged (so it can be skipped for such a frame).
_EXACT_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


def signature_checked(call: Any, schema: Any, flavor: str | None = None) -> Any:
    """``call`` behind MLflow's own signature check, as pyfunc's ``predict`` has it: inputs are
    rejected (and converted) exactly as ``predict`` does. A DataFrame that already has the
    signature's columns, in order, with the dtypes MLflow would convert them to, passes
    unchanged without the check (it is most of the time of a one-row request)."""
    if schema is None:
        return call
    from mlflow.exceptions import MlflowException
    from mlflow.models.utils import _enforce_schema  # MLflow's checker, which pyfunc uses

    already_conforms = conforming_frame_test(schema)

    def checked(model_input: Any) -> Any:
        if not already_conforms(model_input):
            try:
                model_input = _enforce_schema(model_input, schema, flavor)
            except MlflowException as exc:
                raise BadRequestError(
                    "the input does not match the model's signature: " + exc.message[:MAX_MESSAGE]
                ) from exc
        return call(model_input)

    return checked


def conforming_frame_test(schema: Any) -> Any:
    """A test of whether an input is a DataFrame that MLflow's schema enforcement would return
    as it is: exactly the schema's columns, all required, in order, each of the numeric dtype
    the schema names. Any other schema gets a test that is always false."""
    names: list[str] = []
    dtypes: list[np.dtype] = []
    if schema.is_tensor_spec() or not schema.has_input_names():
        return lambda model_input: False
    for spec in schema.inputs:
        dtype = _EXACT_DTYPES.get(str(getattr(spec.type, "name", "")))
        if dtype is None or not getattr(spec, "required", True) or spec.name is None:
            return lambda model_input: False
        names.append(str(spec.name))
        dtypes.append(np.dtype(dtype))
    import pandas as pd

    def conforms(model_input: Any) -> bool:
        return (
            type(model_input) is pd.DataFrame
            and list(model_input.columns) == names
            and list(model_input.dtypes) == dtypes
        )

    return conforms


def schema_names(schema: Any) -> list[str] | None:
    """The column names a (column-based) schema gives, else ``None``."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return [str(n) for n in schema.input_names()]
