"""KServe's V1 protocol: ``GET /`` (``{"status": "alive"}``), ``/v1/models``,
``/v1/models/NAME`` (ready, or 503), ``POST /v1/models/NAME:predict`` with ``instances`` (or
``inputs``, exactly one) answered ``{"predictions": […]}``. Rows are lists (an array; a flat
list of values is refused for a model that takes rows, naming the shape it takes) or objects.
Objects are matched to a modelshelf server's feature names as Seldon's ``jsonData`` is (and
refused, as there, by a model without any: their key order is no column order); a user's class
gets them as a DataFrame whose columns are the objects' keys. Errors are ``{"error": "…"}``
with 400/404/503/500, as KServe's model server answers them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from modelshelf.errors import BadRequestError, ModelNotReadyError
from modelshelf.inputs import pandas_module
from modelshelf.json_values import refused_json_message
from modelshelf.serve.inference import (
    InferenceCore,
    UnknownModelError,
    error_answer,
    is_flat_values,
)
from modelshelf.serve.ndarray import (
    array_from_rows,
    encode_array,
    encodes_as_tolist,
    rows_error_text,
)
from modelshelf.serve.protocols import Reply, json_reply
from modelshelf.serve.server_methods import reads_records

PREDICT_SUFFIX = ":predict"
ROW_KEYS = ("instances", "inputs")
_PREDICTIONS_START = b'{"predictions":'

logger = logging.getLogger(__name__)


class KServeV1:
    """The KServe V1 adapter of one model."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core
        self.reads_records = reads_records(core.user_model)

    def handle(self, scope: dict, path: str, body: bytes) -> Reply:
        method = scope["method"]
        try:
            if path == "/":
                return _only_get(method) or json_reply(200, {"status": "alive"})
            if path.rstrip("/") == "/v1/models":
                return _only_get(method) or json_reply(200, {"models": [self.core.name]})
            name = path[len("/v1/models/") :]
            if name.endswith(PREDICT_SUFFIX):
                if method != "POST":
                    return _error(405, f"{method} is not allowed for :predict; use POST")
                self._check(name[: -len(PREDICT_SUFFIX)])
                return self.predict(body)
            if "/" in name or ":" in name:
                return _error(404, f"no KServe V1 endpoint at {path}")
            refused = _only_get(method)
            if refused:
                return refused
            self._check(name)
            if not self.core.ready():  # every port accepts (gRPC's too)
                raise ModelNotReadyError(f"Model with name {name} is not ready.")
            return json_reply(200, {"name": name, "ready": True})
        except Exception as exc:
            return _error(*error_answer(exc, f"KServe V1 {method} {path}", logger))

    def _check(self, name: str) -> None:
        if name != self.core.name:
            raise UnknownModelError(name, None, self.core.name)
        if not self.core.model_ready():
            raise ModelNotReadyError(f"Model with name {name} is not ready.")

    def predict(self, body: bytes) -> Reply:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:  # KServe's own words when no value is to blame
            message = refused_json_message(body, exc, "Unrecognized request format")
            raise BadRequestError(message) from None
        if type(payload) is not dict:
            raise BadRequestError('Expected a JSON object with "instances" or "inputs"')
        keys = [key for key in ROW_KEYS if key in payload]
        if len(keys) != 1:
            raise BadRequestError(
                'Expected exactly one of "instances" or "inputs", got '
                + (" and ".join(f'"{k}"' for k in keys) if keys else f"fields {list(payload)}")
            )
        rows = payload[keys[0]]
        if type(rows) is not list or not rows:
            raise BadRequestError(f'Expected "{keys[0]}" to be a non-empty list of rows')
        X, names = instances_input(rows, self.reads_records, keys[0])
        if is_flat_values(X):
            self.core.refuse_flat_row(f'"{keys[0]}" of {len(rows)} values')
        answer = self.core.call(X, names)
        return 200, [(b"content-type", b"application/json")], _predictions(answer.data)


def instances_input(
    rows: list, as_records: bool = False, key: str = "instances"
) -> tuple[Any, list[str]]:
    """KServe's ``instances`` (or ``inputs``, the request's ``key``, which errors name): rows
    of values as an array; objects as a DataFrame, or, with ``as_records``, as they are (a
    modelshelf server reads them as Seldon's ``jsonData``: matched to the model's feature
    names, refused when it has none)."""
    if type(rows[0]) is dict:
        if not all(type(row) is dict for row in rows):
            raise BadRequestError(f"{key} must be all objects or all rows, not a mix")
        if as_records:
            return rows, []
        pd = pandas_module()
        frame = pd.DataFrame(rows)
        return frame, [str(c) for c in frame.columns]
    try:
        return array_from_rows(rows, key), []
    except ValueError as exc:
        raise BadRequestError(f"{key} could not be read as rows: {rows_error_text(exc)}") from None


def _predictions(result: Any) -> bytes:
    """``{"predictions": …}``: arrays as ``tolist()`` gives them, DataFrames as records."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(result, pd.DataFrame):
        return orjson.dumps({"predictions": result.to_dict(orient="records")}, default=_plain)
    if pd is not None and isinstance(result, pd.Series):
        result = result.to_numpy()
    encoded = encode_array(result) if encodes_as_tolist(result) else None
    if encoded is not None:
        return b"".join([_PREDICTIONS_START, encoded, b"}"])
    if hasattr(result, "tolist"):
        result = result.tolist()
    return orjson.dumps({"predictions": result}, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars and bytes the model may return, as JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _only_get(method: str) -> Reply | None:
    return None if method == "GET" else _error(405, f"{method} is not allowed here; use GET")


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message})
