"""MLflow's own signature check in front of a directly called method, and the shortcut that skips
it for an input it would leave unchanged; what a signature says of inputs (column names and
types, tensor dtypes) and params; MLflow's error messages with their reason first."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError

#: How long an MLflow error message may be in a response.
MAX_MESSAGE = 2000
#: MLflow column types whose pandas dtype, when the request already has it, MLflow's schema
#: enforcement leaves unchanged (so it can be skipped for such a frame).
_EXACT_DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "object",
}
#: MLflow column types as ``modelshelf.inputs.COLUMN_TYPES`` names them.
_COLUMN_TYPES = {
    "string": "string",
    "boolean": "boolean",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "datetime": "datetime",
    "binary": "binary",
}
#: What MLflow puts before the reason when pyfunc's schema enforcement fails.
_ENFORCE_PREFIX = "Failed to enforce schema of data"


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
                    "the input does not match the model's signature: " + reason_first(exc.message)
                ) from exc
        return call(model_input)

    return checked


def conforming_frame_test(schema: Any) -> Any:
    """A test of whether an input is a DataFrame that MLflow's schema enforcement would return
    as it is: exactly the schema's columns, all required, in order, each of the numeric dtype
    the schema names. Any other schema gets a test that is always false."""
    names: list[str] = []
    dtypes: list[np.dtype] = []
    if schema.is_tensor_spec():
        return _conforming_tensor_test(schema)
    if not schema.has_input_names():
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


def answer_columns(schema: Any) -> dict[str, str]:
    """The columns an output signature names, each with its V2 datatype: the DataFrame pyfunc's
    ``predict`` answers, which V2 sends one tensor a column (as MLServer's MLflow runtime does);
    empty for a tensor signature or none (the answer is one tensor, named after the method)."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return {}
    from modelshelf.frameworks.mlflow._description import COLUMN_DATATYPES

    return {
        str(spec.name): COLUMN_DATATYPES.get(str(getattr(spec.type, "name", "")), "BYTES")
        for spec in schema.inputs
    }


def input_names(schema: Any) -> frozenset[str] | None:
    """The names a signature gives its inputs (columns or named tensors); ``None`` when it
    names none (one unnamed tensor, or no signature): then any input name will do."""
    if schema is None or not schema.has_input_names():
        return None
    return frozenset(str(name) for name in schema.input_names())


def _conforming_tensor_test(schema: Any) -> Any:
    """For one tensor: whether an array has its dtype and shape (MLflow would pass it as is)."""
    if len(schema.inputs) != 1:
        return lambda model_input: False
    spec = schema.inputs[0]
    dtype, shape = np.dtype(spec.type), tuple(spec.shape)

    def conforms(model_input: Any) -> bool:
        return (
            type(model_input) is np.ndarray
            and model_input.dtype == dtype
            and model_input.ndim == len(shape)
            and all(want in (-1, got) for want, got in zip(shape, model_input.shape, strict=True))
        )

    return conforms


def column_types(schema: Any) -> dict[str, str] | None:
    """Column name -> the type requests are cast to (``modelshelf.inputs.COLUMN_TYPES``), for a
    column-based schema; ``None`` for others."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    found = {}
    for spec in schema.inputs:
        kind = _COLUMN_TYPES.get(str(getattr(spec.type, "name", "")))
        if kind is not None:
            found[str(spec.name)] = kind
    return found


def optional_columns(schema: Any) -> tuple[str, ...]:
    """The columns a request may leave out (``required=False`` in the signature)."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return ()
    return tuple(str(name) for name in schema.optional_input_names())


def tensor_types(schema: Any) -> dict[str | None, np.dtype] | None:
    """Tensor name (``None`` for the one unnamed tensor) -> dtype, for a tensor schema."""
    if schema is None or not schema.is_tensor_spec():
        return None
    return {spec.name: np.dtype(spec.type) for spec in schema.inputs}


def reason_first(message: str, limit: int = MAX_MESSAGE) -> str:
    """An MLflow error message with its reason first and at most ``limit`` characters: pyfunc
    writes the whole input and the schema before the reason ("Failed to enforce schema of data
    '<DataFrame>' with schema '<...>'. Error: <reason>"), so a wide input pushed it out of
    sight. Whatever is too long is cut from the middle, never the reason."""
    if message.startswith(_ENFORCE_PREFIX) and "Error: " in message:
        details, _, reason = message.rpartition("Error: ")
        message = f"{reason.strip()} (while enforcing {details.strip()})"
    if len(message) <= limit:
        return message
    keep = limit - 5
    head = max(keep * 2 // 3, keep - 200)
    return f"{message[:head]} ... {message[len(message) - (keep - head) :]}"


def params_check(schema: Any) -> Any:
    """A function that validates a request's params against the signature's params schema (MLflow's
    own rule: ``ParamSpec.validate_param_spec``) and returns them with the defaults filled in;
    a 400 names the param and its type. Params the schema does not declare (any, without a
    schema) are a 400, or with ``ignore_undeclared`` dropped, as ``mlflow models serve`` and
    MLServer drop them."""
    specs = {spec.name: spec for spec in schema.params} if schema is not None else {}
    if specs:  # imported here, at load, not per request (a schema means MLflow is installed)
        from mlflow.exceptions import MlflowException
        from mlflow.types import ParamSpec

    def check(params: Any, ignore_undeclared: bool = False) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise BadRequestError(
                f"params must be a mapping of param names to values, got {type(params).__name__}"
            )
        if ignore_undeclared:
            params = {name: value for name, value in params.items() if name in specs}
        if not specs:
            if not params:
                return {}
            raise BadRequestError(
                "this model takes no params (its signature has no params schema), got "
                f"{sorted(params)}"
            )
        unknown = sorted(str(name) for name in params if name not in specs)
        if unknown:
            raise BadRequestError(
                f"unknown params {unknown}: this model takes {describe_params(schema)}"
            )
        checked = {}
        for name, spec in specs.items():
            if name not in params:
                checked[name] = spec.default
                continue
            try:
                checked[name] = ParamSpec.validate_param_spec(params[name], spec)
            except MlflowException as exc:
                raise BadRequestError(f"param {name!r}: {reason_first(exc.message)}") from exc
        return checked

    return check


def describe_params(schema: Any) -> str:
    """``threshold (double, default 0.5), ...``: the params a model takes, for messages."""
    return ", ".join(
        f"{spec.name} ({_param_type(spec.dtype, spec.shape)}, default {spec.default!r})"
        for spec in schema.params
    )


def _param_type(dtype: Any, shape: Any) -> str:
    name = str(getattr(dtype, "name", dtype))
    return f"{name} array" if shape else name
