"""KServe's custom-model API on modelshelf: ``Model``, ``ModelServer``, ``Storage``, errors.

A KServe custom model ports by changing its import (``from kserve import Model, ModelServer`` →
``from modelshelf.kserve_model import Model, ModelServer``): the same method names, call order
and payloads -- ``load()`` sets ``self.ready``; each request is ``preprocess(payload, headers)``
→ ``predict(…)`` → ``postprocess(…)`` on dict payloads (``{"instances": rows}`` in, whatever
``predict`` returns out; ``{"predictions": …}`` is unwrapped), sync or ``async``. It is served by
``modelshelf serve``, so it answers every protocol that serves (KServe V1, V2 REST and gRPC, the
Seldon protocol), with its metrics, on the ports KServe gives (``--http_port``/``HTTP_PORT``,
``--grpc_port``/``GRPC_PORT``). With ``predictor_host`` set (a transformer), the default
``predict`` sends the preprocessed payload to that predictor over KServe V1 (or V2).

Requests of every protocol reach the model as ``{"instances": rows}``: V2 tensors and Seldon
``ndarray`` as lists of rows, named columns (V2 ``pd``, Seldon ``names``) as records.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import inspect
import json
import os
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelshelf.model_files import MODEL_MOUNT, storage_uri_location
from modelshelf.number_settings import whole_env_number
from modelshelf.request_errors import BadRequestError, ModelNotReadyError, ServerFaultError

__all__ = ["InvalidInput", "Model", "ModelServer", "Storage", "model_server_arguments"]


class InvalidInput(BadRequestError):  # noqa: N818 - KServe's name, so ports keep their except clauses
    """KServe's ``InvalidInput``: the request does not fit the model (HTTP 400)."""


