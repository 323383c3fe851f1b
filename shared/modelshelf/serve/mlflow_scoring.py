"""MLflow's scoring protocol, as ``mlflow models serve`` answers it: ``POST /invocations``,
``GET /ping``, ``/health``, ``/version``.

``application/json`` bodies hold exactly one of ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (and optionally ``params``, passed to the model when the server's
``predict`` takes them); ``text/csv`` bodies are a DataFrame with a header row. Answers are
``{"predictions": …}`` shaped as MLflow shapes them (arrays as lists, DataFrames as records).
Errors are MLflow's ``{"error_code": …, "message": …}`` (400 ``BAD_REQUEST``, 500
``INTERNAL_ERROR``, 501 ``NOT_IMPLEMENTED``, 503 ``TEMPORARILY_UNAVAILABLE``); other content
types get MLflow's 415.

Rows of numbers (``inputs`` / ``instances`` as lists) join other such requests' model call under
load (``modelshelf.serve.batching``), as Seldon and V2 predictions do: without it, four
connections of single rows got 0.66-0.79 x the Seldon path's req/s on the same MLFlowServer,
though one request alone costs the same on both.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from typing import Any

import numpy as np
import orjson

from modelshelf.errors import BadRequestError
from modelshelf.inputs import pandas_module
from modelshelf.json_values import document_with_non_finite, refused_json_message
from modelshelf.serve.batching import Pending, batchable_rows
from modelshelf.serve.inference import InferenceCore, error_answer
from modelshelf.serve.ndarray import (
    array_from_rows,
    encode_array,
    encodes_as_tolist,
    rows_error_text,
)
from modelshelf.serve.protocols import Reply, header, json_reply
from modelshelf.serve.server_methods import is_mlflow_server, reads_records

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPES = ("text/csv", "application/json")
_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",  # a body over MODELSHELF_MAX_BODY_BYTES: the client's to make smaller
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
}
_PREDICTIONS_START = b'{"predictions": '
#: Header lists every reply shares: the servers read them, never add to them.
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]

logger = logging.getLogger(__name__)


class MLflowScoring:
    """The MLflow scoring adapter of one model."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core
        self.version = _mlflow_version().encode()
        #: Objects (records, columns by name) reach our servers other than MLFlowServer as
        #: Seldon's ``jsonData``: matched to the model's feature names, refused by a model
        #: without them (their key order is no column order), as over KServe V1. MLFlowServer
        #: gets a DataFrame, as ``mlflow models serve``'s model does.
        user_model = core.user_model
        self.objects_as_records = reads_records(user_model) and not is_mlflow_server(user_model)
        #: ``True`` once the model has answered arrays and never anything else (``None``: no
        #: answer yet): only then do requests join a batch (``pending``).
        self.answers_arrays: bool | None = None
        #: The columns a CSV body keeps as text (``csv_text_columns``), once the model is loaded.
        self._csv_text_columns: frozenset[str] | None = None

    def handle(self, scope: dict, path: str, body: bytes) -> Reply:
        method = scope["method"]
        if path == "/invocations":
            if method != "POST":
                return _error(405, f"{method} is not allowed for /invocations; use POST")
            try:
                return self.invocations(header(scope, b"content-type"), body)
            except Exception as exc:
                return self.error(exc)
        if method != "GET":
            return _error(405, f"{method} is not allowed for {path}; use GET")
        if path == "/version":
            return 200, _JSON, self.version
        status = 200 if self.core.ready() else 503
        return status, _JSON, b"\n"

    def error(self, exc: Exception) -> Reply:
        """An ``/invocations`` request's failure as MLflow's error body."""
        return _error(*error_answer(exc, "MLflow /invocations", logger))

    def invocations(self, content_type: bytes | None, body: bytes) -> Reply:
        mime, parameters = _content_type(content_type)
        if parameters.get("charset", "utf-8").lower() != "utf-8":
            return 415, _TEXT, b"The scoring server only supports UTF-8"
        unexpected = sorted(set(parameters) - {"charset"})
        if unexpected:
            message = f"Unrecognized content type parameters: {', '.join(unexpected)}."
            return 415, _TEXT, message.encode()
        params = None
        if mime == "application/json":
            X, names, params = json_input(body, self.objects_as_records)
        elif mime == "text/csv":
            X, names = csv_input(body, self.csv_text_columns())
        else:
            got = content_type.decode("latin-1") if content_type else None
            message = (
                f"This predictor only supports the following content types: Types: "
                f"{list(CONTENT_TYPES)}. Got '{got}'."
            )
            return 415, _TEXT, message.encode()
        return self.answer(X, names, params)

    def csv_text_columns(self) -> frozenset[str]:
        """The loaded model's text columns (``csv_text_columns``), read once it is ready."""
        if self._csv_text_columns is not None:
            return self._csv_text_columns
        found = csv_text_columns(self.core.user_model)
        if self.core.model_ready():  # the model's, whether or not gRPC listens yet
            self._csv_text_columns = found
        return found

    def answer(self, X: Any, names: list[str], params: dict[str, Any] | None) -> Reply:
        """The model's answer to a read request, as ``{"predictions": …}``."""
        data = self.core.call(X, names, params=params, as_returned=True).data
        if type(data) is not np.ndarray:
            self.answers_arrays = False
        elif self.answers_arrays is None:
            self.answers_arrays = True
        return 200, _JSON, _predictions(data)

    def pending(self, scope: dict, body: bytes) -> Pending | Reply | None:
        """An ``/invocations`` request that may join others' model call (``RestBatching``):
        JSON rows of numbers without ``params``, once the model has answered an array (a
        DataFrame answer would not split back into rows there). Any other request is answered
        here (the body is not decoded twice), or ``None``: for ``handle`` to answer. Only
        ``POST`` requests come here (``RestBatching.answer`` checks)."""
        if not self.answers_arrays:
            return None
        mime, parameters = _content_type(header(scope, b"content-type"))
        if mime != "application/json" or parameters:
            return None
        try:
            X, names, params = json_input(body, self.objects_as_records)
            if params is not None or names or not batchable_rows(X):
                return self.answer(X, names, params)
        except Exception as exc:
            return self.error(exc)
        core = self.core

        def run(rows: np.ndarray) -> tuple[Any, Any]:
            return core.call(rows, (), as_returned=True).data, None

        def finish(rows: Any, context: Any, first: bool) -> Reply:
            return 200, _JSON, _predictions(rows)

        return Pending(
            ("mlflow", X.shape[1], X.dtype.str),
            X,
            run,
            finish,
            self.error,
            asyncio.get_running_loop().create_future(),
        )


