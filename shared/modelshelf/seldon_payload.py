"""What a Seldon protocol body must look like, checked once before seldon-core reads it.

seldon-core's protocol functions assume a well-formed ``SeldonMessage`` and fail deep inside on
anything else -- ``'str' object has no attribute 'get'`` for a string ``meta``, ``name
'TensorProto' is not defined`` for a ``tftensor``, a ``TypeError`` from ``base64`` for a number
in ``binData`` -- which its wrapper answers with a 500, sometimes after the model already ran.
``BodyChecks`` walks the envelope (never the numbers of an ``ndarray``: numpy judges those, and a
``ValueError`` from it is already a 400) and raises ``BadRequestError`` naming the field, what it
held and what was expected. The checks follow the message types of seldon-core's
``prediction.proto``.

A component that reads raw bodies (``predict_raw``, ``route_raw``…) or ``PAYLOAD_PASSTHROUGH``
gets no check on those paths: there the body is the component's to judge.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from seldon_core.user_model import SeldonComponent

from modelshelf.request_errors import BadRequestError

PREDICT_PATHS = ("/predict", "/api/v1.0/predictions", "/api/v0.1/predictions")
FEEDBACK_PATHS = ("/send-feedback", "/api/v1.0/feedback", "/api/v0.1/feedback")
#: The payload fields of a SeldonMessage (one of them) and of its ``data`` (DefaultData).
PAYLOADS = ("data", "jsonData", "strData", "binData")
DATA_KINDS = ("tensor", "ndarray", "tftensor")
#: numpy's limit on dimensions (``NPY_MAXDIMS``); a tensor shape is int32 in the proto.
MAX_DIMS = 32
MAX_DIM = 2**31 - 1
METRIC_TYPES = ("COUNTER", "GAUGE", "TIMER")
_NUMBERS = {int, float}

Check = Callable[[Any], None]


def describe(value: Any) -> str:
    """A JSON value for a message: its JSON type, and the value itself when it is short."""
    kind = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    shown = repr(value) if isinstance(value, str) else str(value).lower()
    return f"{kind} ({shown[:40]}{'…' if len(shown) > 40 else ''})" if value is not None else kind


def _refuse(where: str, value: Any, expected: str) -> BadRequestError:
    return BadRequestError(f"{where} must be {expected}, got {describe(value)}")


def check_message(message: Any, where: str = "the body", payload_required: bool = True) -> None:
    """A SeldonMessage as seldon-core's JSON path reads it: one payload, a well-formed ``meta``."""
    if type(message) is not dict:
        raise _refuse(where, message, "a JSON object (a SeldonMessage)")
    found = [key for key in PAYLOADS if key in message]
    if len(found) > 1:
        raise BadRequestError(f"{where} holds {' and '.join(found)}: send one of them")
    if not found and payload_required:
        raise BadRequestError(
            f"{where} has no payload: expected one of data, jsonData, strData or binData "
            f"(found {', '.join(sorted(map(str, message))) or 'no field'})"
        )
    prefix = "" if where == "the body" else f"{where}."
    if "meta" in message:
        check_meta(message["meta"], f"{prefix}meta")
    if "data" in message:
        check_data(message["data"], f"{prefix}data", payload_required)
    elif "strData" in message and type(message["strData"]) is not str:
        raise _refuse(f"{prefix}strData", message["strData"], "a string")
    elif "binData" in message and type(message["binData"]) is not str:
        raise _refuse(f"{prefix}binData", message["binData"], "a base64 string")


def check_data(data: Any, where: str, values_required: bool = True) -> None:
    """DefaultData: ``names`` and one of ``tensor``, ``ndarray``, ``tftensor`` (at most one
    when not ``values_required``: a feedback's ``response`` may carry names only)."""
    if type(data) is not dict:
        raise _refuse(where, data, "an object with tensor, ndarray or tftensor")
    names = data.get("names")
    if names is not None:
        _check_items(names, f"{where}.names", str, "an array of strings (the column names)")
    found = [key for key in DATA_KINDS if key in data]
    if len(found) > 1:
        raise BadRequestError(f"{where} holds {' and '.join(found)}: send one of them")
    if not found and values_required:
        held = ", ".join(sorted(map(str, data))) or "no field"
        raise BadRequestError(
            f"{where} has no values: expected one of {', '.join(DATA_KINDS)} (with optional "
            f"names), found {held}"
        )
    if "tensor" in data:
        check_tensor(data["tensor"], f"{where}.tensor")
    elif "ndarray" in data:
        if type(data["ndarray"]) is not list:
            raise _refuse(f"{where}.ndarray", data["ndarray"], "an array (of rows)")
    elif "tftensor" in data:
        if not _has_tensorflow():
            raise BadRequestError(
                f"{where}.tftensor needs TensorFlow, which this server does not have: "
                "send the numbers as tensor or ndarray"
            )
        if type(data["tftensor"]) is not dict:
            raise _refuse(f"{where}.tftensor", data["tftensor"], "an object (a TensorProto)")


