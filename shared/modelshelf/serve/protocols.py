"""The REST protocols beside Seldon's on the same port: Open Inference Protocol (V2) REST, KServe
V1 and MLflow's scoring protocol, each a thin adapter over ``modelshelf.serve.inference``.

``ProtocolRoutes.handle`` answers the requests whose path belongs to one of them and returns
``None`` for every other path, which the Seldon app then answers as before. Their paths do not
overlap with seldon-core's (``/api/…``, ``/predict``, ``/health/ping``, ``/metadata``…).
"""

from __future__ import annotations

from typing import Any

import orjson

from modelshelf.serve.inference import InferenceCore, message_of, status_of

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]

JSON_TYPE = b"application/json"
MLFLOW_PATHS = frozenset({"/invocations", "/ping", "/health", "/version"})


def json_reply(status: int, value: Any, extra: Headers | None = None) -> Reply:
    """``value`` as a JSON response (numpy arrays written from their memory)."""
    payload = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    return status, [(b"content-type", JSON_TYPE), *(extra or [])], payload


def header(scope: dict, name: bytes) -> bytes | None:
    """A request header's value (``name`` lower case), or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class ProtocolRoutes:
    """Routes the V2, KServe V1 and MLflow paths to their adapters; ``None`` for other paths."""

    def __init__(self, core: InferenceCore) -> None:
        from modelshelf.serve.kserve_v1 import KServeV1
        from modelshelf.serve.mlflow_scoring import MLflowScoring
        from modelshelf.serve.v2_rest import V2Rest

        self.core = core
        self.v2 = V2Rest(core)
        self.v1 = KServeV1(core)
        self.mlflow = MLflowScoring(core)

    def handle(self, scope: dict, body: bytes) -> Reply | None:
        path: str = scope["path"]
        if path.startswith("/v2"):
            return self.v2.handle(scope, path, body)
        if path.startswith("/v1/models") or path == "/":
            return self.v1.handle(scope, path, body)
        if path in MLFLOW_PATHS:
            return self.mlflow.handle(scope, path, body)
        return None

    def refusal(self, path: str, exc: Exception) -> Reply | None:
        """``exc``, a request refused before its body was read (a body over
        ``MODELSHELF_MAX_BODY_BYTES``: 413), in the error body of the protocol ``path`` is
        one of (V2 and KServe V1 ``{"error": …}``, MLflow's ``error_code`` and ``message``);
        ``None`` for Seldon's paths, whose status body the server keeps."""
        if path in MLFLOW_PATHS:
            return self.mlflow.error(exc)
        if path.startswith(("/v2", "/v1/models")) or path == "/":
            return json_reply(status_of(exc), {"error": message_of(exc)})
        return None