def _content_type(value: bytes | None) -> tuple[str, dict[str, str]]:
    if value is None:
        return "", {}
    mime, *pairs = (part.strip() for part in value.decode("latin-1").split(";"))
    found = {}
    for pair in pairs:
        key, _, val = pair.partition("=")
        found[key.strip().lower()] = val.strip().strip('"')
    return mime.lower(), found


def json_input(
    body: bytes, objects_as_records: bool = False
) -> tuple[Any, list[str], dict[str, Any] | None]:
    """The model input, its column names and ``params`` of an ``application/json`` body;
    with ``objects_as_records``, records and columns by name as a list of objects."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = document_with_non_finite(body)  # NaN, ±Infinity: mlflow's json.loads reads them
        if payload is None:  # mlflow's own words when no value is to blame
            not_json = "Ensure that input is a valid JSON formatted string. Error"
            message = refused_json_message(body, exc, not_json, non_finite_read=True)
            raise BadRequestError(message) from None
    if type(payload) is not dict:
        got = "a list" if type(payload) is list else f"{type(payload).__name__}"
        raise BadRequestError(
            f"The input must be a JSON dictionary with exactly one of the input fields "
            f"{list(FORMATS)}. Received {got}."
        )
    keys = [key for key in FORMATS if key in payload]
    if len(keys) != 1:
        raise BadRequestError(
            f"The input must be a JSON dictionary with exactly one of the input fields "
            f"{list(FORMATS)}. Received dictionary with input fields: {list(payload)}."
        )
    params = payload.get("params")
    if params is not None and type(params) is not dict:
        raise BadRequestError("params must be a JSON object of parameter names and values")
    key = keys[0]
    data = payload[key]
    try:
        if key == "dataframe_split":
            if type(data) is not dict:
                raise BadRequestError("dataframe_split must be an object: columns, data (index)")
            frame = pandas_module().DataFrame(
                data=data.get("data"), columns=data.get("columns"), index=data.get("index")
            )
        elif type(data) is list and data and _mixed_records(data):
            raise BadRequestError(
                f"Invalid input. {key} must be all objects (records) or all rows, not a mix"
            )
        elif objects_as_records and (records := _objects(data)) is not None:
            return records, [], params
        elif key == "dataframe_records":
            frame = pandas_module().DataFrame.from_records(data)
        elif type(data) is dict:  # inputs (or instances) by column
            frame = pandas_module().DataFrame(
                {name: np.asarray(column) for name, column in data.items()}
            )
        elif type(data) is list and data and type(data[0]) is dict:  # instances as records
            frame = pandas_module().DataFrame(data)
        else:
            if type(data) is not list:
                data = [data]
            return array_from_rows(data, key), [], params
    except (ValueError, TypeError) as exc:
        raise BadRequestError(
            f"Invalid input. {key} could not be read as a table: {rows_error_text(exc)}"
        ) from None
    return frame, [str(c) for c in frame.columns], params


def _mixed_records(data: list) -> bool:
    """Records (a first object) with other values among them: pandas fails on them deep
    inside (an AttributeError, which was a 500); MLflow's scoring server answers 400. Lists of
    rows are not scanned (that would cost every request): a row list holding an object is
    refused by the row reader."""
    return type(data[0]) is dict and not all(type(row) is dict for row in data)


def _objects(data: Any) -> list[dict] | None:
    """Records (a list of objects) or columns by name (an object of equal-length lists) as a
    list of objects; ``None`` for anything else (rows, a table MLflow's way)."""
    if type(data) is list and data and all(type(row) is dict for row in data):
        return data
    if type(data) is dict and data and all(type(column) is list for column in data.values()):
        lengths = {len(column) for column in data.values()}
        if len(lengths) != 1:
            raise BadRequestError(
                f"columns by name must have equal lengths, got {sorted(lengths)} values"
            )
        return [dict(zip(data, row, strict=True)) for row in zip(*data.values(), strict=True)]
    return None


def csv_text_columns(user_model: Any) -> frozenset[str]:
    """The columns a server knows hold text: those its model learnt as text (scikit-learn's
    ``text_columns``), else its MLflow signature's ``string`` columns. A CSV body keeps them as
    text: pandas alone reads a category "true" as a boolean and an empty cell of a column with
    no other value as a float NaN, which the model's encoder refuses (the same row as JSON,
    ``"true"`` or ``null``, is answered)."""
    learnt = getattr(user_model, "text_columns", None)
    if learnt:
        return frozenset(learnt)
    reader = getattr(user_model, "reader", None)
    types = getattr(reader, "column_types", None) or {}
    return frozenset(name for name, kind in types.items() if kind == "string")


def csv_input(body: bytes, text_columns: frozenset[str] = frozenset()) -> tuple[Any, list[str]]:
    """A ``text/csv`` body (header row, then rows) as a DataFrame; ``text_columns`` are read as
    text (an empty cell: a missing value, as JSON ``null``), as ``mlflow models serve`` reads a
    signature's columns by their pandas types; the others as pandas infers them (a signature's
    ``boolean`` column reads ``true`` / ``False`` as booleans)."""
    pd = pandas_module()
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=dict.fromkeys(text_columns, str) or None)
    except Exception as exc:  # pandas raises several kinds for a bad table
        raise BadRequestError(
            "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
            f"CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` "
            f"method. Error: '{exc}'"
        ) from None
    return frame, [str(c) for c in frame.columns]


def _predictions(result: Any) -> bytes:
    """``{"predictions": …}`` as MLflow writes it: arrays as ``tolist()``, DataFrames and
    Series as records."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(result, pd.Series):
        result = pd.DataFrame(result)
    if pd is not None and isinstance(result, pd.DataFrame):
        return orjson.dumps({"predictions": result.to_dict(orient="records")}, default=_plain)
    encoded = encode_array(result) if encodes_as_tolist(result) else None
    if encoded is not None:
        return b"".join([_PREDICTIONS_START, encoded, b"}"])
    if isinstance(result, np.ndarray):
        result = result.tolist()
    return orjson.dumps({"predictions": result}, default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _mlflow_version() -> str:
    from modelshelf.metadata import package_versions

    found = package_versions(("mlflow", "mlflow-skinny", "modelshelf"))
    return found.get("mlflow") or found.get("mlflow-skinny") or found.get("modelshelf", "")


def _error(status: int, message: str) -> Reply:
    code = _ERROR_CODES.get(status, "INTERNAL_ERROR")
    return json_reply(status, {"error_code": code, "message": message})