def check_tensor(tensor: Any, where: str) -> None:
    """Tensor: ``shape`` (integers) and ``values`` (numbers), as many as the shape holds."""
    if type(tensor) is not dict:
        raise _refuse(where, tensor, 'an object {"shape": [...], "values": [...]}')
    for key in ("shape", "values"):
        if key not in tensor:
            raise BadRequestError(
                f'{where} has no {key}: expected {{"shape": [...], "values": [...]}}'
            )
    shape, values = tensor["shape"], tensor["values"]
    _check_items(shape, f"{where}.shape", int, "an array of integers (sizes from 0, one -1)")
    if type(values) is not list:
        raise _refuse(f"{where}.values", values, "an array of numbers")
    if not set(map(type, values)) <= _NUMBERS:
        index, value = next((i, v) for i, v in enumerate(values) if type(v) not in _NUMBERS)
        raise BadRequestError(
            f"{where}.values must be numbers only (a tensor holds doubles), but "
            f"{where}.values[{index}] is {describe(value)}; send text as ndarray or strData"
        )
    if len(shape) > MAX_DIMS:
        raise BadRequestError(f"{where}.shape has {len(shape)} dimensions: at most {MAX_DIMS}")
    unknown = shape.count(-1)
    if unknown > 1 or any(size < -1 or size > MAX_DIM for size in shape):
        raise BadRequestError(
            f"{where}.shape {shape} is not a shape: sizes from 0 to {MAX_DIM}, and at most one -1"
        )
    # One -1 is read as numpy's reshape reads it, as seldon-core's REST does (clients send
    # [-1, n]); seldon-core's gRPC reader cannot size it (``grpc_worker._refusal`` says so).
    known = math.prod(size for size in shape if size != -1)
    count = len(values)
    fits = (known > 0 and count % known == 0) if unknown else known == count
    if not fits:
        raise BadRequestError(
            f"{where}.shape {shape} does not hold its {count} values (cannot reshape them)"
        )


def _check_items(items: Any, where: str, kind: type, expected: str) -> None:
    """``items`` is a list of ``kind`` only, else a 400 naming the first item that is not."""
    if type(items) is not list:
        raise _refuse(where, items, expected)
    for index, item in enumerate(items):
        if type(item) is not kind:
            raise BadRequestError(
                f"{where} must be {expected}, but {where}[{index}] is {describe(item)}"
            )


def check_meta(meta: Any, where: str) -> None:
    """Meta: ``puid`` a string, ``tags``/``routing``/``requestPath`` objects, ``metrics`` a list
    of metric objects (seldon-core merges these into the answer's ``meta``)."""
    if type(meta) is not dict:
        raise _refuse(where, meta, "an object (puid, tags, routing, requestPath, metrics)")
    if "puid" in meta and type(meta["puid"]) is not str:
        raise _refuse(f"{where}.puid", meta["puid"], "a string")
    for key in ("tags", "routing", "requestPath"):
        if key in meta and type(meta[key]) is not dict:
            raise _refuse(f"{where}.{key}", meta[key], "an object")
    routing = meta.get("routing", {})
    for name, branch in routing.items():
        if type(branch) is not int:
            raise _refuse(f"{where}.routing.{name}", branch, "an integer")
    for name, value in meta.get("requestPath", {}).items():
        if type(value) is not str:
            raise _refuse(f"{where}.requestPath.{name}", value, "a string")
    if "metrics" in meta:
        metrics = meta["metrics"]
        if type(metrics) is not list:
            raise _refuse(f"{where}.metrics", metrics, "an array of metrics")
        for index, metric in enumerate(metrics):
            check_metric(metric, f"{where}.metrics[{index}]")


def check_metric(metric: Any, where: str) -> None:
    if type(metric) is not dict:
        raise _refuse(where, metric, 'an object {"key": …, "type": …, "value": …}')
    if type(metric.get("key")) is not str:
        raise _refuse(f"{where}.key", metric.get("key"), "a string")
    if metric.get("type", "COUNTER") not in METRIC_TYPES:
        raise _refuse(f"{where}.type", metric.get("type"), " or ".join(METRIC_TYPES))
    if type(metric.get("value", 0)) not in _NUMBERS:
        raise _refuse(f"{where}.value", metric.get("value"), "a number")
    if "tags" in metric and type(metric["tags"]) is not dict:
        raise _refuse(f"{where}.tags", metric["tags"], "an object")


