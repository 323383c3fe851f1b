"""``predict`` for JSON requests: seldon-core's steps, with the ``ndarray`` conversions in C.

Same steps and same user-class calls as ``seldon_core.seldon_methods.predict`` -- it is called
for everything but the common case, and its own helpers (``client_predict``,
``client_custom_metrics``, ``construct_response_json``) do the work here too. Only the two
conversions that cost more than the model on large requests change (see ``ndarray``): the
request's ``ndarray`` to an array, and a numeric answer to JSON, which is written once, from the
array, into the response as an ``orjson.Fragment``.
"""

from __future__ import annotations

from typing import Any

import orjson
from seldon_core import seldon_methods
from seldon_core.metrics import PREDICT_METRIC_METHOD_TAG, SeldonMetrics
from seldon_core.user_model import SeldonComponent, client_custom_metrics, client_predict
from seldon_core.utils import construct_response_json

from modelshelf.serve.ndarray import array_from_rows, encode_array, encodes_as_tolist

_INHERITED_PREDICT_RAW = SeldonComponent.predict_raw


def predict(user_model: Any, request: Any, seldon_metrics: SeldonMetrics) -> Any:
    """``seldon_methods.predict(user_model, request, seldon_metrics)`` for a decoded JSON body."""
    data = request.get("data") if type(request) is dict else None
    if (
        type(data) is not dict
        or "ndarray" not in data
        or "tensor" in data  # seldon-core reads and answers these in tensor form
        or "tftensor" in data
        or hasattr(user_model, "predict_rest")
        or _has_own_predict_raw(user_model)
    ):
        return seldon_methods.predict(user_model, request, seldon_metrics)
    features = array_from_rows(data["ndarray"])
    meta = request.get("meta", None)
    names = data.get("names", [])
    answer = client_predict(user_model, features, names, meta=meta)
    metrics = client_custom_metrics(
        user_model, seldon_metrics, PREDICT_METRIC_METHOD_TAG, answer.metrics
    )
    return respond(user_model, request, answer.data, meta, metrics, answer.tags)


def respond(user_model: Any, request: Any, output: Any, meta: Any, metrics: Any, tags: Any) -> Any:
    """seldon-core's response to ``request`` for the model's ``output`` (also the batcher's, for
    each request's rows of a joined call)."""
    encoded = encode_array(output) if encodes_as_tolist(output) else None
    if encoded is None:
        return construct_response_json(user_model, False, request, output, meta, metrics, tags)
    # seldon-core builds names, tags, metrics and requestPath; no rows: nothing to convert.
    response = construct_response_json(user_model, False, request, output[:0], meta, metrics, tags)
    response["data"]["ndarray"] = orjson.Fragment(encoded)
    return response


def _has_own_predict_raw(user_model: Any) -> bool:
    """Whether seldon-core would get an answer from ``predict_raw``: any but the one every
    ``SeldonComponent`` inherits, which only raises ``SeldonNotImplementedError``."""
    method = getattr(user_model, "predict_raw", None)
    return method is not None and getattr(method, "__func__", None) is not _INHERITED_PREDICT_RAW


def without_fragments(response: Any) -> Any:
    """``response`` with the ``ndarray`` ``predict`` wrote as JSON back as lists, for encoders
    other than orjson (Flask's, when orjson cannot write the rest of the response)."""
    if type(response) is dict:
        data = response.get("data")
        if type(data) is dict and type(data.get("ndarray")) is orjson.Fragment:
            # A Fragment exposes no contents; orjson writes it back out as they are.
            data["ndarray"] = orjson.loads(orjson.dumps(data["ndarray"]))
    return response