class Model:
    """The base of a KServe-style model: override ``load`` and ``predict`` (and optionally
    ``preprocess`` / ``postprocess``); set ``self.ready = True`` once loaded."""

    def __init__(self, name: str, predictor_host: str | None = None, protocol: str = "v1") -> None:
        self.name = name
        self.ready = False
        self.predictor_host = predictor_host
        self.protocol = protocol
        self.timeout = 60.0

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return payload

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if not self.predictor_host:
            raise NotImplementedError(f"{type(self).__name__}.predict: override it")
        return forward(self.predictor_host, self.name, payload, self.protocol, self.timeout)

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        return result

    def __call__(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """One request, in KServe's order."""
        headers = headers or {}
        payload = _resolved(self.preprocess(payload, headers))
        result = _resolved(self.predict(payload, headers))
        return _resolved(self.postprocess(result, headers))


_thread_state = threading.local()


def _resolved(value: Any) -> Any:
    """The value of an ``async`` method's coroutine (KServe allows both kinds), run on this
    thread's one event loop (``asyncio.run`` made and closed a loop per call)."""
    if not inspect.isawaitable(value):
        return value
    loop = getattr(_thread_state, "loop", None)
    if loop is None:
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop.run_until_complete(value)


class PredictorConnection:
    """Keep-alive HTTP to one predictor, one connection per serving thread (a new connection
    per request cost a TCP handshake each). A connection the predictor closed while idle is
    opened again once."""

    def __init__(self, base: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(base)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port
        self.timeout = timeout
        self._local = threading.local()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """The status and body of ``POST path``."""
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            reused = connection is not None
            if connection is None:
                kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                connection = self._local.connection = kind(
                    self.host, self.port, timeout=self.timeout
                )
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if not reused or attempt == 2:  # a fresh connection failed: the predictor's
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


_connections: dict[tuple[str, float], PredictorConnection] = {}
_connections_lock = threading.Lock()


def _connection(base: str, timeout: float) -> PredictorConnection:
    key = (base, timeout)
    found = _connections.get(key)
    if found is None:
        with _connections_lock:
            found = _connections.setdefault(key, PredictorConnection(base, timeout))
    return found


def forward(host: str, name: str, payload: Any, protocol: str, timeout: float) -> dict[str, Any]:
    """``payload`` to the predictor at ``host`` as KServe V1 (or V2), over a kept-alive
    connection; its answer as ``{"predictions": …}``."""
    base = host if host.startswith(("http://", "https://")) else f"http://{host}"
    if protocol == "v2":
        rows = np.asarray(payload["instances"])
        datatype = (
            "FP64" if rows.dtype.kind == "f" else "INT64" if rows.dtype.kind in "iu" else "BYTES"
        )
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": datatype,
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        url = f"{base}/v2/models/{name}/infer"
    else:
        body, url = payload, f"{base}/v1/models/{name}:predict"
    try:
        status, raw = _connection(base, timeout).post(url[len(base) :], json.dumps(body).encode())
    except (http.client.HTTPException, OSError) as exc:
        raise ServerFaultError(f"the predictor {url} is unreachable: {exc}") from exc
    if status != 200:
        detail = raw.decode("utf-8", "replace")[:500]
        if status == 400:
            raise InvalidInput(f"the predictor {url} refused the request: {detail}")
        raise ServerFaultError(f"the predictor {url} answered {status}: {detail}")
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise ServerFaultError(f"the predictor {url} answered no JSON: {exc}") from exc
    if protocol == "v2":
        output = answer["outputs"][0]
        return {"predictions": np.asarray(output["data"]).reshape(output["shape"]).tolist()}
    return answer


class Storage:
    """KServe's ``Storage.download_files`` on modelshelf's storage (S3, GCS, HTTP(S), rclone
    remotes, archives; credentials from the usual variables)."""

    @staticmethod
    def download_files(uri: str, out_dir: str | None = None) -> str:
        from modelshelf.storage import download

        return str(download(uri, out_dir))


# ---------------------------------------------------------------- serving


_models: list[Model] = []


class KServeModelServer:
    """What ``modelshelf serve`` serves: the ``Model`` given to ``ModelServer.start``, called
    with KServe's payloads from every protocol's decoded request."""

    def __init__(self) -> None:
        if not _models:
            raise ServerFaultError("no model: start it with ModelServer().start([model])")
        self.model = _models[0]

    def load(self) -> None:
        if not self.model.ready:
            _resolved(self.model.load())
        if not self.model.ready:
            raise ServerFaultError(f"{type(self.model).__name__}.load() left self.ready False")

    def health_status(self) -> dict[str, Any]:
        if not self.model.ready:
            raise ModelNotReadyError(f"model {self.model.name!r} is not ready")
        return {"name": self.model.name, "ready": True}

    def predict(self, X: Any, features_names: Sequence[str] | None = None, meta: Any = None):
        if not self.model.ready:
            raise ModelNotReadyError(f"model {self.model.name!r} is not ready")
        answer = self.model({"instances": _rows(X, features_names)}, {})
        if isinstance(answer, dict):
            if "predictions" not in answer:
                raise ServerFaultError(
                    f"{type(self.model).__name__} answered a dict without 'predictions' "
                    f"(keys: {sorted(answer)})"
                )
            answer = answer["predictions"]
        return np.asarray(answer)


def _rows(X: Any, names: Sequence[str] | None) -> list[Any]:
    if hasattr(X, "to_dict"):  # a DataFrame: named columns
        return X.to_dict(orient="records")
    array = np.asarray(X)
    if names and array.ndim == 2 and len(names) == array.shape[1]:
        return [dict(zip(names, row, strict=True)) for row in array.tolist()]
    return array.tolist()


def model_server_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """KServe's model-server arguments (``--http_port``, ``--grpc_port``, ``--workers``,
    ``--model_name``, ``--model_dir``, ``--predictor_host``, ``--protocol``), defaults from
    ``HTTP_PORT``, ``GRPC_PORT``, ``MODEL_NAME``, ``MODEL_DIR`` / ``STORAGE_URI``; unknown ones
    are left for the model's own parser, as KServe's ``parse_known_args`` leaves them."""
    env = os.environ.get
    parser = argparse.ArgumentParser(add_help=False)
    port = "a TCP port number, 1-65535"
    parser.add_argument(
        "--http_port", type=int, default=whole_env_number("HTTP_PORT", 8080, port, at_most=65_535)
    )
    parser.add_argument(
        "--grpc_port", type=int, default=whole_env_number("GRPC_PORT", 8081, port, at_most=65_535)
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=whole_env_number("WORKERS", 1, "a whole number of REST workers >= 1"),
    )
    parser.add_argument("--model_name", default=env("MODEL_NAME", "model"))
    model_dir = env("MODEL_DIR") or storage_uri_location(env("STORAGE_URI")) or MODEL_MOUNT
    parser.add_argument("--model_dir", default=model_dir)
    parser.add_argument("--predictor_host", default=env("PREDICTOR_HOST"))
    parser.add_argument("--protocol", default=env("PROTOCOL", "v1"), choices=("v1", "v2"))
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


class ModelServer:
    """``ModelServer().start([model])`` as in KServe, on ``modelshelf serve``."""

    def __init__(
        self,
        http_port: int | None = None,
        grpc_port: int | None = None,
        workers: int | None = None,
    ) -> None:
        args = model_server_arguments()
        self.http_port = http_port or args.http_port
        self.grpc_port = grpc_port or args.grpc_port
        self.workers = workers or args.workers

    def start(self, models: list[Model]) -> None:
        """Serve the first model until SIGTERM; exits the process with the server's status."""
        if len(models) != 1:
            raise ValueError(f"modelshelf serves one model per server, got {len(models)}")
        from modelshelf.serve.supervisor import main

        _models[:] = models
        argv = [
            f"{__name__}.KServeModelServer",
            "--model-name",
            models[0].name,
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--workers",
            str(self.workers),
            "--parameters",
            "[]",
        ]
        sys.exit(main(argv))