def check_message_list(body: Any) -> None:
    """What ``/aggregate`` takes: ``{"seldonMessages": [...]}`` (or the bare array), not empty."""
    messages = body.get("seldonMessages") if type(body) is dict else body
    where = "seldonMessages" if type(body) is dict else "the body"
    if type(messages) is not list or not messages:
        expected = 'a non-empty array of SeldonMessages ({"seldonMessages": [...]})'
        raise _refuse(where, messages, expected)
    for index, message in enumerate(messages):
        check_message(message, f"seldonMessages[{index}]")


def check_feedback(body: Any) -> None:
    """Feedback: ``request``, ``response``, ``truth`` (SeldonMessages) and a numeric ``reward``."""
    if type(body) is not dict:
        raise _refuse("the body", body, "a JSON object (Feedback: request, response, reward)")
    for key in ("request", "response", "truth"):
        if key in body:
            check_message(body[key], key, payload_required=False)
    if "reward" in body and type(body["reward"]) not in _NUMBERS:
        raise _refuse("reward", body["reward"], "a number")
    unknown = sorted(set(body) - {"request", "response", "truth", "reward"})
    if unknown:
        raise BadRequestError(
            f"the body has {', '.join(map(str, unknown))}: Feedback has request, response, "
            "truth and reward"
        )


class BodyChecks:
    """The check each Seldon path's body gets, for one component (``None``: no check)."""

    def __init__(self, component: Any) -> None:
        single: list[tuple[tuple[str, ...], tuple[str, ...], Check]] = [
            (PREDICT_PATHS, ("predict_rest", "predict_raw"), check_message),
            (("/transform-input",), ("transform_input_rest", "transform_input_raw"), check_message),
            (
                ("/transform-output",),
                ("transform_output_rest", "transform_output_raw"),
                check_message,
            ),
            (("/route",), ("route_rest", "route_raw"), check_message),
            (("/aggregate",), ("aggregate_rest", "aggregate_raw"), check_message_list),
            # The wrapper parses feedback into its proto whatever the component does.
            (FEEDBACK_PATHS, (), check_feedback),
        ]
        self.by_path: dict[str, Check] = {}
        for paths, raw_methods, check in single:
            if not any(_reads_raw(component, name) for name in raw_methods):
                self.by_path.update(dict.fromkeys(paths, check))
        if os.environ.get("PAYLOAD_PASSTHROUGH", "").lower() in ("1", "true", "t"):
            for path in PREDICT_PATHS:  # predict gets the raw bytes
                self.by_path.pop(path, None)

    def check(self, path: str, body: Any) -> None:
        """Raise ``BadRequestError`` when ``body`` is not what ``path`` takes."""
        check = self.by_path.get(path)
        if check is not None:
            check(body)


def _reads_raw(component: Any, name: str) -> bool:
    """Whether seldon-core hands ``component`` the raw body through ``name``: a method the
    component has, other than the stub every ``SeldonComponent`` inherits."""
    method = getattr(component, name, None)
    if method is None:
        return False
    inherited = getattr(SeldonComponent, name, None)
    return inherited is None or getattr(method, "__func__", None) is not inherited


def _has_tensorflow() -> bool:
    """seldon-core reads ``tftensor`` only when it could import TensorFlow."""
    from seldon_core import utils

    return hasattr(utils, "TensorProto")


def unequal_rows(rows: Any, where: str = "data.ndarray") -> str | None:
    """Where a nested list is not rectangular, said in the request's words (numpy says
    "inhomogeneous shape after 1 dimensions"): the first element whose length, or whose being
    a list, differs from its first sibling's. ``None`` when every level is even. Only called
    after numpy refused the rows, so its walk costs a good request nothing."""
    if type(rows) is not list or not rows:
        return None
    first = rows[0]
    for index, item in enumerate(rows):
        if (type(item) is list) != (type(first) is list):
            return (
                f"{where}[{index}] is {describe(item)} but {where}[0] is {describe(first)}: "
                "expected rows of equal length"
            )
        if type(item) is list and len(item) != len(first):
            return (
                f"{where} has rows of unequal length: {where}[{index}] has {len(item)} values, "
                f"{where}[0] has {len(first)}; expected rows of equal length"
            )
    for index, item in enumerate(rows):
        found = unequal_rows(item, f"{where}[{index}]")
        if found is not None:
            return found
    return None
